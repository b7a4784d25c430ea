"""The MLLP port of HL7 order intake: framing, limits and TLS around ``gateway.orders``.

Every connection is served on its own thread, so what a RIS (or anyone who can reach the port)
may hold is bounded: ``max_connections`` at once, a silent connection for ``idle_timeout``, one
message's frame for ``frame_timeout`` from the first byte after the previous message however
slowly the bytes come (whitespace between frames included), a frame's size by
``max_message_bytes`` (answered AR, then the rest of it dropped for at most
``DISCARD_SECONDS``), and a TLS handshake, run on the connection's own thread, by
``frame_timeout``. Several messages sent in one write are each answered.

A RIS keeps its connection open between messages, so a connection that is silent is not
wrong, and the idle timeout is long. But a connection that has never sent a message we could
take as an order (every one answered AR: not HL7, not an order, or not from a sending
application on ``RADRAFT_HL7_ALLOWED_SENDERS``) has not shown it is a RIS: when all
``max_connections`` are taken, a new connection pushes out the oldest of those
(``gateway.mllp_connection_pushed_out``, one line per burst) rather than being refused, so
connections opened and left silent, or sending only what is refused, cannot keep a RIS out, as
a RIS sends its message as it connects. Only when every connection has sent such a message is
a new one closed as it arrives (``gateway.mllp_connections_refused``, one line per burst).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Collection
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gateway.orders import MergeHandler, answer_order_message, refuse_oversized
from radraft.exchange_deadline import shut_down_under_reader
from radraft.hl7ack import AckCode
from radraft.logs import log_event
from radraft.mllp import (
    DEFAULT_MAX_MESSAGE_BYTES,
    END_BLOCK,
    FrameReader,
    FrameTooLargeError,
    MllpError,
    frame,
)

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS = 300.0
FRAME_TIMEOUT_SECONDS = 60.0
MAX_CONNECTIONS = 32
DISCARD_SECONDS = 10.0


def discard_rest_of_frame(connection: socket.socket) -> None:
    """Read and drop bytes until the frame's end block, EOF, or ``DISCARD_SECONDS``."""
    deadline = time.monotonic() + DISCARD_SECONDS
    previous = b""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_WR)
        while time.monotonic() < deadline:
            connection.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = connection.recv(65536)
            if not chunk or END_BLOCK in previous[-1:] + chunk:
                return
            previous = chunk


class OrderListener:
    """A threaded MLLP server answering each framed message with its ACK."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        host: str,
        port: int,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        frame_timeout: float = FRAME_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        ssl_context: ssl.SSLContext | None = None,
        allowed_senders: Collection[str] = (),
        merges: MergeHandler | None = None,
    ) -> None:
        factory = session_factory
        senders = frozenset(allowed_senders)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if isinstance(self.request, ssl.SSLSocket):
                    # The handshake runs here, in the connection's own thread, so a slow or
                    # hostile client never holds up the accepting thread; it gets a frame's time.
                    self.request.settimeout(min(idle_timeout, frame_timeout))
                    try:
                        self.request.do_handshake()
                    except (ssl.SSLError, OSError) as error:
                        log_event(
                            logger,
                            "gateway.mllp_tls_refused",
                            logging.WARNING,
                            reason=type(error).__name__,
                        )
                        return
                self.request.settimeout(idle_timeout)
                reader = FrameReader(
                    self.request, max_message_bytes=max_message_bytes, frame_timeout=frame_timeout
                )
                while True:
                    try:
                        message = reader.next_frame()
                    except FrameTooLargeError as error:
                        # Answer the message we will not read (its MSH is in the head), then
                        # drop the rest of it before closing: closing with unread bytes would
                        # reset the connection and could destroy the answer on its way.
                        self.request.sendall(frame(refuse_oversized(error)))
                        log_event(logger, "gateway.order_too_large", logging.WARNING)
                        discard_rest_of_frame(self.request)
                        return
                    except (MllpError, OSError) as error:
                        log_event(
                            logger,
                            "gateway.mllp_closed",
                            logging.WARNING,
                            reason=type(error).__name__,
                        )
                        return
                    if message is None:
                        return
                    answer = answer_order_message(factory, message, senders, merges)
                    if answer.code is not AckCode.REJECT:
                        server.has_spoken(self.request)
                    self.request.sendall(frame(answer.encoded))

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            request_queue_size = 64  # socketserver's 5 drops a burst's connection requests
            _served = 0
            _refusing = False
            _pushing_out = False
            _count_lock = threading.Lock()

            def __init__(self, *arguments: Any) -> None:
                self._not_yet_spoken: dict[socket.socket, None] = {}  # oldest first
                super().__init__(*arguments)

            def has_spoken(self, connection: socket.socket) -> None:
                """A message came that was not refused outright (AR: not HL7, not an order, or
                not from an allowed sender): this connection is a RIS's, never pushed out."""
                with self._count_lock:
                    self._not_yet_spoken.pop(connection, None)

            def get_request(self) -> tuple[socket.socket, Any]:
                connection, address = super().get_request()
                if ssl_context is None:
                    return connection, address
                wrapped = ssl_context.wrap_socket(
                    connection, server_side=True, do_handshake_on_connect=False
                )
                return wrapped, address

            def verify_request(self, request: Any, client_address: Any) -> bool:
                """Serve it while fewer than ``max_connections`` are served, or in the place of
                the oldest connection that has not sent a whole message."""
                pushed_out: socket.socket | None = None
                with self._count_lock:
                    if self._served >= max_connections:
                        if not self._not_yet_spoken:
                            if not self._refusing:  # one line per burst
                                log_event(logger, "gateway.mllp_connections_refused",
                                          logging.WARNING, limit=max_connections)  # fmt: skip
                            self._refusing = True
                            return False
                        pushed_out = next(iter(self._not_yet_spoken))
                        del self._not_yet_spoken[pushed_out]
                        if not self._pushing_out:  # one line per burst
                            log_event(logger, "gateway.mllp_connection_pushed_out",
                                      logging.WARNING, limit=max_connections)  # fmt: skip
                        self._pushing_out = True
                    else:
                        self._pushing_out = False
                    self._served += 1
                    self._refusing = False
                    self._not_yet_spoken[request] = None
                if pushed_out is not None:
                    # Its thread's next read ends (EOF), and the thread gives its slot back.
                    shut_down_under_reader(pushed_out)
                return True

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    with self._count_lock:
                        self._served -= 1
                        self._not_yet_spoken.pop(request, None)

        server = Server((host, port), Handler)  # the handlers' ``server``
        self._server = server
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="radraft-hl7-intake", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()
        log_event(logger, "gateway.hl7_listening", port=self.port)

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
