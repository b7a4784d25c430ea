"""C-STORE data set PDUs read straight from the socket into the reception file.

pynetdicom turns every P-DATA-TF PDU into objects and copies it four or five times on the way
(a bytearray, ``bytes()``, a slice per PDV, another slice to drop the control header), each time
into newly allocated memory, so a 15.7 MB image costs some 70 MB of copies and page faults: a
pynetdicom SCP that did nothing at all reached only about half of dcmtk's storescp here. While a
C-STORE data set is arriving, a PDU can carry only more of that data set, so ``DataSetReceiver``
reads such PDUs into the connection's read-ahead buffer (``gateway.transport.ReadAhead``), as
much as the socket holds per read, and writes the fragments of every whole PDU a read brought to
the reception file pynetdicom opened, with one system call: one copy in and one out, as storescp
does, and a few system calls per MiB instead of five per PDU. Whatever a read brought beyond
the data set's end stays in that buffer for pynetdicom, which reads through it.

On Linux the copy in is skipped too: a connection reads each PDU's headers alone (the PDU's
and its first PDV's, 12 bytes) and, where the PDU is exactly one data set fragment of the
message (as dcmtk, pynetdicom and most senders send data sets), splices its payload from the
socket into a pipe that is drained into the file every MiB or so (``gateway.splice_pipe``),
so the data never enters Python. Any other PDU goes the copying way above, after what the
pipe holds has been written, so the file keeps the data set's order.

Everything else keeps pynetdicom's own path: association negotiation, command sets, release,
abort, TLS connections and PDUs in any state but Sta6. A PDU that arrives while a data set is
due but is not exactly a run of that message's data set fragments (an abort, another message, a
malformed item) is handed, as read, to pynetdicom's decoder and state machine, which reject what
is wrong as they would have. The fragment that ends the data set is written here too.

Then, given the intake (``store``; the gateway gives it), the finished C-STORE is stored and
answered on this thread: the intake runs here and the C-STORE-RSP is written to the socket as
one P-DATA-TF PDU. pynetdicom's way costs a hand-over to the association's thread (whose loop
sleeps a millisecond per turn), its service class, a response primitive, and a hand-back to
this thread's loop (another millisecond's sleep) before the answer goes out, all while the
sender waits: about 15 % of a 15.7 MB image's cycle here. This path fires no ``EVT_C_STORE``,
``EVT_DIMSE_RECV``, ``EVT_DIMSE_SENT`` or ``EVT_PDU_SENT`` (the gateway binds only
``EVT_C_STORE``, to the same intake, for pynetdicom's path); an exception in the intake is
answered 0xC211 as pynetdicom answers one in its handler; nothing is sent once the association
has ended. Without an intake, or where the answer needs pynetdicom's encoder or several
fragments, an empty last fragment is handed to pynetdicom's DIMSE layer, which completes the
message, its events and its queue as usual.

Reads go straight to the descriptor (``os.readv`` into the buffer): Python's socket methods poll
before every read when the socket has a timeout, as pynetdicom's have, which doubled the system
calls per PDU. The descriptor is non-blocking for the same reason, so a read that finds nothing
waits in ``poll`` for at most the association's network timeout, as pynetdicom's reads do.

A data set PDU read here fires no ``EVT_DATA_RECV`` or ``EVT_PDU_RECV``; the gateway binds no
handler to them (pynetdicom's standard handler only logs each PDU at DEBUG level).
"""

from __future__ import annotations

import logging
import os
import ssl
import struct
from collections.abc import Callable
from enum import Enum, auto
from pathlib import Path
from typing import Any, cast

from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA

from gateway import prepared_file
from gateway.answers import (
    LAST_COMMAND_FRAGMENT,
    encode_store_answer,
    error_comment,
    fits_one_fragment,
)
from gateway.dimse_decoding import COMMAND_FRAGMENT, discard_message_reception
from gateway.intake import ReceivedInstance, StoreOutcome
from gateway.receiving import ReceptionFile, prepare_next_reception
from gateway.splice_pipe import PIPE_FULL, SPLICE_UNSUPPORTED, SplicePipe, open_pipe
from gateway.transport import PDU_HEADER_LENGTH, BulkReceiveSocket, ReadAhead, is_too_long
from radraft.readiness import wait_readable

