"""HL7 v2 acknowledgements, shared by order intake (gateway) and ORU delivery (reporting).

An ACK answers the message it acknowledges in that message's terms (HL7 v2.5.1 section 2.9):
the same trigger event with structure ACK (ACK^O23^ACK for an OMI^O23), sending and receiving
applications and facilities swapped, the sender's version, its character set, and MSA-2 set to
its control id. It is written as plain ER7, so any 2.x version can be answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from radraft.hl7text import STANDARD, Delimiters, escape

HL7_VERSION = "2.5.1"
DEFAULT_APPLICATION = "RADRAFT"


class AckCode(StrEnum):
    """MSA-1 acknowledgment codes (HL7 table 0008)."""

    ACCEPT = "AA"
    """Original mode: accepted and stored."""
    ERROR = "AE"
    """Original mode: the content cannot be used; the reason is in MSA-3 / ERR."""
    REJECT = "AR"
    """Original mode: not ours (type, version, processing id) or not HL7."""
    COMMIT_ACCEPT = "CA"
    """Enhanced mode: the receiver committed the message to safe storage."""


def hl7_timestamp(moment: datetime) -> str:
    """An HL7 DTM value to the second; with its UTC offset when ``moment`` is aware."""
    text = moment.strftime("%Y%m%d%H%M%S")
    return text + moment.strftime("%z") if moment.tzinfo is not None else text


@dataclass(frozen=True)
class AcknowledgedMessage:
    """What an ACK needs from the message it answers (MSH fields, raw ER7 values)."""

    control_id: str = ""
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    trigger_event: str = ""
    version: str = HL7_VERSION
    character_set: str = ""
    delimiters: Delimiters = STANDARD

    @classmethod
    def from_message(cls, message: str) -> AcknowledgedMessage:
        """Read the MSH of a received message tolerantly (missing fields stay empty)."""
        if not message.startswith("MSH") or len(message) < 4:
            return cls()
        try:
            delimiters = Delimiters.of(message)
        except ValueError:
            return cls()  # answered with the standard delimiters and no echoed fields
        msh = message.replace("\n", "\r").split("\r", 1)[0].split(delimiters.field)

        def field(number: int) -> str:
            # msh[0] is "MSH" and msh[1] MSH-2, so MSH-n sits at index n - 1.
            return msh[number - 1] if len(msh) > number - 1 else ""

        type_parts = field(9).split(delimiters.component)
        version = field(12).split(delimiters.component)[0] or HL7_VERSION
        return cls(
            control_id=field(10),
            sending_application=field(3),
            sending_facility=field(4),
            receiving_application=field(5),
            receiving_facility=field(6),
            trigger_event=type_parts[1] if len(type_parts) > 1 else "",
            version=version,
            character_set=field(18).split(delimiters.repetition)[0],
            delimiters=delimiters,
        )


def build_ack(
    answered: AcknowledgedMessage,
    code: AckCode,
    *,
    text: str = "",
    sent_at: datetime,
    control_id: str,
) -> str:
    """A general ACK (MSH + MSA) answering ``answered``, in its delimiters and version."""
    d = answered.delimiters
    encoding = d.component + d.repetition + d.escape + d.subcomponent
    message_type = d.component.join(("ACK", answered.trigger_event, "ACK"))
    msh = [
        "MSH",
        encoding,
        answered.receiving_application or DEFAULT_APPLICATION,
        answered.receiving_facility,
        answered.sending_application,
        answered.sending_facility,
        hl7_timestamp(sent_at),
        "",
        message_type,
        control_id,
        "P",
        answered.version,
    ]
    if answered.character_set:
        msh += ["", "", "", "", "", answered.character_set]
    msa = ["MSA", code.value, answered.control_id]
    if text:
        msa.append(escape(text[:80], d))
    return d.field.join(msh) + "\r" + d.field.join(msa)


@dataclass(frozen=True)
class ReceivedAck:
    """MSA-1 and MSA-2 of an acknowledgement radraft received."""

    code: str
    acknowledged_control_id: str


def read_ack(ack: str) -> ReceivedAck:
    """MSA-1 and MSA-2 of an ACK, read tolerantly (any HL7 version); empty if there is no MSA."""
    field_separator = ack[3] if ack.startswith("MSH") and len(ack) > 3 else "|"
    for segment in ack.replace("\n", "\r").split("\r"):
        if segment.startswith("MSA"):
            fields = segment.split(field_separator)
            code = fields[1] if len(fields) > 1 else ""
            control = fields[2] if len(fields) > 2 else ""
            return ReceivedAck(code.strip(), control.strip())
    return ReceivedAck("", "")


def ack_code_of(ack: str) -> str:
    """MSA-1 of an ACK ('' if there is no MSA)."""
    return read_ack(ack).code
