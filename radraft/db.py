"""Engine and unit-of-work handling: one engine per process, one transaction per unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from radraft.errors import NotFoundError
from radraft.settings import Settings

RowT = TypeVar("RowT")

POSTGRES_CONNECTION_BOUNDS: dict[str, int] = {
    "connect_timeout": 10,
    "tcp_user_timeout": 30_000,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
"""libpq waits without limit by default: for a server that accepts a connection and never
answers (hung, or a proxy in front of a dead one), and, through the kernel's retransmissions,
about 15 minutes for a host that vanished mid-query. Gateway threads, the completion loop and
workers would hang that long. With these, connecting gives up after 10 s, data the server's
host does not acknowledge for 30 s ends the connection, and an answer awaited from a host that
stopped answering keepalives is given up after about a minute. The database URL's own query
parameters (``?connect_timeout=30``) take precedence."""


DEFAULT_ANSWER_TIMEOUT_SECONDS = 30.0
"""How long a Postgres connection waits for the server to answer unless told otherwise
(``RADRAFT_DATABASE_ANSWER_TIMEOUT_SECONDS``); as long as the server's host may leave data
unacknowledged (``tcp_user_timeout``)."""


class MissingRowError(NotFoundError):
    """A row that another row refers to is gone (deleted meanwhile)."""


def engine_for(settings: Settings) -> Engine:
    """The process's engine for its settings (database URL and the bound on an answer)."""
    return make_engine(
        settings.effective_database_url,
        answer_timeout_seconds=settings.database_answer_timeout_seconds or None,
    )


def make_engine(
    url: str,
    *,
    answer_timeout_seconds: float | None = DEFAULT_ANSWER_TIMEOUT_SECONDS,
    **kwargs: Any,
) -> Engine:
    """Create the process's engine; SQLite gets WAL, a busy timeout and full fsync; Postgres
    gets bounded waits (``POSTGRES_CONNECTION_BOUNDS``) and, through psycopg, a bound on each
    wait for the server's answer (``radraft.db_answer_bound``; None: no bound).

    Gateway threads, the web app and the worker process write the same SQLite file, so writers
    wait (``busy_timeout``) instead of failing, and ``synchronous=FULL`` makes every commit durable
    before the gateway acknowledges an instance. ``hide_parameters`` keeps bound values (names,
    report text, searches) out of error messages, which end up in logs and tracebacks.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 60, "check_same_thread": False},
            hide_parameters=True,
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite's own transaction handling is replaced by explicit BEGIN IMMEDIATE below,
            # so that a read-then-write unit of work never fails with "database is locked".
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    parsed = make_url(url)
    bounds = {
        key: value for key, value in POSTGRES_CONNECTION_BOUNDS.items() if key not in parsed.query
    }
    connect_args = {**bounds, **kwargs.pop("connect_args", {})}
    engine = create_engine(
        url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args, **kwargs
    )
    if answer_timeout_seconds and parsed.get_driver_name() == "psycopg":
        _bound_answers(engine, answer_timeout_seconds)
    return engine


def _bound_answers(engine: Engine, seconds: float) -> None:
    """Open the engine's connections with each wait for the server bounded (see the module)."""
    from radraft.db_answer_bound import connect_bounded

    @event.listens_for(engine, "do_connect")
    def _connect_bounded(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return connect_bounded(seconds, *cargs, **cparams)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (responses are built after the commit)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def connection_scope(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """One unit of work on a plain connection of the factory's engine, without an ORM session:
    for the C-STORE path, which writes its rows with Core statements while the sender waits and
    where building, binding and closing a session cost more than the statements (SQLite).
    Commits on success, rolls back on any error."""
    engine: Engine = factory.kw["bind"]
    with engine.begin() as connection:
        yield connection


def get_row(session: Session, model: type[RowT], key: int) -> RowT:
    """The row of ``model`` with primary key ``key``; ``MissingRowError`` if it is gone.

    For rows a foreign key guarantees: it reads better than an ``if None: raise`` at every
    call, and a row deleted between two reads becomes a clear 404, not an AttributeError.
    """
    row = session.get(model, key)
    if row is None:
        raise MissingRowError(f"{getattr(model, '__tablename__', model.__name__)} {key} is gone")
    return row
