"""A bound on how long a Postgres connection waits for the server to answer.

libpq's TCP bounds (``radraft.db.POSTGRES_CONNECTION_BOUNDS``) notice a host that stops
acknowledging data or answering keepalives. They cannot notice a server whose host still
answers TCP while the server itself does not: a process stopped with SIGSTOP, storage that
froze under it, a proxy that holds the connection open. The kernel acknowledges every byte and
every keepalive, and a statement waits until the server comes back, holding its thread and its
pooled connection; in the gateway, the C-STORE's answer with them (the sender times out, and the
gateway says nothing). With this bound a wait that lasts ``seconds`` ends as if the server had
gone: one watchdog thread per process shuts the connection's socket down, libpq reads the end,
psycopg raises ``OperationalError``, and SQLAlchemy drops the connection from its pool. Callers
handle it as they handle a stopped server (the gateway answers 0xA700, the web app 503).

Every wait of psycopg for the server (a statement, a fetch, a commit, a rollback, the pool's
ping) goes through ``Connection.wait``, so that is where a wait is armed and disarmed: two dict
operations under a lock, no thread or timer per statement, and one watchdog thread for every
engine of the process. Connecting is bounded by libpq's own ``connect_timeout``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from typing import Any

import psycopg

from radraft.exchange_deadline import shut_down_under_reader
from radraft.logs import log_event

logger = logging.getLogger(__name__)


class AnswerWatchdog:
    """Shut down the socket of any connection that has waited past its bound for its server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: dict[int, tuple[float, int, float]] = {}  # id: (deadline, socket, bound)
        self._cut: set[int] = set()
        self._step = 1.0
        self._thread: threading.Thread | None = None

    def arm(self, connection: psycopg.Connection[Any], seconds: float) -> None:
        """Note that ``connection`` starts waiting for its server now, for at most ``seconds``."""
        try:
            descriptor = connection.pgconn.socket
        except psycopg.Error:  # closed or broken: psycopg will say so itself
            return
        with self._lock:
            self._waits[id(connection)] = (time.monotonic() + seconds, descriptor, seconds)
            self._step = min(self._step, max(0.05, seconds / 10))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="radraft-db-answer-watchdog", daemon=True
                )
                self._thread.start()

    def disarm(self, connection: psycopg.Connection[Any]) -> bool:
        """The wait ended, and its socket may be closed after this; whether it was cut."""
        key = id(connection)
        with self._lock:
            self._waits.pop(key, None)
            if key not in self._cut:
                return False
            self._cut.discard(key)
            return True

    def forget_parent(self) -> None:
        """A forked child has none of its parent's waits, nor its thread."""
        self._lock = threading.Lock()
        self._waits = {}
        self._cut = set()
        self._thread = None

    def _watch(self) -> None:
        while True:
            time.sleep(self._step)
            self._cut_expired(time.monotonic())

    def _cut_expired(self, now: float) -> None:
        """Shut down the sockets of waits whose deadline has passed.

        Under the lock: the waiting thread cannot disarm, so it cannot close the socket and let
        its number go to another connection while it is being shut down.
        """
        bounds: Counter[float] = Counter()
        with self._lock:
            expired = [key for key, (deadline, _, _) in self._waits.items() if deadline < now]
            for key in expired:
                _, descriptor, seconds = self._waits.pop(key)
                self._cut.add(key)
                bounds[seconds] += 1
                _shut_down(descriptor)
        for seconds, connections in bounds.items():
            log_event(
                logger, "db.no_answer", logging.WARNING, seconds=seconds, connections=connections
            )


WATCHDOG = AnswerWatchdog()
"""The process's one watchdog, shared by its engines."""
os.register_at_fork(after_in_child=WATCHDOG.forget_parent)


def no_answer_reason(seconds: float) -> str:
    """What a cut wait is reported as (instead of libpq's "server closed the connection")."""
    return f"the database server did not answer within {seconds:g} s"


def _shut_down(descriptor: int) -> None:
    """Shut a socket down both ways without taking it over (libpq still owns and closes it)."""
    borrowed = socket.socket(fileno=descriptor)
    try:
        shut_down_under_reader(borrowed)
    finally:
        borrowed.detach()


class AnswerBoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server lasts at most ``answer_timeout``."""

    answer_timeout: float | None = None

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        seconds = self.answer_timeout
        if seconds is None:
            return super().wait(gen, *args, **kwargs)
        WATCHDOG.arm(self, seconds)
        try:
            answer = super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as error:
            if WATCHDOG.disarm(self):
                raise psycopg.OperationalError(no_answer_reason(seconds)) from error
            raise
        except BaseException:
            WATCHDOG.disarm(self)
            raise
        WATCHDOG.disarm(self)
        return answer


def connect_bounded(seconds: float, *cargs: Any, **cparams: Any) -> AnswerBoundedConnection:
    """Open a connection as ``psycopg.connect`` does, its waits bounded by ``seconds``."""
    connection = AnswerBoundedConnection.connect(*cargs, **cparams)
    connection.answer_timeout = seconds
    return connection
