"""A command set pynetdicom cannot decode aborts the association; no thread dies of it."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dsutils import encode

from gateway.service import Gateway
from tests.dicom_peers import dataset_bytes, echoscu, synthetic_study_files
from tests.support import assert_no_reception_left, wait_until

C_STORE_RQ = 0x0001
DATA_SET_PRESENT = 0x0000
LAST_COMMAND_FRAGMENT = 0x03
LAST_DATA_SET_FRAGMENT = 0x02


def store_command(sop_class: str, sop_instance: str, *, leave_out: str) -> Dataset:
    """A C-STORE-RQ command set with a data set to follow, without the element ``leave_out``
    (or with an unknown Command Field, for ``CommandField``)."""
    command = Dataset()
    command.AffectedSOPClassUID = sop_class
    command.CommandField = C_STORE_RQ
    command.MessageID = 1
    command.Priority = 0
    command.CommandDataSetType = DATA_SET_PRESENT
    command.AffectedSOPInstanceUID = sop_instance
    if leave_out == "CommandField":
        command.CommandField = 0x00C5
    else:
        delattr(command, leave_out)
    return command


def command_pdu(context_id: int, command: Dataset) -> bytes:
    """One P-DATA-TF PDU holding ``command`` as a single, last command fragment."""
    encoded = encode(command, True, True)
    assert encoded is not None
    return pdv_pdu(context_id, LAST_COMMAND_FRAGMENT, encoded)


def pdv_pdu(context_id: int, control: int, data: bytes) -> bytes:
    """One P-DATA-TF PDU of one fragment."""
    item = bytes([context_id, control]) + data
    return struct.pack(">BBLL", 0x04, 0, len(item) + 4, len(item)) + item


def open_association(path: Path, port: int) -> tuple[Association, int, socket.socket]:
    """An association from BADCMD for ``path``'s SOP class: it, the context ID, its socket."""
    dataset = dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title="BADCMD")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title="RADRAFT")
    assert association.is_established
    context_id = association.accepted_contexts[0].context_id
    assert context_id is not None
    connection = association.dul.socket.socket  # type: ignore[union-attr]
    assert connection is not None
    return association, context_id, connection


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    "leave_out", ["AffectedSOPInstanceUID", "CommandDataSetType", "CommandField"]
)
def test_a_command_set_that_cannot_be_decoded_aborts_the_association(
    leave_out: str,
    running_gateway: Gateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pynetdicom raised inside its state machine, which stopped the connection's thread
    without a word to the peer (and, without the Instance UID, after creating the reception
    file): now the peer gets an A-ABORT, and nothing is left in ``incoming``."""
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: died.append(hook.exc_type.__name__))
    path = synthetic_study_files(5, tmp_path, size=64)[0]
    association, context_id, connection = open_association(path, running_gateway.port)
    dataset = dcmread(path, stop_before_pixels=True)
    command = store_command(dataset.SOPClassUID, dataset.SOPInstanceUID, leave_out=leave_out)
    with caplog.at_level(logging.WARNING, logger="gateway.dimse_decoding"):
        connection.sendall(command_pdu(context_id, command))
        wait_until(lambda: not association.is_established, timeout=30,
                   what="the gateway to end the association")  # fmt: skip
    assert association.is_aborted, "the peer is told with an A-ABORT"
    assert died == [], f"threads died: {died}"
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.dimse_decoding"] == [
        f"gateway.invalid_dimse_message calling_ae=BADCMD error="
        f"{'KeyError' if leave_out == 'CommandField' else 'AttributeError'}"
    ]
    assert_no_reception_left(running_gateway.spool.incoming, abandoned=True)
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_store_request_without_a_message_id_is_aborted_once_its_data_set_is_in(
    running_gateway: Gateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A C-STORE-RQ without a Message ID cannot be answered. pynetdicom, which the direct
    path hands it to, dropped it ("unexpected C-STORE service message") and its file stayed
    in ``incoming``; now the peer gets an A-ABORT and the file goes."""
    path = synthetic_study_files(6, tmp_path, size=64)[0]
    association, context_id, connection = open_association(path, running_gateway.port)
    dataset = dcmread(path, stop_before_pixels=True)
    command = store_command(dataset.SOPClassUID, dataset.SOPInstanceUID, leave_out="MessageID")
    with caplog.at_level(logging.WARNING, logger="gateway.dimse_decoding"):
        connection.sendall(command_pdu(context_id, command))
        connection.sendall(pdv_pdu(context_id, LAST_DATA_SET_FRAGMENT, dataset_bytes(path)))
        wait_until(lambda: not association.is_established, timeout=30,
                   what="the gateway to end the association")  # fmt: skip
    assert association.is_aborted, "the peer is told with an A-ABORT"
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.dimse_decoding"] == [
        "gateway.invalid_dimse_message calling_ae=BADCMD error=IncompleteRequest"
    ]
    assert_no_reception_left(running_gateway.spool.incoming, abandoned=True)
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"
