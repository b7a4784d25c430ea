"""C-STORE responses encoded straight to bytes, not through pydicom.

pynetdicom turns every response primitive into a pydicom ``Dataset`` and encodes it with
pydicom's writer, about 0.5 ms of CPU per image on the development machine, paid while the
sender waits for the answer: for a 0.5 MB image that is about a twentieth of all the CPU the
gateway spends on it. A C-STORE-RSP command set (PS3.7
9.3.1.2) is eight elements at most, always Implicit VR Little Endian (PS3.7 6.3.1), so
``DirectStoreAnswers`` writes those bytes itself and hands pynetdicom's DUL the same one P-DATA
primitive pynetdicom would have built. Anything else (another message, an element this encoder
does not write, text that is not ASCII, a peer whose maximum PDU needs fragments, a handler
bound to ``EVT_DIMSE_SENT``) keeps pynetdicom's own path; the tests hold the two to the same
bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from gateway.even_values import even_length_ascii

COMMAND_GROUP = 0x0000
C_STORE_RSP_COMMAND_FIELD = 0x8001
NO_DATA_SET = 0x0101
"""(0000,0800) Command Data Set Type: no data set follows (PS3.7 E.1)."""
LAST_COMMAND_FRAGMENT = b"\x03"
"""Message control header: command information, last fragment (PS3.8 E.2)."""
PDV_OVERHEAD = 6
"""What pynetdicom keeps free of the peer's maximum PDU length per fragment."""


def error_comment(text: str) -> str:
    """``text`` as an Error Comment (0000,0902) may hold it: LO, 64 characters, no backslash."""
    return text.replace("\\", "/")[:64]


def fits_one_fragment(command: bytes, peer_max_pdu: int) -> bool:
    """Whether a command set goes in one fragment of the peer's maximum PDU (0: no limit)."""
    return not peer_max_pdu or len(command) <= peer_max_pdu - PDV_OVERHEAD


def _element(element: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element of the command group."""
    return struct.pack("<HHL", COMMAND_GROUP, element, len(value)) + value


def _unsigned_short(value: int) -> bytes:
    return struct.pack("<H", value)


def encode_store_response(response: C_STORE) -> bytes | None:
    """The command set of a C-STORE-RSP, or None if it needs pynetdicom's encoder."""
    if response.OffendingElement is not None:
        return None
    status = response.Status
    message_id = response.MessageIDBeingRespondedTo
    if status is None or message_id is None:
        return None
    return encode_store_answer(
        sop_class_uid=_optional_text(response.AffectedSOPClassUID),
        sop_instance_uid=_optional_text(response.AffectedSOPInstanceUID),
        message_id=int(message_id),
        status=int(status),
        comment=_optional_text(response.ErrorComment),
    )


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def encode_store_answer(
    *,
    sop_class_uid: str | None,
    sop_instance_uid: str | None,
    message_id: int,
    status: int,
    comment: str | None,
) -> bytes | None:
    """The command set of a C-STORE-RSP with these values (an absent one is left out), or
    None where pynetdicom's encoder must decide (a value that is not ASCII or not a US)."""
    if not (0 <= status <= 0xFFFF and 0 <= message_id <= 0xFFFF):
        return None  # not a US value: pynetdicom's encoder decides what happens
    elements: list[bytes] = []
    if sop_class_uid is not None:
        sop_class = even_length_ascii(sop_class_uid, b"\x00")
        if sop_class is None:
            return None
        elements.append(_element(0x0002, sop_class))
    elements.append(_element(0x0100, _unsigned_short(C_STORE_RSP_COMMAND_FIELD)))
    elements.append(_element(0x0120, _unsigned_short(message_id)))
    elements.append(_element(0x0800, _unsigned_short(NO_DATA_SET)))
    elements.append(_element(0x0900, _unsigned_short(status)))
    if comment is not None:
        encoded_comment = even_length_ascii(comment, b" ")
        if encoded_comment is None:
            return None
        elements.append(_element(0x0902, encoded_comment))
    if sop_instance_uid is not None:
        sop_instance = even_length_ascii(sop_instance_uid, b"\x00")
        if sop_instance is None:
            return None
        elements.append(_element(0x1000, sop_instance))
    body = b"".join(elements)
    return _element(0x0000, struct.pack("<L", len(body))) + body


class DirectStoreAnswers(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, sending C-STORE responses encoded by this module.

    ``answer_stores_directly`` gives an association's provider this class (behaviour only, no
    state), because pynetdicom constructs it itself.
    """

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Send a C-STORE response as one P-DATA primitive; anything else as pynetdicom does."""
        command = self._direct_store_response(primitive)
        if command is None:
            super().send_msg(primitive, context_id)
            return
        data = P_DATA()
        data.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + command))
        self.dul.send_pdu(data)

    def _direct_store_response(self, primitive: Any) -> bytes | None:
        if not isinstance(primitive, C_STORE) or primitive.MessageIDBeingRespondedTo is None:
            return None
        if self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            return None  # someone listens for the encoded message: pynetdicom builds it
        command = encode_store_response(primitive)
        if command is None:
            return None
        if not fits_one_fragment(command, self.maximum_pdu_size):
            return None  # more than one fragment: pynetdicom splits it
        return command


def answer_stores_directly(provider: DIMSEServiceProvider) -> None:
    """Give one association's DIMSE provider the direct C-STORE response encoder."""
    provider.__class__ = DirectStoreAnswers
