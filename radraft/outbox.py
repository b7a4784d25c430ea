"""Transactional outbox: rows written with a state change, delivered later by a relay.

A state change and the message it causes commit together, so a crash between commit and send
loses nothing: the relay finds the row and sends it. Delivery is at least once; every consumer
is idempotent (drafting jobs are keyed by study and content version).
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import OutboxChannel, OutboxStatus
from radraft.logs import log_event
from radraft.models import OutboxMessage
from radraft.timeutil import Clock, utcnow

logger = logging.getLogger(__name__)

TASK_ID_NAMESPACE = uuid.UUID("8c1d6b2e-4f0a-4a57-9d0e-6d1f2b7c9a31")


def task_id_for(idempotency_key: str) -> str:
    """A Celery task id derived from the outbox key, so a re-published message keeps its id."""
    return str(uuid.uuid5(TASK_ID_NAMESPACE, idempotency_key))


def add_message(
    session: Session,
    *,
    channel: OutboxChannel,
    idempotency_key: str,
    payload: dict[str, Any],
    study_id: int | None = None,
) -> OutboxMessage:
    """Add an outbox row to the caller's transaction, or return the existing row of that key."""
    existing = session.scalar(
        select(OutboxMessage).where(OutboxMessage.idempotency_key == idempotency_key)
    )
    if existing is not None:
        return existing
    message = OutboxMessage(
        channel=channel,
        idempotency_key=idempotency_key,
        payload=payload,
        study_id=study_id,
        status=OutboxStatus.PENDING,
        next_attempt_at=utcnow(),
    )
    session.add(message)
    return message


def backoff_seconds(attempts: int, *, maximum: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: up to 0.5 s * 2**attempts, capped at ``maximum``."""
    ceiling = min(maximum, 0.5 * 2 ** min(attempts, 20))
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class CeleryPublish:
    """What the relay hands to the broker for one ``celery`` outbox row."""

    task_name: str
    args: list[Any]
    task_id: str


Publisher = Callable[[CeleryPublish], None]


class CeleryOutboxRelay:
    """Publishes due ``celery`` outbox rows to the broker, retrying while the broker is down.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` where the database has it (Postgres), so
    several gateway processes can relay side by side; a row is marked done only after the
    broker accepted the message.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        publish: Publisher,
        *,
        max_backoff_seconds: float = 30.0,
        batch_size: int = 50,
        clock: Clock = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._publish = publish
        self._max_backoff = max_backoff_seconds
        self._batch_size = batch_size
        self._clock = clock

    def run_once(self) -> int:
        """Deliver the due rows once; returns how many were published."""
        published = 0
        with session_scope(self._session_factory) as session:
            now = self._clock()
            rows = session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.channel == OutboxChannel.CELERY,
                    OutboxMessage.status == OutboxStatus.PENDING,
                    OutboxMessage.next_attempt_at <= now,
                )
                .order_by(OutboxMessage.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                message = CeleryPublish(
                    task_name=row.payload["task"],
                    args=list(row.payload.get("args", [])),
                    task_id=task_id_for(row.idempotency_key),
                )
                try:
                    self._publish(message)
                except Exception as error:
                    row.attempts += 1
                    row.last_error = type(error).__name__
                    row.next_attempt_at = now + timedelta(
                        seconds=backoff_seconds(row.attempts, maximum=self._max_backoff)
                    )
                    log_event(
                        logger,
                        "outbox.publish_failed",
                        logging.WARNING,
                        outbox_id=row.id,
                        attempts=row.attempts,
                        error=type(error).__name__,
                    )
                    break  # the broker is down for the rest of the batch too
                row.attempts += 1
                row.status = OutboxStatus.DONE
                row.delivered_at = self._clock()
                published += 1
                log_event(logger, "outbox.published", outbox_id=row.id, task=message.task_name)
        return published

    def run_until(self, stop: threading.Event, poll_seconds: float) -> None:
        """Relay until ``stop`` is set; a database outage is logged and retried, never fatal."""
        while not stop.is_set():
            try:
                published = self.run_once()
            except Exception as error:
                log_event(logger, "outbox.relay_error", logging.ERROR, error=type(error).__name__)
                published = 0
            if not published:
                stop.wait(poll_seconds)
