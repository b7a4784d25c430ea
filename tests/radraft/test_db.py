"""The engine's waits on Postgres are bounded: a server that never answers is given up."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from radraft.db import POSTGRES_CONNECTION_BOUNDS, make_engine
from tests.support import returns_within


def test_a_postgres_server_that_accepts_and_never_answers_is_given_up_after_10_s() -> None:
    """libpq waited for the server's first answer without limit: every gateway thread and loop
    that needed a connection hung with it (tested: still waiting after 30 s)."""
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    port = listener.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://radraft:secret@127.0.0.1:{port}/radraft")

    def connect() -> None:
        with engine.connect():
            pass

    started = time.monotonic()
    try:
        error = returns_within(30, connect, what="connecting")
        assert time.monotonic() - started >= 9, "the server had its 10 s"
        assert isinstance(error, OperationalError), "the kind every caller already handles"
        assert "timeout" in str(error).lower()
    finally:
        engine.dispose()
        listener.close()


@pytest.mark.parametrize("backend", ["postgres"])
def test_connections_to_a_real_server_carry_the_bounds_and_the_url_can_change_them(
    engine: Engine, migrated_url: str
) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
        parameters = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    for name, value in POSTGRES_CONNECTION_BOUNDS.items():
        assert parameters[name] == str(value), name

    separator = "&" if "?" in migrated_url else "?"
    patient = make_engine(f"{migrated_url}{separator}connect_timeout=45")
    try:
        with patient.connect() as connection:
            parameters = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert parameters["connect_timeout"] == "45", "the URL's own value wins"
        assert parameters["tcp_user_timeout"] == "30000"
    finally:
        patient.dispose()
