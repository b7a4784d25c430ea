"""A Postgres server that stops answering while its host still answers TCP is given up.

Every process of a test's own cluster is stopped with SIGSTOP, as frozen storage or a stuck
server would leave it: the kernel still accepts connections, acknowledges every byte and answers
keepalives, so libpq's TCP bounds never fire. Before ``radraft.db_answer_bound`` a statement,
the pool's ping and the gateway's C-STORE answer waited until the server was thawed (each test
below hangs on that code until ``returns_within`` gives up).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from radraft.db import make_engine, make_sessionmaker, session_scope
from radraft.migrate import upgrade
from radraft.models import Instance
from radraft.settings import Settings
from tests.dicom_peers import store_statuses, storescu, synthetic_study_files
from tests.processes import radraft_process
from tests.support import PostgresServer, free_port, returns_within, wait_until

BOUND = 2.0
"""The answer bound these tests run with (RADRAFT_DATABASE_ANSWER_TIMEOUT_SECONDS)."""


def test_a_frozen_server_is_given_up_after_the_bound_and_the_engine_recovers(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"{own_postgres.url}?connect_timeout=2", answer_timeout_seconds=BOUND)
    try:
        with engine.connect() as idle, engine.connect() as connection:
            assert idle.execute(text("SELECT 1")).scalar() == 1  # one goes back to the pool
            assert connection.execute(text("SELECT 1")).scalar() == 1
            idle.close()
            own_postgres.freeze()
            started = time.monotonic()
            try:
                with caplog.at_level(logging.WARNING, logger="radraft.db_answer_bound"):
                    error = returns_within(
                        30, lambda: connection.execute(text("SELECT 2")), what="a statement"
                    )
            except BaseException:
                own_postgres.thaw()  # before the connection's rollback on the way out
                raise
            waited = time.monotonic() - started
        assert isinstance(error, OperationalError), error
        assert "did not answer within 2 s" in str(error), "says what happened, not libpq's guess"
        assert BOUND - 0.1 <= waited < BOUND + 3, waited
        assert "db.no_answer seconds=2.0 connections=1" in caplog.text

        def checkout() -> None:  # the pooled connection's ping waits too, then a new connection
            with engine.connect() as connection:
                connection.execute(text("SELECT 3"))

        started = time.monotonic()
        refused = returns_within(30, checkout, what="a checkout while frozen")
        assert isinstance(refused, OperationalError), refused
        assert time.monotonic() - started < BOUND + 2 + 3, "the ping's bound, then connect_timeout"
        own_postgres.thaw()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 4")).scalar() == 4, "the pool recovered"
    finally:
        own_postgres.thaw()
        engine.dispose()


def test_a_live_server_keeps_statements_within_the_bound_and_loses_a_slower_one(
    own_postgres: PostgresServer,
) -> None:
    """The bound is on one wait for an answer, not on a connection's life: many quick statements
    over longer than the bound pass, one statement longer than the bound is cut."""
    engine = make_engine(own_postgres.url, answer_timeout_seconds=1.0)
    try:
        with engine.connect() as connection:
            ended = time.monotonic() + 2.5
            while time.monotonic() < ended:
                assert connection.execute(text("SELECT pg_sleep(0.3), 5")).one()[1] == 5
            error = returns_within(
                30, lambda: connection.execute(text("SELECT pg_sleep(5)")), what="a slow one"
            )
        assert isinstance(error, OperationalError)
        assert "did not answer within 1 s" in str(error)
    finally:
        engine.dispose()


def test_the_gateway_answers_out_of_resources_while_postgres_is_frozen_and_stores_after(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    """The sender gets 0xA700 (it keeps its copy and retries) instead of no answer at all, the
    gateway says why in its log, and the same instance is stored once the server is back."""
    upgrade(own_postgres.url)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"{own_postgres.url}?connect_timeout=2",
        database_answer_timeout_seconds=BOUND,
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        stable_seconds=3600,
    )
    first, second = synthetic_study_files(710, tmp_path / "study", size=64)
    log = tmp_path / "gateway.log"
    with radraft_process(
        settings, ["gateway", "--processes", "1"], log, ready_text="gateway.started"
    ) as gateway:
        assert store_statuses(storescu([first], port=settings.dicom_port, debug=True).output) == [0]
        own_postgres.freeze()
        try:
            result = returns_within(
                60,
                lambda: storescu([second], port=settings.dicom_port, debug=True),
                what="a C-STORE while Postgres is frozen",
            )
            assert not isinstance(result, BaseException), result
            assert store_statuses(result.output) == [0xA700]
            # The intake's own wait may have been a new connection's (connect_timeout) if the
            # gateway's loops held the pooled ones; their waits are cut within the bound.
            wait_until(lambda: "db.no_answer" in log.read_text(errors="replace"), timeout=15,
                       what="the gateway to log why")  # fmt: skip
        finally:
            own_postgres.thaw()
        again = storescu([second], port=settings.dicom_port, debug=True)
        assert store_statuses(again.output) == [0]
        assert gateway.poll() is None
    engine = make_engine(own_postgres.url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            stored = session.scalar(select(func.count()).select_from(Instance))
        assert stored == 2, "each instance once"
    finally:
        engine.dispose()
