"""Accepted DICOM connections wait here, without a thread, until their request has arrived.

pynetdicom gives every accepted connection a thread at once, and its association two more (the
association's and the DUL's); the DUL thread turns every millisecond, taking the GIL each time,
while it waits for the A-ASSOCIATE-RQ. So connections that said nothing were dear: at fifty a
second (each closed by the ARTIM timer after ``RADRAFT_DICOM_REQUEST_TIMEOUT_SECONDS``) a
real sender's one-image store took 5-6.5 s instead of 0.1 s (measured 2026-12-01), and the
listening socket's backlog of five, full while the accepting thread waited for the GIL, made
further senders wait for the kernel's SYN retries (1 s, 3 s, ...).

Here the accepting thread only accepts, and hands each connection to one waiting-room thread
that watches every waiting socket with epoll. A connection leaves for pynetdicom's threads only
when what it must send first is there: on the plain port its whole A-ASSOCIATE-RQ (peeked,
never read, so pynetdicom reads it as ever; a PDU of another type, or one too long to peek, is
handed over at its header for pynetdicom to answer), on the TLS port the first byte of its
ClientHello (the handshake then runs on the connection's thread, bounded as before). One that
closes first, or shuts its side with its request unfinished, is closed quietly (a port scan, a
load balancer's check); one still short of it when the request timeout runs out is closed
(``gateway.dicom_request_timeouts``). At most
``RADRAFT_DICOM_MAX_WAITING_CONNECTIONS`` wait; a new one past that pushes the one waiting
longest out (``gateway.dicom_waiting_room_full``), so a flood cannot keep out a sender that
sends its request as it connects, as real ones do. Each of the two lines comes at most once
per request timeout and counts the connections since the last one, so a flood cannot flood the
log.

Edge-triggered epoll wakes the room when bytes arrive, not while they wait to be read, so a
peer that sends half a request and stops costs nothing until its deadline. Where epoll is
missing (not Linux) connections are handed over as they are accepted, as pynetdicom does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from radraft.logs import log_event

logger = logging.getLogger(__name__)

ASSOCIATE_RQ = 0x01
PDU_HEADER_LENGTH = 6
PEEK_LIMIT = 1 << 16
"""Longest A-ASSOCIATE-RQ waited for whole (real ones are a few KiB); longer ones are handed
over at their header, and pynetdicom's bound on a PDU's length applies."""
HAS_EPOLL = hasattr(select, "epoll")
EXPIRY_BATCH_SECONDS = 0.05
"""Connections whose time runs out this close together are closed in one turn."""

Verdict = Literal["ready", "wait", "gone"]
HandOver = Callable[[socket.socket, Any], None]
"""Serve an accepted connection (pynetdicom's ``process_request``)."""


@dataclass
class _Waiting:
    connection: socket.socket
    address: Any
    deadline: float


class WaitingRoom:
    """The accepted connections of one listening socket that have not yet sent their request."""

    def __init__(
        self,
        hand_over: HandOver,
        *,
        timeout_seconds: float,
        capacity: int,
        whole_request: bool,
    ) -> None:
        self._hand_over = hand_over
        self._timeout = timeout_seconds
        self._capacity = capacity
        self._whole_request = whole_request
        self._waiting: dict[int, _Waiting] = {}  # by descriptor; oldest first
        self._lock = threading.Lock()
        self._epoll = select.epoll()
        self._wake_reader, self._wake_writer = os.pipe()  # ``close`` ends the watch's wait
        self._epoll.register(self._wake_reader, select.EPOLLIN)
        self._stopped = False
        self._pushed_out = _CountedLine("gateway.dicom_waiting_room_full", timeout_seconds)
        self._timed_out = _CountedLine("gateway.dicom_request_timeouts", timeout_seconds)
        self._thread = threading.Thread(
            target=self._watch, name="radraft-dicom-waiting-room", daemon=True
        )
        self._thread.start()

    def admit(self, connection: socket.socket, address: Any) -> None:
        """Let a just-accepted connection wait for its request (the accepting thread)."""
        pushed_out: socket.socket | None = None
        with self._lock:
            if self._stopped:
                pushed_out = connection
            else:
                if len(self._waiting) >= self._capacity:
                    pushed_out = self._leave(next(iter(self._waiting))).connection
                    self._pushed_out.add(1, capacity=self._capacity)
                descriptor = connection.fileno()
                deadline = time.monotonic() + self._timeout
                self._waiting[descriptor] = _Waiting(connection, address, deadline)
                flags = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
                self._epoll.register(descriptor, flags)
        if pushed_out is not None:
            _close(pushed_out)

    def close(self) -> None:
        """Stop watching and close every connection still waiting."""
        with self._lock:
            self._stopped = True
            waiting = [self._leave(descriptor) for descriptor in list(self._waiting)]
        for entry in waiting:
            _close(entry.connection)
        os.write(self._wake_writer, b"!")
        self._thread.join(timeout=5)
        self._epoll.close()
        os.close(self._wake_reader)
        os.close(self._wake_writer)

    def _leave(self, descriptor: int) -> _Waiting:
        """Take a connection out of the room (with the lock held)."""
        entry = self._waiting.pop(descriptor)
        self._epoll.unregister(descriptor)
        return entry

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                oldest = next(iter(self._waiting.values()), None)
            wait = self._timeout if oldest is None else oldest.deadline - time.monotonic()
            try:
                events = self._epoll.poll(max(wait, 0.0))
            except (OSError, ValueError):  # closed by ``close``
                return
            for descriptor, mask in events:
                if descriptor != self._wake_reader:
                    self._look_at(descriptor, writing_ended=bool(mask & select.EPOLLRDHUP))
            self._close_expired()

    def _look_at(self, descriptor: int, *, writing_ended: bool) -> None:
        with self._lock:
            entry = self._waiting.get(descriptor)
            if entry is None:
                return  # pushed out or expired meanwhile
            verdict = self._verdict(entry.connection)
            if verdict == "wait" and writing_ended:
                verdict = "gone"  # the peer shut its side: the rest can never come
            if verdict == "wait":
                return
            self._leave(descriptor)
        if verdict == "gone":
            _close(entry.connection)
            return
        try:
            self._hand_over(entry.connection, entry.address)
        except Exception as error:  # no thread to be had: this one is lost, the room goes on
            log_event(logger, "gateway.dicom_connection_dropped", logging.ERROR,
                      reason=type(error).__name__)  # fmt: skip
            _close(entry.connection)

    def _verdict(self, connection: socket.socket) -> Verdict:
        """Hand it over ("ready"), let it wait (not all there yet), or close it ("gone": the
        peer closed, or the socket broke)."""
        wanted = PEEK_LIMIT if self._whole_request else 1
        try:
            head = connection.recv(wanted, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return "wait"
        except OSError:
            return "gone"
        if not head:
            return "gone"
        if not self._whole_request:
            return "ready"
        if len(head) < PDU_HEADER_LENGTH:
            return "wait"
        length = int.from_bytes(head[2:PDU_HEADER_LENGTH], "big")
        if head[0] != ASSOCIATE_RQ or PDU_HEADER_LENGTH + length > PEEK_LIMIT:
            return "ready"  # pynetdicom answers it as the protocol says, or bounds its length
        return "ready" if len(head) >= PDU_HEADER_LENGTH + length else "wait"

    def _close_expired(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = []
            for descriptor, entry in self._waiting.items():
                if entry.deadline > now + EXPIRY_BATCH_SECONDS:
                    break  # oldest first, and all wait equally long
                due.append(descriptor)
            expired = [self._leave(descriptor) for descriptor in due]
        for entry in expired:
            _close(entry.connection)
        self._timed_out.add(len(expired), seconds=self._timeout)
        with self._lock:
            self._pushed_out.add(0, capacity=self._capacity)  # say what is left to say


class _CountedLine:
    """A warning said at most once per ``interval``, with the number of connections since."""

    def __init__(self, event: str, interval: float) -> None:
        self._event = event
        self._interval = interval
        self._unsaid = 0
        self._said_at = -interval

    def add(self, connections: int, **fields: object) -> None:
        self._unsaid += connections
        now = time.monotonic()
        if self._unsaid and now - self._said_at >= self._interval:
            log_event(logger, self._event, logging.WARNING, connections=self._unsaid, **fields)
            self._unsaid = 0
            self._said_at = now


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already reset by the peer
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()
