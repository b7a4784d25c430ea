"""The listening side under pynetdicom: TLS handshakes off the accepting thread, a shared port.

pynetdicom's threaded server runs the TLS handshake inside ``get_request``, on the one thread
that accepts every connection, with no timeout (an accepted socket is blocking). One peer
that opened a TCP connection to the DICOM TLS port and sent nothing, or sent its ClientHello a
byte a minute, therefore kept every other TLS sender out for as long as it liked.
``GatewayServer`` accepts without the handshake and runs it first thing on the connection's
own thread, bounded by the ARTIM timer (``RADRAFT_DICOM_REQUEST_TIMEOUT_SECONDS``): the
same time a plain connection gets to send its A-ASSOCIATE-RQ. A failed handshake (no or an
untrusted client certificate, plain DICOM on the TLS port, a timeout) closes the connection
with one log line. ``ReusePortServer`` binds with SO_REUSEPORT so that
``radraft gateway --processes N`` can bind one port N times; the kernel spreads connections
over the processes, each with its own GIL.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any, cast

from pynetdicom.transport import ThreadedAssociationServer

from radraft.logs import log_event

logger = logging.getLogger(__name__)


class GatewayServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with the TLS handshake on the connection's thread."""

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept; a TLS connection is wrapped, its handshake left to its own thread."""
        connection, address = cast(socket.socket, self.socket).accept()
        if self.ssl_context is None:
            return connection, address
        wrapped = self.ssl_context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Shake hands (TLS only), then serve the association as pynetdicom does."""
        if isinstance(request, ssl.SSLSocket) and not self._handshake(request):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def _handshake(self, connection: ssl.SSLSocket) -> bool:
        """The handshake within the ARTIM time; False (and a log line) if it fails."""
        blocking_timeout = connection.gettimeout()
        connection.settimeout(self.ae.acse_timeout)
        try:
            connection.do_handshake()
        except (ssl.SSLError, OSError) as error:
            log_event(logger, "gateway.dicom_tls_refused", logging.WARNING,
                      reason=type(error).__name__)  # fmt: skip
            return False
        connection.settimeout(blocking_timeout)
        return True


class ReusePortServer(GatewayServer):
    """The server above, bound with SO_REUSEPORT so several gateway processes share a port."""

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()
