"""TCP under pynetdicom: bulk reads, a read-ahead buffer and a bound on each PDU.

pynetdicom reads a PDU 4 KiB per ``recv`` call, so a 15 MB image costs some 3,800 trips
through Python and the GIL, and it allocates whatever length a PDU header announces as the
bytes arrive, up to 4 GiB. ``BulkReceiveSocket`` reads up to 1 MiB per call instead (one or
two calls per 128 KiB PDU) and closes the connection on a PDU longer than the gateway accepts,
before reading it. (The listening side, SO_REUSEPORT among it, is ``gateway.servers``.)

The socket also owns a read-ahead buffer (``ReadAhead``): ``gateway.pdata`` reads a data set's
PDUs through it, as much as the socket holds per call, several PDUs at a time. What it read
beyond a data set's end (a release request, the next command of a peer that does not wait)
stays there, and ``recv`` and ``ready`` serve it to pynetdicom before the socket.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import cast

from pynetdicom.transport import AssociationSocket

from radraft.logs import log_event
from radraft.readiness import PolledAssociationSocket, wait_readable

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
"""Largest single ``recv``: bounded so memory grows only as data really arrives."""
SMALLEST_PDU_LIMIT = 1 << 20
"""Association requests and other control PDUs may be this long whatever the data PDU limit."""
PDU_HEADER_LENGTH = 6
READ_AHEAD_BYTES = 1 << 20
"""The read-ahead buffer's size, grown only to hold one longer PDU whole."""


class BulkReceiveSocket(PolledAssociationSocket):
    """pynetdicom's association socket with large reads and a longest PDU.

    ``tune_connection`` gives an accepted connection's socket this class (it adds behaviour,
    no state beyond ``longest_read``), because pynetdicom constructs the socket itself.
    """

    longest_read = SMALLEST_PDU_LIMIT
    _ahead: ReadAhead | None = None

    @property
    def read_ahead(self) -> ReadAhead:
        """Bytes read from the connection and not yet consumed (created on first use)."""
        if self._ahead is None:
            self._ahead = ReadAhead()
        return self._ahead

    def has_unread(self) -> bool:
        """Whether there is data to read: read ahead (while the connection is open), or waiting
        on the connection (``ready`` asks this too)."""
        if self._ahead is not None and self._ahead.buffered and self.socket is not None:
            return True
        return super().has_unread()

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly ``nr_bytes`` (fewer only if the peer closed); none if over the limit.

        pynetdicom treats a short read as a closed connection (Evt17), which is the answer to a
        PDU longer than the maximum we announced (PS3.8 9.3.1: the peer must not send it).
        Bytes already read ahead come first.
        """
        connection = self.socket
        if connection is None or is_too_long(nr_bytes, self.longest_read):
            return bytearray()
        received = self._ahead.take(nr_bytes) if self._ahead is not None else bytearray()
        while len(received) < nr_bytes:
            chunk = connection.recv(min(nr_bytes - len(received), READ_CHUNK))
            if not chunk:
                break
            received += chunk
        return received


class ReadAhead:
    """A connection's bytes read but not yet consumed, read as many as the socket holds.

    ``fill`` reads into the free end, ``whole_pdu`` shows the first PDU once all of it is in,
    ``consume`` drops what was used. Views handed out stay valid until the next ``fill``.
    """

    def __init__(self, size: int = READ_AHEAD_BYTES) -> None:
        self._buffer = bytearray(size)
        self._start = 0
        self._end = 0

    @property
    def buffered(self) -> int:
        """Bytes read and not yet consumed."""
        return self._end - self._start

    def first_byte(self) -> int:
        """The first unconsumed byte (a PDU's type); only when ``buffered``."""
        return self._buffer[self._start]

    def pending_pdu_length(self) -> int | None:
        """The whole length (header included) of the first PDU, once its header is in."""
        if self.buffered < PDU_HEADER_LENGTH:
            return None
        length = int.from_bytes(self._buffer[self._start + 2 : self._start + 6], "big")
        return PDU_HEADER_LENGTH + length

    def whole_pdu(self) -> memoryview | None:
        """The first PDU, header included, if all of it has been read."""
        length = self.pending_pdu_length()
        if length is None or self.buffered < length:
            return None
        return memoryview(self._buffer)[self._start : self._start + length]

    def consume(self, count: int) -> None:
        """Drop the first ``count`` bytes (a PDU used)."""
        self._start += count
        if self._start == self._end:
            self._start = self._end = 0

    def head(self, count: int) -> bytes:
        """A copy of the first ``count`` unconsumed bytes (fewer if fewer are buffered)."""
        return bytes(self._buffer[self._start : self._start + min(count, self.buffered)])

    def put(self, data: bytes) -> None:
        """Append bytes read elsewhere (a PDU's headers the splicing path leaves to the copying
        one)."""
        self._make_room(self.buffered + len(data))
        self._buffer[self._end : self._end + len(data)] = data
        self._end += len(data)

    def take(self, count: int) -> bytearray:
        """Remove and return up to ``count`` of the first bytes."""
        taken = self._buffer[self._start : self._start + min(count, self.buffered)]
        self.consume(len(taken))
        return taken

    def fill(
        self, descriptor: int, wait: float | None, room_for: int = 0, at_most: int | None = None
    ) -> int | None:
        """Read what the non-blocking ``descriptor`` holds (up to ``at_most`` bytes) into the
        free end, with room for at least ``room_for`` bytes buffered in all (a PDU being read);
        waits up to ``wait`` seconds (None: no limit) for the first byte. Returns the count
        read, 0 if the peer closed or the read failed, None if nothing came in time."""
        self._make_room(max(room_for, self.buffered + 1))
        end = len(self._buffer) if at_most is None else self._end + max(at_most, 1)
        free = memoryview(self._buffer)[self._end : end]
        try:
            while True:
                try:
                    count = os.readv(descriptor, [free])
                except BlockingIOError:
                    if not wait_readable(descriptor, wait):
                        return None
                    continue
                except OSError:
                    return 0
                self._end += count
                return count
        finally:
            free.release()

    def _make_room(self, capacity: int) -> None:
        """Make ``capacity`` bytes fit from the first unconsumed one: grow the buffer for a PDU
        longer than it, or move the unconsumed bytes to the front (also once past half of it,
        so reads stay large)."""
        size = len(self._buffer)
        if capacity > size:
            grown = bytearray(capacity)
            grown[: self.buffered] = self._buffer[self._start : self._end]
            self._buffer = grown
        elif self._start and (self._start + capacity > size or self._end > size // 2):
            self._buffer[: self.buffered] = self._buffer[self._start : self._end]
        else:
            return
        self._start, self._end = 0, self.buffered


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