logger = logging.getLogger(__name__)

P_DATA_TF = 0x04
PDU_TYPES = frozenset(range(0x01, 0x08))
"""PS3.8 9.3: A-ASSOCIATE-RQ/AC/RJ, P-DATA-TF, A-RELEASE-RQ/RP, A-ABORT."""
DATA_TRANSFER_STATE = "Sta6"
"""PS3.8 9.2: association established, ready for data transfer."""
AWAITING_CLOSE_STATE = "Sta13"
"""PS3.8 9.2: awaiting the transport connection's close (after an A-ABORT we sent)."""
DROP_READ_BYTES = 1 << 16
LAST_FRAGMENT = 0x02
PDV_HEADER_LENGTH = 6
"""Item length (4 bytes), presentation context ID, message control header."""
PDATA_HEADERS = ">BBLLBB"
"""A P-DATA-TF PDU's header and its first PDV's: type, reserved, PDU length, item length,
presentation context ID, message control header."""
PDATA_HEADERS_LENGTH = PDU_HEADER_LENGTH + PDV_HEADER_LENGTH

HANDLER_FAILED = 0xC211
"""The status pynetdicom answers when its C-STORE handler raises."""
NEXT_PDU_WAIT_SECONDS = 0.05
"""How long the data set loop waits for the next PDU before it gives the reactor a turn."""


