"""C-STORE responses encoded by the gateway: pynetdicom's bytes, and pynetdicom's path otherwise."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

import gateway.pdata as pdata
from gateway.answers import answer_stores_directly, encode_store_response
from gateway.intake import InstanceIntake, ReceivedInstance, StoreOutcome
from gateway.service import Gateway
from tests.dicom_peers import synthetic_study_files
from tests.support import recorded_results

CONTEXT = 5


def store_response(
    sop_class: str | None, sop_instance: str | None, status: int, comment: str | None
) -> C_STORE:
    response = C_STORE()
    response.MessageID = response.MessageIDBeingRespondedTo = 65535
    response.AffectedSOPClassUID = sop_class
    response.AffectedSOPInstanceUID = sop_instance
    response.Status = status
    if comment is not None:
        response.ErrorComment = comment  # type: ignore[assignment]
    return response


def pynetdicom_pdvs(response: C_STORE, max_pdu: int) -> list[Any]:
    """The presentation data values pynetdicom's own encoder sends for ``response``."""
    message = C_STORE_RSP()
    message.primitive_to_message(response)
    return [list(p.presentation_data_value_list) for p in message.encode_msg(CONTEXT, max_pdu)]


RESPONSES = list(
    itertools.product(
        # SOP Class and Instance UIDs: odd length (NUL-padded), even length, absent.
        ["1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.12.1", None],
        ["1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.12", None],
        [
            (0x0000, None),
            (0xA700, "database: OperationalError"),  # even length
            (0x0111, "SOP Instance UID known with other Patient ID"),  # even length
            (0xA700, "disk full"),  # odd length: space-padded
            (0xC000, ""),
            (0xA900, "x" * 64),
        ],
    )
)


@pytest.mark.parametrize(("sop_class", "sop_instance", "outcome"), RESPONSES)
def test_the_command_set_is_pynetdicoms_byte_for_byte(
    sop_class: str | None, sop_instance: str | None, outcome: tuple[int, str | None]
) -> None:
    response = store_response(sop_class, sop_instance, *outcome)
    command = encode_store_response(response)
    assert command is not None
    assert pynetdicom_pdvs(response, 16384) == [[(CONTEXT, b"\x03" + command)]]


def test_what_it_does_not_encode_is_left_to_pynetdicom() -> None:
    offending = store_response("1.2.3", "1.2.4", 0xA900, "bad")
    offending.OffendingElement = [0x00100020]  # type: ignore[assignment]
    assert encode_store_response(offending) is None
    assert encode_store_response(store_response("1.2.3", "1.2.4", 0xA900, "Größe")) is None
    assert encode_store_response(store_response("1.2.3", "1.2.4", 0x10000, None)) is None
    no_status = C_STORE()
    no_status.MessageIDBeingRespondedTo = 1
    assert encode_store_response(no_status) is None


class FakeAssociation(SimpleNamespace):
    """What DIMSEServiceProvider.send_msg consults of its association."""

    def __init__(self, max_pdu: int, handlers: list[Any]) -> None:
        sent: list[Any] = []
        super().__init__(
            is_requestor=False,
            requestor=SimpleNamespace(maximum_length=max_pdu),
            dul=SimpleNamespace(send_pdu=sent.append),
            sent=sent,
        )
        self._handlers = handlers

    def get_handlers(self, _event: Any) -> list[Any]:
        return self._handlers


def sent_pdvs(provider: DIMSEServiceProvider, response: C_STORE) -> list[Any]:
    provider.send_msg(response, CONTEXT)
    association: FakeAssociation = provider.assoc  # type: ignore[assignment]
    return [list(p.presentation_data_value_list) for p in association.sent]


