"""The listening side under pynetdicom: a waiting room, TLS handshakes off the accepting
thread, a shared port.

pynetdicom's threaded server runs the TLS handshake inside ``get_request``, on the one thread
that accepts every connection, with no timeout (an accepted socket is blocking). One peer
that opened a TCP connection to the DICOM TLS port and sent nothing, or sent its ClientHello a
byte a minute, therefore kept every other TLS sender out for as long as it liked.
``GatewayServer`` accepts without the handshake and runs it first thing on the connection's
own thread, bounded by the ARTIM timer (``RADRAFT_DICOM_REQUEST_TIMEOUT_SECONDS``): the
same time a plain connection gets to send its A-ASSOCIATE-RQ. A failed handshake (no or an
untrusted client certificate, plain DICOM on the TLS port, a timeout) closes the connection
with one log line. Before any of that a connection waits, without a thread, for what it
must send first (``gateway.waiting_room``). ``ReusePortServer`` binds with SO_REUSEPORT so that
``radraft gateway --processes N`` can bind one port N times; the kernel spreads connections
over the processes, each with its own GIL. Every association reads the server's one list of
supported presentation contexts (``SharedContexts``) instead of a deep copy of its own.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, cast

from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from gateway.waiting_room import HAS_EPOLL, WaitingRoom
from radraft.logs import log_event

if TYPE_CHECKING:
    from gateway.scp import GatewayAE

logger = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
"""The waiting room's bound where the AE has no ACSE timeout (the gateway always sets one)."""


class SharedContexts(list[PresentationContext]):
    """The AE's supported presentation contexts, handed to every association as they are.

    pynetdicom deep-copies the server's contexts for each association it creates: 171 storage
    SOP classes with 15 transfer syntaxes each took 19 ms of CPU, holding the GIL, before the
    association could answer its request, which is most of the cost of a one-study association.
    Negotiation only reads them (``pynetdicom.presentation.negotiate_as_acceptor`` builds new
    contexts for its answer) and nothing else touches them, so one list serves every
    association: ``deepcopy`` of it is the list itself.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedContexts:
        return self


class GatewayServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with a waiting room before the connection's threads and the
    TLS handshake on the connection's thread."""

    request_queue_size = 128
    """The listening socket's backlog: pynetdicom's 5 had the kernel drop a burst's connection
    requests (the sender's retry comes 1 s later, then 3 s)."""
    _waiting_room: WaitingRoom | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contexts = SharedContexts(self.contexts)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept, nothing more: TLS is wrapped on the connection's own thread."""
        return cast(socket.socket, self.socket).accept()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Let the connection wait for its request without a thread (``gateway.waiting_room``),
        then serve it on threads of its own."""
        if not HAS_EPOLL:
            super().process_request(request, client_address)
            return
        if self._waiting_room is None:  # only the accepting thread gets here
            ae = cast("GatewayAE", self.ae)
            self._waiting_room = WaitingRoom(
                super().process_request,
                timeout_seconds=ae.acse_timeout or DEFAULT_REQUEST_TIMEOUT_SECONDS,
                capacity=ae.max_waiting_connections,
                whole_request=self.ssl_context is None,
            )
        self._waiting_room.admit(request, client_address)

    def service_actions(self) -> None:
        """Nothing between requests; pynetdicom's server ran a full garbage collection every 60
        turns of its loop (each connection, each half second idle), which held the GIL for
        some 55 ms of every association in the process. Cycles an association leaves are
        collected by the interpreter's own collector as they would be anywhere else."""

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Shake hands (TLS only), then serve the association as pynetdicom does."""
        if self.ssl_context is not None:
            wrapped = self._handshake(request, self.ssl_context)
            if wrapped is None:
                self.shutdown_request(request)
                return
            request = wrapped
        super().process_request_thread(request, client_address)

    def server_close(self) -> None:
        """Close the listening socket and every connection still in the waiting room."""
        if self._waiting_room is not None:
            self._waiting_room.close()
        super().server_close()

    def _handshake(
        self, connection: socket.socket, context: ssl.SSLContext
    ) -> ssl.SSLSocket | None:
        """The connection under TLS, its handshake done within the ARTIM time; None (and a
        log line) if it fails, or the peer is gone before it starts."""
        try:
            wrapped = context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
            blocking_timeout = wrapped.gettimeout()
            wrapped.settimeout(self.ae.acse_timeout)
            wrapped.do_handshake()
        except (ssl.SSLError, OSError) as error:
            log_event(logger, "gateway.dicom_tls_refused", logging.WARNING,
                      reason=type(error).__name__)  # fmt: skip
            return None
        wrapped.settimeout(blocking_timeout)
        return wrapped


class ReusePortServer(GatewayServer):
    """The server above, bound with SO_REUSEPORT so several gateway processes share a port."""

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()
