"""C-STORE data set PDUs read straight from the socket into the reception file.

pynetdicom turns every P-DATA-TF PDU into objects and copies it four or five times on the way
(a bytearray, ``bytes()``, a slice per PDV, another slice to drop the control header), each time
into newly allocated memory, so a 15.7 MB image costs some 70 MB of copies and page faults: a
pynetdicom SCP that did nothing at all reached only about half of dcmtk's storescp here. While a
C-STORE data set is arriving, a PDU can carry only more of that data set, so ``DataSetReceiver``
reads such a PDU into one reused buffer and writes its fragments from there to the reception file
pynetdicom opened: one copy in and one out, as storescp does.

Everything else keeps pynetdicom's own path: association negotiation, command sets, release,
abort, TLS connections and PDUs in any state but Sta6. A PDU that arrives while a data set is
due but is not exactly a run of that message's data set fragments (an abort, another message, a
malformed item) is handed, as read, to pynetdicom's decoder and state machine, which reject what
is wrong as they would have. The fragment that ends the data set is written here too, then an
empty last fragment is handed to pynetdicom's DIMSE layer so that it completes the message, its
events and its queue as usual.

Reads go straight to the descriptor (``os.readv`` into the buffer): Python's socket methods poll
before every read when the socket has a timeout, as pynetdicom's have, which doubled the system
calls per PDU. The descriptor is non-blocking for the same reason, so a read that finds nothing
waits in ``select`` for at most the association's network timeout, as pynetdicom's reads do.

A data set PDU read here fires no ``EVT_DATA_RECV`` or ``EVT_PDU_RECV``; the gateway binds no
handler to them (pynetdicom's standard handler only logs each PDU at DEBUG level).
"""

from __future__ import annotations

import logging
import os
import select
import ssl
import struct
from typing import Any

from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA

from gateway.receiving import ReceptionFile
from gateway.transport import PDU_HEADER_LENGTH, BulkReceiveSocket, is_too_long

logger = logging.getLogger(__name__)

P_DATA_TF = 0x04
PDU_TYPES = frozenset(range(0x01, 0x08))
"""PS3.8 9.3: A-ASSOCIATE-RQ/AC/RJ, P-DATA-TF, A-RELEASE-RQ/RP, A-ABORT."""
DATA_TRANSFER_STATE = "Sta6"
"""PS3.8 9.2: association established, ready for data transfer."""
COMMAND_FRAGMENT = 0x01
LAST_FRAGMENT = 0x02
PDV_HEADER_LENGTH = 6
"""Item length (4 bytes), presentation context ID, message control header."""

NEXT_PDU_WAIT_SECONDS = 0.05
"""How long the data set loop waits for the next PDU before it gives the reactor a turn."""

Fragment = tuple[int, int, int]
"""Start and end offsets of a fragment's data in the PDU, and its message control header."""


def data_set_fragments(pdu: memoryview, context_id: int) -> list[Fragment] | None:
    """The data set fragments of one P-DATA-TF PDU (header included), or None unless the PDU is
    only well-formed data set fragments of presentation context ``context_id``, the last of them
    possibly ending the data set."""
    fragments: list[Fragment] = []
    offset = PDU_HEADER_LENGTH
    end = len(pdu)
    while offset < end:
        if end - offset < PDV_HEADER_LENGTH or (fragments and fragments[-1][2] & LAST_FRAGMENT):
            return None
        (item_length,) = struct.unpack_from(">L", pdu, offset)
        item_end = offset + 4 + item_length
        if item_length < 2 or item_end > end:
            return None
        control_header = pdu[offset + 5]
        if pdu[offset + 4] != context_id or control_header & COMMAND_FRAGMENT:
            return None
        fragments.append((offset + PDV_HEADER_LENGTH, item_end, control_header))
        offset = item_end
    return fragments or None


