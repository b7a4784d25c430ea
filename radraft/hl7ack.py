"""HL7 v2 acknowledgements, shared by order intake (gateway) and ORU delivery (reporting)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from hl7apy.core import Message

HL7_VERSION = "2.5.1"


class AckCode(StrEnum):
    """MSA-1 acknowledgment codes (HL7 table 0008)."""

    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"


def hl7_timestamp(moment: datetime) -> str:
    """An HL7 DTM value to the second."""
    return moment.strftime("%Y%m%d%H%M%S")


def build_ack(
    received_control_id: str, code: AckCode, *, text: str = "", sent_at: datetime, control_id: str
) -> str:
    """A general ACK (MSH + MSA) answering a received message."""
    message = Message("ACK", version=HL7_VERSION)
    message.msh.msh_3 = "RADRAFT"
    message.msh.msh_7 = hl7_timestamp(sent_at)
    message.msh.msh_9 = "ACK^O01^ACK"
    message.msh.msh_10 = control_id
    message.msh.msh_11 = "P"
    message.msa.msa_1 = code.value
    message.msa.msa_2 = received_control_id
    if text:
        message.msa.msa_3 = text[:80]
    return str(message.to_er7())


def ack_code_of(ack: str) -> str:
    """MSA-1 of an ACK, read tolerantly (any HL7 version); empty if there is no MSA."""
    for segment in ack.replace("\n", "\r").split("\r"):
        if segment.startswith("MSA"):
            fields = segment.split(segment[3] if len(segment) > 3 else "|")
            return fields[1] if len(fields) > 1 else ""
    return ""
