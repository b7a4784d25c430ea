"""uvicorn's HTTP/1.1 protocol (h11) with a bound on how long a client may keep it waiting.

uvicorn closes a keep-alive connection that stays idle after a response, but it sets no limit
on a new connection that sends nothing, on a request whose headers arrive a byte now and then,
or on a body that stops half way: each holds a connection and its file descriptor for good
(tested: still open after 80 s). A few thousand such sockets (slowloris) exhaust the
process's descriptors, and in the embedded server that process is also the gateway, which
then cannot open a reception file. Nor did it limit a client that asks for a large response
(a study over WADO-RS) and never reads it: the response waited for the socket to drain for
good, holding its open file and the data already queued. Here a client that is being waited
for, for a request's headers, for the next piece of its body, or to read what is queued for it,
must make progress within ``RADRAFT_HTTP_CLIENT_TIMEOUT_SECONDS``; otherwise the connection is
dropped. Waiting for our own response never counts, nor does a body that waits because the app
has not read it yet.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

CHECKS_PER_TIMEOUT = 4
"""How often a connection is looked at per timeout: it is closed between 1 and 1.25 timeouts
after its last progress."""


class ClientTimeoutH11Protocol(H11Protocol):
    """``H11Protocol`` that drops a connection whose client stalls (see the module)."""

    client_timeout_seconds = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._last_progress = self.loop.time()
        self._queued = 0
        self._check: asyncio.TimerHandle | None = None
        self._schedule_check()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._check is not None:
            self._check.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self.conn.their_state
        super().data_received(data)
        # Body bytes are progress; header bytes only once the headers are whole.
        if before is h11.SEND_BODY or self.conn.their_state is not h11.IDLE:
            self._last_progress = self.loop.time()

    def pause_writing(self) -> None:
        # Past the transport's high-water mark: the client's turn to read starts here.
        self._last_progress = self.loop.time()
        super().pause_writing()

    def resume_writing(self) -> None:
        # The client read enough for the transport to drop below its low-water mark.
        self._last_progress = self.loop.time()
        super().resume_writing()

    def on_response_complete(self) -> None:
        self._last_progress = self.loop.time()
        super().on_response_complete()

    def _schedule_check(self) -> None:
        self._check = self.loop.call_later(
            self.client_timeout_seconds / CHECKS_PER_TIMEOUT, self._check_client
        )

    def _check_client(self) -> None:
        # Bytes queued for the client are its to read, also after a close() (which waits for
        # them): a whole response can sit here once the app has finished with it.
        queued = self.transport.get_write_buffer_size()
        if queued < self._queued:
            self._last_progress = self.loop.time()  # the client took some
        self._queued = queued
        waiting_for_client = queued > 0 or (
            not self.transport.is_closing()
            and self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
            and not self.flow.read_paused
        )
        if not waiting_for_client:
            self._last_progress = self.loop.time()  # our turn, or the app's: not the client's
        elif self.loop.time() - self._last_progress >= self.client_timeout_seconds:
            # Dropped, not closed: close() would first wait for the queued bytes to drain,
            # which a client that does not read never lets happen.
            self.transport.abort()
            return
        self._schedule_check()


def client_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """The protocol class for uvicorn's ``http`` option, with this timeout."""
    attributes: dict[str, Any] = {"client_timeout_seconds": seconds}
    return type("ClientTimeoutH11Protocol", (ClientTimeoutH11Protocol,), attributes)
