"""DICOM upper layer PDUs as bytes, encoded by pynetdicom, for tests that send them by hand.

Tests of malformed, reordered or pipelined traffic need the bytes a real sender would send,
to change or send them as no sender would.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.dicom_peers import dataset_bytes


def association_request(
    calling_ae: str, abstract_syntax: str, transfer_syntax: str | None = None, *, max_pdu: int
) -> bytes:
    """An A-ASSOCIATE-RQ to RADRAFT proposing one presentation context, ID 1."""
    request = A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title = calling_ae
    request.called_ae_title = "RADRAFT"
    context = build_context(abstract_syntax, transfer_syntax)
    context.context_id = 1
    request.presentation_context_definition_list = [context]
    maximum_length = MaximumLengthNotification()
    maximum_length.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.2"
    request.user_information = [maximum_length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    return bytes(pdu.encode())


def message_pdus(message: DIMSEMessage, context_id: int, max_pdu: int) -> list[bytes]:
    """``message`` as P-DATA-TF PDUs of at most ``max_pdu`` bytes."""
    encoded = []
    for primitive in message.encode_msg(context_id, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        encoded.append(bytes(pdu.encode()))
    return encoded


def store_request_pdus(
    path: Path, context_id: int, max_pdu: int, *, message_id: int = 7
) -> list[bytes]:
    """The P-DATA-TF PDUs of a C-STORE request for ``path`` (command, then data set)."""
    dataset = dcmread(path, stop_before_pixels=True)
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = dataset.SOPClassUID
    request.AffectedSOPInstanceUID = dataset.SOPInstanceUID
    request.Priority = 2
    request.DataSet = BytesIO(dataset_bytes(path))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    return message_pdus(message, context_id, max_pdu)


def echo_request_pdus(context_id: int, max_pdu: int, *, message_id: int) -> list[bytes]:
    """The P-DATA-TF PDUs of a C-ECHO request."""
    echo = C_ECHO()
    echo.MessageID = message_id
    echo.AffectedSOPClassUID = Verification
    message = C_ECHO_RQ()
    message.primitive_to_message(echo)
    return message_pdus(message, context_id, max_pdu)
