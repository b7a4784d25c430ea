"""TCP under pynetdicom: a port shared by several processes, bulk reads, a bound on each PDU.

pynetdicom reads a PDU 4 KiB per ``recv`` call, so a 15 MB image costs some 3,800 trips
through Python and the GIL, and it allocates whatever length a PDU header announces as the
bytes arrive, up to 4 GiB. ``BulkReceiveSocket`` reads up to 1 MiB per call instead (one or
two calls per 128 KiB PDU) and closes the connection on a PDU longer than the gateway accepts,
before reading it. ``ReusePortServer`` lets ``radraft gateway --processes N`` bind one port N
times; the kernel spreads connections over the processes, each with its own GIL.
"""

from __future__ import annotations

import logging
import socket
from typing import cast

from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

from radraft.logs import log_event

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
"""Largest single ``recv``: bounded so memory grows only as data really arrives."""
SMALLEST_PDU_LIMIT = 1 << 20
"""Association requests and other control PDUs may be this long whatever the data PDU limit."""
PDU_HEADER_LENGTH = 6


class ReusePortServer(ThreadedAssociationServer):
    """pynetdicom's server, bound with SO_REUSEPORT so several gateway processes share a port."""

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class BulkReceiveSocket(AssociationSocket):
    """pynetdicom's association socket with large reads and a longest PDU.

    ``tune_connection`` gives an accepted connection's socket this class (it adds behaviour,
    no state beyond ``longest_read``), because pynetdicom constructs the socket itself.
    """

    longest_read = SMALLEST_PDU_LIMIT

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly ``nr_bytes`` (fewer only if the peer closed); none if over the limit.

        pynetdicom treats a short read as a closed connection (Evt17), which is the answer to a
        PDU longer than the maximum we announced (PS3.8 9.3.1: the peer must not send it).
        """
        connection = self.socket
        if connection is None or is_too_long(nr_bytes, self.longest_read):
            return bytearray()
        received = bytearray()
        while len(received) < nr_bytes:
            chunk = connection.recv(min(nr_bytes - len(received), READ_CHUNK))
            if not chunk:
                break
            received += chunk
        return received


def is_too_long(pdu_length: int, limit: int) -> bool:
    """Whether a PDU announced ``pdu_length`` bytes long exceeds ``limit``; logged if so (the
    caller then closes the connection without reading it)."""
    if pdu_length <= limit:
        return False
    log_event(logger, "gateway.pdu_too_long", logging.WARNING, length=pdu_length, limit=limit)
    return True


def tune_connection(transport: AssociationSocket | None, max_pdu_size: int) -> None:
    """Nagle off, bulk reads and the PDU bound, for one accepted connection."""
    if transport is None or transport.socket is None:
        return
    transport.__class__ = BulkReceiveSocket
    cast(BulkReceiveSocket, transport).longest_read = max(max_pdu_size, SMALLEST_PDU_LIMIT)
    # Nagle's algorithm stalls each small response behind a delayed ACK (about 40-70 ms per
    # image with dcmtk senders); DICOM is request-response, so it is switched off.
    try:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as error:
        log_event(logger, "gateway.nodelay_failed", logging.DEBUG, error=type(error).__name__)
