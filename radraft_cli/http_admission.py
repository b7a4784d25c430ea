"""Admission of web connections: a cap on how many are open, and a bound on the TLS handshake.

uvicorn counts a connection only once its HTTP protocol starts, which over HTTPS is after the
handshake, and leaves the handshake to asyncio's default of 60 s (uvicorn has no setting for
it). So connections that open and say nothing, or stop half way through a handshake, were
bounded only by the process's descriptors; in ``radraft serve`` that process is also the
gateway, which then cannot open a reception file or accept an association.

Here every accepted connection takes a slot from its first moment, handshake included, and
gives it back when its socket closes, however it ends (answered, dropped for stalling, a
handshake that failed or ran out of time). Past ``RADRAFT_HTTP_MAX_CONNECTIONS`` a connection is
refused as it arrives: plain HTTP gets a 503 that says why, HTTPS is closed (a refusal cannot be
said before a handshake, and shaking hands first would spend our CPU on a flood); the first
refusal of a burst is logged. TLS is started here rather than by uvicorn, on the accepted
connection, with the handshake bounded by ``RADRAFT_HTTP_CLIENT_TIMEOUT_SECONDS``, the same
bound a client has for each later step.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import sslproto
from typing import Any, cast

from radraft.logs import log_event

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""What a refused plain-HTTP client is told to wait before trying again."""


class ConnectionSlots:
    """The open web connections of one server against its limit (used on the loop's thread)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0
        self._refusing = False

    def take(self) -> bool:
        """A slot for a new connection, or False (logged once per burst of refusals)."""
        if self.taken >= self.limit:
            if not self._refusing:
                log_event(logger, "web.connections_refused", logging.WARNING, limit=self.limit)
            self._refusing = True
            return False
        self.taken += 1
        self._refusing = False
        return True

    def give_back(self) -> None:
        """A connection's socket closed."""
        self.taken -= 1


def _refusal(limit: int) -> bytes:
    body = f"radraft: too many web connections at once (limit {limit}); try again shortly\n"
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {RETRY_AFTER_SECONDS}\r\n"
        "Connection: close\r\n\r\n"
    )
    return (head + body).encode("ascii")


def admitting_protocol(
    http_class: type[asyncio.Protocol],
    *,
    max_connections: int,
    tls: ssl.SSLContext | None,
    handshake_timeout_seconds: float,
) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's ``http`` option: ``http_class`` behind the cap, and
    behind TLS when ``tls`` is given (uvicorn itself must then be given no certificate)."""
    slots = ConnectionSlots(max_connections)

    class PlainConnection(http_class):  # type: ignore[misc,valid-type]
        """HTTP on the accepted socket itself; the slot is the socket's."""

        _admitted = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            if not slots.take():
                transport.write(_refusal(slots.limit))
                transport.close()  # a few bytes: they fit the socket's buffer at once
                return
            self._admitted = True
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._admitted:
                slots.give_back()
                super().connection_lost(exc)

    if tls is None:
        return PlainConnection
    context = tls

    class TlsConnection(sslproto.SSLProtocol):
        """TLS on the accepted socket, HTTP inside it; the slot is the socket's, so a handshake
        that fails or runs out of time gives it back too (HTTP never starts then)."""

        _admitted = False

        def __init__(self, **uvicorn_arguments: Any) -> None:
            super().__init__(
                asyncio.get_running_loop(),
                http_class(**uvicorn_arguments),
                context,
                None,  # type: ignore[arg-type]  # no one awaits the handshake: None is allowed
                server_side=True,
                ssl_handshake_timeout=handshake_timeout_seconds,  # type: ignore[arg-type]  # float
            )

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if not slots.take():
                transport.abort()
                return
            self._admitted = True
            super().connection_made(transport)

        def connection_lost(self, exc: BaseException | None) -> None:
            if self._admitted:
                slots.give_back()
                super().connection_lost(exc)

    return cast("type[asyncio.Protocol]", TlsConnection)  # a protocol, if not by typeshed's tree