class DataSetReceiver(DULServiceProvider):
    """pynetdicom's DUL with data set PDUs of C-STORE requests read directly into the file.

    ``receive_data_sets_directly`` gives an accepted connection's DUL this class: pynetdicom
    builds the DUL itself, and the class adds behaviour and one reused buffer, nothing else.
    """

    _pdu_buffer: bytearray | None = None

    def _read_pdu_data(self) -> None:
        """Read the next PDU; while it continues a data set, keep reading the data set's PDUs.

        pynetdicom's reactor sleeps a millisecond after a PDU that queued no state machine
        event, which at 128 KiB a PDU would cost more than the copies saved, so the data set's
        PDUs are read here one after another for as long as they keep arriving within
        ``NEXT_PDU_WAIT_SECONDS``, nothing waits to be sent and the thread is not being stopped.
        """
        transport = self.socket
        message = self._data_set_in_progress()
        if message is None or not isinstance(transport, BulkReceiveSocket):
            super()._read_pdu_data()
            return
        connection = transport.socket
        if connection is None or isinstance(connection, ssl.SSLSocket):
            # TLS keeps pynetdicom's path: decrypted bytes may wait inside the TLS layer, where
            # select does not see them.
            super()._read_pdu_data()
            return
        descriptor = connection.fileno()
        wait = self.network_timeout
        while self._receive_data_set_pdu(descriptor, message, transport.longest_read, wait):
            self._idle_timer.restart()
            if self._kill_thread or not self.to_provider_queue.empty():
                return
            if not select.select([descriptor], [], [], NEXT_PDU_WAIT_SECONDS)[0]:
                return

    def _receive_data_set_pdu(
        self, descriptor: int, message: Any, longest: int, wait: float | None
    ) -> bool:
        """Read one whole PDU; True if it continued the data set and more of it is due."""
        header = self._buffer(PDU_HEADER_LENGTH)
        if read_exactly(descriptor, header, wait) < PDU_HEADER_LENGTH:
            return self._closed()
        pdu_type = header[0]
        (length,) = struct.unpack_from(">L", header, 2)
        if pdu_type not in PDU_TYPES:
            logger.error("Unknown PDU type received '0x%02X'", pdu_type)
            self.event_queue.put("Evt19")  # unrecognised PDU
            return False
        if is_too_long(length, longest):
            return self._closed()
        pdu = self._buffer(PDU_HEADER_LENGTH + length)
        if read_exactly(descriptor, pdu[PDU_HEADER_LENGTH:], wait) < length:
            return self._closed()
        fragments = (
            data_set_fragments(pdu, int(message.context_id)) if pdu_type == P_DATA_TF else None
        )
        if fragments is None:
            self._decode_as_pynetdicom_does(bytearray(pdu))
            return False
        reception = message._data_set_file
        for start, end, _ in fragments:
            reception.write(pdu[start:end])
        if not fragments[-1][2] & LAST_FRAGMENT:
            return True
        if isinstance(reception, ReceptionFile):
            reception.start_sync()
        else:
            reception.file.flush()
        ending = P_DATA()
        # pynetdicom's setter wants [ID, PDV] lists, although its annotation says tuples.
        ending.presentation_data_value_list = [
            [int(message.context_id), bytes([LAST_FRAGMENT])]  # type: ignore[list-item]
        ]
        # The reactor keeps pynetdicom's 1 ms loop while the answer is prepared: a 0.1 ms loop
        # took the GIL from the intake ten times a millisecond and made the answer slower.
        self.assoc.dimse.receive_primitive(ending)
        return False

    def _closed(self) -> bool:
        """The connection closed, failed or went quiet inside a PDU: Evt17, as pynetdicom does."""
        logger.error("Connection closed before the entire PDU was received")
        self.event_queue.put("Evt17")  # transport connection closed
        return False

    def _data_set_in_progress(self) -> Any | None:
        """The C-STORE request whose data set is arriving into a file, if any."""
        if self.state_machine.current_state != DATA_TRANSFER_STATE:
            return None
        message = self.assoc.dimse.message
        if message is None or getattr(message, "_data_set_file", None) is None:
            return None
        return message if message.context_id is not None else None

    def _buffer(self, size: int) -> memoryview:
        """A view of ``size`` bytes of this connection's PDU buffer, grown when needed; a grown
        buffer keeps the PDU header already read into the old one."""
        if self._pdu_buffer is None or len(self._pdu_buffer) < size:
            grown = bytearray(size)
            if self._pdu_buffer is not None:
                grown[:PDU_HEADER_LENGTH] = self._pdu_buffer[:PDU_HEADER_LENGTH]
            self._pdu_buffer = grown
        return memoryview(self._pdu_buffer)[:size]

    def _decode_as_pynetdicom_does(self, raw: bytearray) -> None:
        """Hand a PDU already read to pynetdicom's decoder and state machine."""
        try:
            pdu, event = self._decode_pdu(raw)
        except Exception as error:
            logger.error("Unable to decode the received PDU data: %s", type(error).__name__)
            self.event_queue.put("Evt19")  # invalid PDU
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)


def read_exactly(descriptor: int, into: memoryview, wait: float | None) -> int:
    """Fill ``into`` from a non-blocking descriptor; returns how many bytes came, fewer if it
    closed, failed, or stayed silent for ``wait`` seconds (None: no limit)."""
    received = 0
    while received < len(into):
        try:
            count = os.readv(descriptor, [into[received:]])
        except BlockingIOError:
            if not select.select([descriptor], [], [], wait)[0]:
                return received
            continue
        except OSError:
            return received
        if count == 0:
            return received
        received += count
    return received


def receive_data_sets_directly(dul: DULServiceProvider) -> None:
    """Give one accepted connection's DUL the direct data set path."""
    dul.__class__ = DataSetReceiver