@pytest.mark.parametrize("max_pdu", [0, 16384, 64])
def test_the_provider_sends_what_pynetdicoms_would(max_pdu: int) -> None:
    """One fragment within the peer's limit (0: none); a 64-byte limit needs pynetdicom's
    fragments, and gets them."""
    response = store_response("1.2.840.10008.5.1.4.1.1.1.1", "1.2.3.4", 0xA700, "disk full")
    direct = DIMSEServiceProvider(FakeAssociation(max_pdu, []))  # type: ignore[arg-type]
    answer_stores_directly(direct)
    assert sent_pdvs(direct, response) == pynetdicom_pdvs(response, max_pdu)
    if max_pdu == 64:
        assert len(pynetdicom_pdvs(response, max_pdu)) > 1


def test_a_handler_bound_to_dimse_sent_gets_pynetdicoms_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    triggered: list[Any] = []
    monkeypatch.setattr(
        "pynetdicom.dimse.evt.trigger", lambda _assoc, event, attrs: triggered.append(event)
    )
    response = store_response("1.2.3", "1.2.4", 0x0000, None)
    direct = DIMSEServiceProvider(FakeAssociation(16384, [object()]))  # type: ignore[arg-type]
    answer_stores_directly(direct)
    assert sent_pdvs(direct, response) == pynetdicom_pdvs(response, 16384)
    assert triggered == [evt.EVT_DIMSE_SENT]


def store_then_conflict(port: int, path: Path, *, max_pdu: int = 16382) -> tuple[Any, Any]:
    """A pynetdicom sender stores ``path``, then the same instance with another patient: the
    two answers it read."""
    image, other_patient = dcmread(path), dcmread(path)
    other_patient.PatientID = "SOMEONE-ELSE"
    ae = AE(ae_title="ANSWERS")
    ae.maximum_pdu_size = max_pdu
    ae.add_requested_context(image.SOPClassUID, image.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title="RADRAFT")
    assert association.is_established
    stored = association.send_c_store(image)
    refused = association.send_c_store(other_patient)
    association.release()
    assert stored.Status == 0x0000
    assert refused.Status == 0x0111
    assert refused.ErrorComment == "SOP Instance UID known with other Patient ID"
    return stored, refused


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_sender_reads_the_gateways_answers(
    running_gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A success and a refusal with its comment, both stored and answered on the connection's
    own thread (``gateway/pdata.py``) and encoded by the gateway, read by pynetdicom as a
    sender."""
    encoded = recorded_results(monkeypatch, pdata, "encode_store_answer")
    path = synthetic_study_files(41, tmp_path, size=256)[0]
    stored, _ = store_then_conflict(running_gateway.port, path)
    assert "ErrorComment" not in stored
    assert len(encoded) == 2
    assert None not in encoded, "pynetdicom's encoder answered"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_peer_whose_pdus_are_too_short_for_the_answer_still_reads_it(
    running_gateway: Gateway, tmp_path: Path
) -> None:
    """A sender announcing a 64-byte maximum PDU: the answer needs several fragments, so it
    goes through pynetdicom's encoder and fragmenting, and still says what happened."""
    path = synthetic_study_files(42, tmp_path, size=64)[0]
    store_then_conflict(running_gateway.port, path, max_pdu=64)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_intake_that_raises_is_answered_c211_and_the_association_goes_on(
    running_gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As pynetdicom answers an exception in its C-STORE handler: 0xC211, nothing kept, and the
    next C-STORE on the same association is stored."""
    first, second = synthetic_study_files(43, tmp_path, size=64)
    accept = InstanceIntake.accept
    calls: list[Path] = []

    def failing_once(self: InstanceIntake, received: ReceivedInstance) -> StoreOutcome:
        calls.append(received.path)
        if len(calls) == 1:
            raise RuntimeError("a bug in the intake")
        return accept(self, received)

    monkeypatch.setattr(InstanceIntake, "accept", failing_once)
    ae = AE(ae_title="ANSWERS")
    image = dcmread(first)
    ae.add_requested_context(image.SOPClassUID, image.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", running_gateway.port, ae_title="RADRAFT")
    assert association.is_established
    failed = association.send_c_store(image)
    stored = association.send_c_store(dcmread(second))
    association.release()
    assert failed.Status == 0xC211
    assert stored.Status == 0x0000
    assert not calls[0].exists(), "the reception the intake never took is removed"
