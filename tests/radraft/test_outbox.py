"""The outbox relay: publish once, retry with backoff while the broker is down, never drop."""

from __future__ import annotations

import logging
import random
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.broker import celery_publisher
from radraft.db import session_scope
from radraft.enums import OutboxChannel, OutboxStatus
from radraft.models import OutboxMessage
from radraft.outbox import (
    CeleryOutboxRelay,
    CeleryPublish,
    add_message,
    backoff_seconds,
    task_id_for,
)
from radraft.settings import Settings
from radraft.timeutil import utcnow
from tests.conftest import RecordingPublisher
from tests.support import returns_within


def add(factory: sessionmaker[Session], key: str) -> None:
    with session_scope(factory) as session:
        add_message(
            session,
            channel=OutboxChannel.CELERY,
            idempotency_key=key,
            payload={"task": "radraft.test", "args": [key]},
        )


def rows(factory: sessionmaker[Session]) -> list[OutboxMessage]:
    with session_scope(factory) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_same_key_is_stored_once(session_factory: sessionmaker[Session]) -> None:
    add(session_factory, "k1")
    add(session_factory, "k1")
    assert len(rows(session_factory)) == 1


def test_relay_publishes_in_order_and_marks_done(
    session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> None:
    for key in ("a", "b", "c"):
        add(session_factory, key)
    relay = CeleryOutboxRelay(session_factory, publisher)
    assert relay.run_once() == 3
    assert [m.args for m in publisher.published] == [["a"], ["b"], ["c"]]
    assert [m.task_id for m in publisher.published] == [task_id_for(k) for k in "abc"]
    assert {row.status for row in rows(session_factory)} == {OutboxStatus.DONE}
    assert relay.run_once() == 0


def test_broker_outage_backs_off_then_delivers_exactly_once(
    session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> None:
    add(session_factory, "x")
    now = utcnow()
    clock = [now]
    relay = CeleryOutboxRelay(
        session_factory, publisher, max_backoff_seconds=8, clock=lambda: clock[0]
    )
    publisher.down = True
    for _ in range(6):
        assert relay.run_once() == 0
        clock[0] += timedelta(seconds=9)
    (row,) = rows(session_factory)
    assert row.status == OutboxStatus.PENDING
    assert row.attempts == 6
    assert row.last_error == "ConnectionRefusedError"
    assert row.next_attempt_at > clock[0] - timedelta(seconds=9)

    publisher.down = False
    assert relay.run_once() == 1
    assert relay.run_once() == 0
    assert len(publisher.published) == 1
    assert rows(session_factory)[0].status == OutboxStatus.DONE


def test_not_due_rows_wait(
    session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> None:
    add(session_factory, "later")
    past = utcnow() - timedelta(hours=1)
    relay = CeleryOutboxRelay(session_factory, publisher, clock=lambda: past)
    assert relay.run_once() == 0
    assert publisher.published == []


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(1)
    ceilings = [backoff_seconds(n, maximum=30, rng=rng) for n in range(1, 12)]
    assert all(0 < value <= 30 for value in ceilings)
    assert backoff_seconds(1, maximum=30, rng=rng) <= 1.0
    assert backoff_seconds(20, maximum=30, rng=rng) >= 15


def test_the_embedded_broker_takes_messages_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Default settings publish to the filesystem broker; kombu used to warn on the first
    publish that no host name was given, in every default installation's log."""
    settings = Settings(data_dir=tmp_path)
    assert settings.embedded_broker
    publish = celery_publisher(settings)
    with caplog.at_level(logging.WARNING):
        for number in range(3):
            publish(CeleryPublish("radraft.test", [number], task_id_for(f"embedded-{number}")))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert len(list((settings.broker_dir / "queue").iterdir())) == 3


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_redis_that_accepts_and_never_answers_fails_the_publish_and_the_relay_goes_on(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """kombu waited for Redis's reply without limit: the relay's one thread, and with it every
    later message, hung on a broker that had stopped answering (tested: still waiting after
    40 s). Now the publish fails after the socket timeout, like a broker that is down."""
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    port = listener.getsockname()[1]
    settings = Settings(data_dir=tmp_path, broker_url=f"redis://127.0.0.1:{port}/0")
    relay = CeleryOutboxRelay(session_factory, celery_publisher(settings))
    add(session_factory, "stalled")
    try:
        assert returns_within(40, relay.run_once, what="the relay's pass") == 0
        (row,) = rows(session_factory)
        assert row.status is OutboxStatus.PENDING, "kept, to be published once Redis answers"
        assert row.attempts == 1
        assert row.last_error == "OperationalError"
    finally:
        listener.close()