class Batch(Enum):
    """Where a data set stands once the whole PDUs read ahead are written."""

    MORE_DUE = auto()
    """It goes on: read more."""
    ANSWERED = auto()
    """It ended and was stored and answered on this thread."""
    HANDED_OVER = auto()
    """pynetdicom has the rest: its DIMSE layer completes the message, a PDU went to its
    decoder, or an error event is queued."""


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
    builds the DUL itself, and the class adds behaviour only (its buffer is the socket's).
    """

    _store: Callable[[ReceivedInstance], StoreOutcome] | None = None
    """The intake, when C-STOREs are stored and answered here (``receive_data_sets_directly``)."""
    _splice: SplicePipe | None = None
    """The connection's splice pipe, opened by the first data set that uses it."""
    _splice_refused = False
    """No pipe could be opened, or the socket cannot be spliced: data sets are copied."""

    def run(self) -> None:
        """The DUL thread; a reception file prepared on it, or one whose data set was still
        arriving when the association ended, is removed when it ends."""
        try:
            super().run()
        finally:
            prepared_file.discard()
            self._abandon_unfinished_data_set()
            if self._splice is not None:
                self._splice.close()

    def _abandon_unfinished_data_set(self) -> None:
        """The message still being received (pynetdicom moves a finished one out of
        ``dimse.message``, and the direct path takes it before it answers) is dropped with its
        reception file."""
        discard_message_reception(getattr(getattr(self.assoc, "dimse", None), "message", None))

    def _is_transport_event(self) -> bool:
        """With a data set due, read it here at once, waiting for its first bytes in
        ``poll``: pynetdicom's reactor would find the socket empty a few microseconds after
        the command and sleep a millisecond before looking again, once per image. pynetdicom calls
        its ``_read_pdu_data`` only from here, so any other PDU, and any on TLS, takes
        pynetdicom's path from here."""
        if self.state_machine.current_state == AWAITING_CLOSE_STATE:
            return self._drop_until_closed()
        message = self._data_set_in_progress()
        descriptor = self._direct_descriptor()
        if message is None or descriptor is None:
            return super()._is_transport_event()
        return self._receive_data_set(message, descriptor)

    def _drop_until_closed(self) -> bool:
        """After our A-ABORT (Sta13), read and drop whatever the peer still sends, unparsed,
        until it closes or the ARTIM timer ends the wait; True if anything came.

        PS3.8 ignores those PDUs (AA-6). pynetdicom parsed them, and a peer sending garbage
        got one "Unknown PDU type received" line for every six bytes: a fuzzed association
        wrote hundreds, and a stream of zeros would flood the log at line rate."""
        transport = self.socket
        connection = transport.socket if transport is not None else None
        if transport is None or connection is None:
            return False
        if isinstance(transport, BulkReceiveSocket):
            ahead = transport.read_ahead
            ahead.consume(ahead.buffered)
        if not wait_readable(connection, 0):
            return False
        try:
            dropped = connection.recv(DROP_READ_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            dropped = b""
        if not dropped:
            transport.close()  # Evt17: the peer closed
        return True

    def _direct_descriptor(self) -> int | None:
        """The connection's descriptor where data set PDUs are read here: plain TCP only, as
        decrypted bytes may wait inside the TLS layer, where poll does not see them."""
        transport = self.socket
        if not isinstance(transport, BulkReceiveSocket):
            return None
        connection = transport.socket
        if connection is None or isinstance(connection, ssl.SSLSocket):
            return None
        return connection.fileno()

    def _receive_data_set(self, message: Any, descriptor: int) -> bool:
        """Read a data set's PDUs and write their fragments to the reception file, for as long
        as they keep arriving within ``NEXT_PDU_WAIT_SECONDS``, nothing waits to be sent and
        the thread is not being stopped; True if anything was read.

        pynetdicom's reactor sleeps a millisecond after a PDU that queued no state machine
        event, which at 128 KiB a PDU would cost more than the copies saved, hence the loop.
        Where the connection has a splice pipe, each read takes one PDU's headers and a PDU
        of one data set fragment has its payload spliced to the file (``_splice_pdus``);
        otherwise, and for any other PDU, each read takes as much as the socket holds (up to
        the read-ahead buffer's 1 MiB), and the fragments of all the whole PDUs it brought are
        written with one system call.
        """
        transport = cast(BulkReceiveSocket, self.socket)
        ahead = transport.read_ahead
        pipe = self._splice_pipe(message)
        received = False
        try:
            while True:
                batch = None
                if pipe is not None and not self._splice_refused:
                    batch, spliced = self._splice_pdus(message, descriptor, ahead, pipe)
                    received = received or spliced
                if batch is None:
                    if pipe is not None and ahead.whole_pdu() is not None:
                        message._data_set_file.take_spliced(pipe)  # keep the file's order
                    batch = self._write_whole_pdus(message, ahead, transport.longest_read)
                if batch is Batch.ANSWERED:
                    self._read_next_pdu(descriptor, ahead)
                if batch is not Batch.MORE_DUE:
                    return True
                if received:
                    self._idle_timer.restart()
                if self._kill_thread or not self.to_provider_queue.empty():
                    return received
                inside_a_pdu = ahead.buffered > 0
                wait = self.network_timeout if inside_a_pdu else NEXT_PDU_WAIT_SECONDS
                count = ahead.fill(
                    descriptor,
                    wait,
                    room_for=ahead.pending_pdu_length() or 0,
                    at_most=next_read_size(ahead) if pipe else None,
                )
                if count == 0 or (count is None and inside_a_pdu):
                    self._closed()
                    return True
                if count is None:
                    return received  # quiet between two PDUs: the reactor waits for the next
                received = True
        finally:
            if pipe is not None and pipe.held:  # leaving inside a data set: its bytes so far
                message._data_set_file.take_spliced(pipe)

    def _splice_pipe(self, message: Any) -> SplicePipe | None:
        """The connection's splice pipe (opened on first use) where this message's data set is
        written to a gateway reception file; None where splicing is unavailable or refused."""
        if self._splice_refused or not isinstance(message._data_set_file, ReceptionFile):
            return None
        if self._splice is None:
            self._splice = open_pipe()
            self._splice_refused = self._splice is None
        return self._splice

    def _splice_pdus(
        self, message: Any, descriptor: int, ahead: ReadAhead, pipe: SplicePipe
    ) -> tuple[Batch | None, bool]:
        """Splice the payloads of the next PDUs into the reception file, reading only their
        headers into Python, while each is one data set fragment of ``message`` (as dcmtk,
        pynetdicom and most senders send data sets), until the pipe is drained into the file
        (so that the data set loop looks at its thread every MiB or so) or no PDU waits.

        Returns where the data set stands, None where the next PDU (or the start of one) is
        left in the read-ahead buffer for the copying path, which reads and checks it; and
        whether anything was read.
        """
        context_id = int(message.context_id)
        longest = cast(BulkReceiveSocket, self.socket).longest_read
        reception = message._data_set_file
        read_any = False
        while True:
            from_ahead = ahead.buffered > 0
            if from_ahead:
                if ahead.buffered != PDATA_HEADERS_LENGTH:
                    return None, read_any
                headers = ahead.head(PDATA_HEADERS_LENGTH)
            else:
                try:
                    headers = os.read(descriptor, PDATA_HEADERS_LENGTH)
                except BlockingIOError:
                    return Batch.MORE_DUE, read_any  # the data set loop waits for more
                except OSError:
                    headers = b""
                if not headers:
                    self._closed()
                    return Batch.HANDED_OVER, True
                read_any = True
                if len(headers) < PDATA_HEADERS_LENGTH:
                    ahead.put(headers)
                    return None, True
            fragment = single_fragment(headers, context_id, longest)
            if fragment is None:
                if not from_ahead:
                    ahead.put(headers)
                return None, read_any
            length, control = fragment
            remaining = length
            started = False
            while remaining:
                moved = pipe.fill(descriptor, remaining, self.network_timeout)
                if moved == PIPE_FULL:
                    reception.take_spliced(pipe)
                    continue
                if moved == SPLICE_UNSUPPORTED and not started:
                    self._splice_refused = True  # this connection is read the copying way
                    if not from_ahead:
                        ahead.put(headers)
                    return None, read_any
                if moved is None or moved <= 0:
                    pipe.discard()
                    self._closed()
                    return Batch.HANDED_OVER, True
                if from_ahead and not started:
                    ahead.consume(PDATA_HEADERS_LENGTH)
                started = read_any = True
                remaining -= moved
            if control & LAST_FRAGMENT:
                reception.take_spliced(pipe)
                return self._end_data_set(message, reception), True
            if pipe.room < length:  # the next PDU may not fit: write what is held
                reception.take_spliced(pipe)
                return Batch.MORE_DUE, True

    def _read_next_pdu(self, descriptor: int, ahead: ReadAhead) -> bool:
        """After an answer sent here, wait up to ``NEXT_PDU_WAIT_SECONDS`` for the sender's next
        PDU (its next command, or a release) and read it through pynetdicom, whose reactor then
        acts on it at once: returning first, the reactor would sleep a millisecond before it
        looked, once per image (the next command came 1.3 ms after the answer instead of 0.4).
        The next reception file is created meanwhile. True if a PDU was read."""
        if self._kill_thread or not self.to_provider_queue.empty():
            return False
        if not ahead.buffered:
            prepare_next_reception()  # while the sender prepares its next command
        if ahead.buffered or wait_readable(descriptor, NEXT_PDU_WAIT_SECONDS):
            self._read_pdu_data()
            return True
        return False

    def _write_whole_pdus(self, message: Any, ahead: ReadAhead, longest: int) -> Batch:
        """Write the data set fragments of every whole PDU read ahead; where the data set
        stands then."""
        reception = message._data_set_file
        pieces: list[memoryview] = []
        try:
            while (length := ahead.pending_pdu_length()) is not None:
                pdu_type = ahead.first_byte()
                if pdu_type not in PDU_TYPES:
                    logger.error("Unknown PDU type received '0x%02X'", pdu_type)
                    ahead.consume(PDU_HEADER_LENGTH)
                    self.event_queue.put("Evt19")  # unrecognised PDU
                    return Batch.HANDED_OVER
                if is_too_long(length - PDU_HEADER_LENGTH, longest):
                    self._closed()
                    return Batch.HANDED_OVER
                pdu = ahead.whole_pdu()
                if pdu is None:
                    return Batch.MORE_DUE
                fragments = (
                    data_set_fragments(pdu, int(message.context_id))
                    if pdu_type == P_DATA_TF
                    else None
                )
                if fragments is None:
                    write_pieces(reception, pieces)
                    raw = bytearray(pdu)
                    ahead.consume(length)
                    self._decode_as_pynetdicom_does(raw)
                    return Batch.HANDED_OVER
                pieces.extend(pdu[start:end] for start, end, _ in fragments)
                ahead.consume(length)
                if fragments[-1][2] & LAST_FRAGMENT:
                    write_pieces(reception, pieces)
                    return self._end_data_set(message, reception)
            return Batch.MORE_DUE
        finally:
            write_pieces(reception, pieces)  # before the next read may move the bytes

    def _end_data_set(self, message: Any, reception: Any) -> Batch:
        """The data set's last fragment is written: store and answer, or let pynetdicom."""
        if isinstance(reception, ReceptionFile):
            reception.start_sync()
        else:
            reception.file.flush()
        if self._answered_here(message, reception):
            return Batch.ANSWERED
        ending = P_DATA()
        # pynetdicom's setter wants [ID, PDV] lists, although its annotation says tuples.
        ending.presentation_data_value_list = [
            [int(message.context_id), bytes([LAST_FRAGMENT])]  # type: ignore[list-item]
        ]
        # The reactor keeps pynetdicom's 1 ms loop while the answer is prepared: a 0.1 ms loop
        # took the GIL from the intake ten times a millisecond and made the answer slower.
        self.assoc.dimse.receive_primitive(ending)
        return Batch.HANDED_OVER

    def _answered_here(self, message: Any, reception: Any) -> bool:
        """Store a finished C-STORE and send its answer from this thread; False (nothing done)
        where pynetdicom's DIMSE layer must complete it instead."""
        store = self._store
        if store is None or not isinstance(reception, ReceptionFile):
            return False
        if not isinstance(message, C_STORE_RQ):
            return False
        command = message.command_set
        sop_class = str(command.get("AffectedSOPClassUID", ""))
        sop_instance = str(command.get("AffectedSOPInstanceUID", ""))
        message_id = command.get("MessageID")
        if not sop_class or not sop_instance or not isinstance(message_id, int):
            return False
        # From here on the message is ours: pynetdicom's DIMSE layer forgets it as it does once
        # a message is complete.
        self.assoc.dimse.message = None
        path = Path(reception.name)
        try:
            outcome = store(
                ReceivedInstance(
                    path=path,
                    calling_ae_title=str(self.assoc.requestor.ae_title).strip(),
                    sop_class_uid=sop_class,
                    sop_instance_uid=sop_instance,
                )
            )
            status, comment = int(outcome.status), outcome.comment or None
        except Exception:  # as pynetdicom answers an exception in the C-STORE handler
            logger.exception("Exception in the C-STORE intake")
            status, comment = HANDLER_FAILED, None
        finally:
            reception.close()
            path.unlink(missing_ok=True)  # the intake moved it away unless it was refused
        context_id = int(message.context_id or 0)  # set: a data set was due on it
        self._answer(context_id, sop_class, sop_instance, message_id, status, comment)
        return True

    def _answer(
        self,
        context_id: int,
        sop_class: str,
        sop_instance: str,
        message_id: int,
        status: int,
        comment: str | None,
    ) -> None:
        """Send the C-STORE-RSP: one P-DATA-TF PDU written to the socket here (in Sta6 the
        state machine would only send it, after a turn of the reactor's 1 ms loop), or, where
        it needs pynetdicom's encoder or more than one fragment, through pynetdicom. Nothing
        once the association has ended, as pynetdicom's service class does."""
        if self.state_machine.current_state != DATA_TRANSFER_STATE or self.socket is None:
            return
        comment = error_comment(comment) if comment else None
        command = encode_store_answer(
            sop_class_uid=sop_class, sop_instance_uid=sop_instance, message_id=message_id,
            status=status, comment=comment,
        )  # fmt: skip
        if command is None or not fits_one_fragment(command, self.assoc.dimse.maximum_pdu_size):
            response = C_STORE()
            response.MessageIDBeingRespondedTo = message_id
            response.AffectedSOPClassUID = sop_class
            response.AffectedSOPInstanceUID = sop_instance
            response.Status = status
            if comment:
                setattr(response, "ErrorComment", comment)  # noqa: B010 (typed as None)
            self.assoc.dimse.send_msg(response, context_id)
            return
        item = bytes([context_id]) + LAST_COMMAND_FRAGMENT + command
        self.socket.send(struct.pack(">BBLL", P_DATA_TF, 0, len(item) + 4, len(item)) + item)

    def _closed(self) -> None:
        """The connection closed, failed or went quiet inside a PDU: Evt17, as pynetdicom does."""
        logger.error("Connection closed before the entire PDU was received")
        self.event_queue.put("Evt17")  # transport connection closed

    def _data_set_in_progress(self) -> Any | None:
        """The C-STORE request whose data set is arriving into a file, if any."""
        if self.state_machine.current_state != DATA_TRANSFER_STATE:
            return None
        message = self.assoc.dimse.message
        if message is None or getattr(message, "_data_set_file", None) is None:
            return None
        return message if message.context_id is not None else None

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


def single_fragment(headers: bytes, context_id: int, longest: int) -> tuple[int, int] | None:
    """The payload length and message control header of a P-DATA-TF PDU that begins with
    ``headers`` (its header and its first PDV's) where the PDU is exactly one data set fragment
    of presentation context ``context_id``, with data, and not longer than ``longest``; None
    for anything else."""
    pdu_type, _, pdu_length, item_length, pdv_context, control = struct.unpack(
        PDATA_HEADERS, headers
    )
    if (
        pdu_type != P_DATA_TF
        or item_length + 4 != pdu_length
        or item_length <= 2
        or pdv_context != context_id
        or control & COMMAND_FRAGMENT
        or pdu_length > longest
    ):
        return None
    return item_length - 2, control


def next_read_size(ahead: ReadAhead) -> int:
    """How much to read where data set payloads are spliced: the next PDU's headers (a P-DATA-TF
    PDU and its first PDV's, so that the payload can be spliced), or the rest of a PDU whose
    headers are in but that is read the copying way. Never past the PDU, so that the next one
    starts at the buffer's front."""
    length = ahead.pending_pdu_length()
    if ahead.buffered < PDATA_HEADERS_LENGTH and (length is None or length >= PDATA_HEADERS_LENGTH):
        return PDATA_HEADERS_LENGTH - ahead.buffered
    return (length or PDATA_HEADERS_LENGTH) - ahead.buffered


def write_pieces(reception: Any, pieces: list[memoryview]) -> None:
    """Write a batch of data set fragments to the reception file and forget them; a file that
    is not the gateway's (no ``receive_into``) takes them one by one."""
    if not pieces:
        return
    if isinstance(reception, ReceptionFile):
        reception.write_pieces(pieces)
    else:
        for piece in pieces:
            reception.write(piece)
    pieces.clear()


def receive_data_sets_directly(
    dul: DULServiceProvider, store: Callable[[ReceivedInstance], StoreOutcome] | None = None
) -> None:
    """Give one accepted connection's DUL the direct data set path; with ``store``, finished
    C-STOREs are also stored and answered on the DUL's thread."""
    dul.__class__ = DataSetReceiver
    cast(DataSetReceiver, dul)._store = store
