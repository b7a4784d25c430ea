"""A study moved to another patient at the PACS is moved here too, and its report follows it.

The draft and the signed report reached the PACS (dcmtk's storescp) and the RIS (an MLLP peer)
under the first patient; an amendment waits in the outbox. The PACS corrects the study and a
real storescu sends it again with the same UIDs under another patient (another Patient ID,
name and birth date, in another character set): refused, the study disputed. The
administrator checks with the PACS and runs the real ``radraft study correct-patient``: the
PACS gets an IOCM rejection note for the SRs it filed under the first patient, the RIS a W
result under the first patient and order, then both get the newest revision again under the
corrected patient (a new SR instance); the amendment built for the first patient never leaves;
the spooled files carry the new patient, so DICOMweb serves them under it and a re-send of the
corrected study lands on the same files.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.patient_files import correct_study_patient
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import OutboxStatus, ReportState, Role
from radraft.errors import ConflictError
from radraft.identity_dispute import HELD_REASON
from radraft.models import AuditEntry, Instance, ReportRevision, Study, User
from radraft.patient_correction import CORRECTED_ACTION, SUPERSEDED_NOTE, correct_patient
from radraft.settings import Settings
from radraft.withdrawal import withdraw_study
from radraft_cli.web_app import web_app
from reporting.delivery.relay import OutputDeliveryRelay
from reporting.users import create_user
from tests.conftest import ReportDestinations
from tests.dicom_peers import store_statuses, storescu, synthetic_study_files
from tests.processes import radraft_command
from tests.reporting.factories import add_revision
from tests.reporting.test_delivery import SteppingClock, output_rows
from tests.reporting.web_support import PASSWORD, login
from tests.support import wait_until

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])

KOS = "1.2.840.10008.5.1.4.1.1.88.59"
NEW_PATIENT = {"PatientID": "CORRECTED-7", "PatientName": "Müller^Jürgen",
               "PatientBirthDate": "19610203"}  # fmt: skip


def send_as_corrected(port: int, folder: Path) -> set[int]:
    """The received study (synthetic study 90) sent again by storescu with the same UIDs under
    ``NEW_PATIENT`` in ISO_IR 100, as a PACS does after moving it; the statuses it got."""
    again = synthetic_study_files(90, folder)
    for path in again:
        corrected = dcmread(path)
        corrected.SpecificCharacterSet = "ISO_IR 100"
        for keyword, value in NEW_PATIENT.items():
            setattr(corrected, keyword, value)
        corrected.save_as(path)
    return set(store_statuses(storescu(again, port=port, debug=True, halt=False).output))


def _deliver_all(relay: OutputDeliveryRelay, factory: sessionmaker[Session]) -> None:
    wait_until(lambda: relay.run_once() == 0 and all(
        row.status == OutboxStatus.DONE for row in output_rows(factory)
    ), timeout=120, what="every output settled")  # fmt: skip


def _sign(session: Session, study: Study) -> None:
    """The attending's signed revision (its SR and ORU queued)."""
    attending = create_user(session, "attending", role=Role.ATTENDING, password=PASSWORD,
                            full_name="Ada Attending")  # fmt: skip
    add_revision(session, study, ReportState.FINAL, author=attending,
                 findings="Signed findings.", impression="Signed impression.")  # fmt: skip


def _correct(factory: sessionmaker[Session], gateway: Gateway, study: Study) -> None:
    """The correction to ``NEW_PATIENT``, as the CLI runs it, in this process."""
    correct_study_patient(factory, gateway.spool, study.study_instance_uid,
                          patient_id=NEW_PATIENT["PatientID"], actor="test",
                          now=datetime.now(UTC))  # fmt: skip


def _spooled(factory: sessionmaker[Session], settings: Settings) -> list[Path]:
    with session_scope(factory) as session:
        return [settings.spool_dir / path for path in session.scalars(select(Instance.spool_path))]


def _texts(dataset: Dataset) -> list[str]:
    """Every Text Value in an SR's content tree."""
    found = []
    for item in dataset.get("ContentSequence", []):
        if "TextValue" in item:
            found.append(str(item.TextValue))
        found += _texts(item)
    return found


def test_a_study_corrected_at_the_pacs_is_moved_here_and_its_report_sent_again_under_the_patient(
    received_study: Study,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    app_client: TestClient,
    report_destinations: ReportDestinations,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(
        update={**report_destinations.settings_update(), "delivery_timeout_seconds": 3}
    )
    ris, uid = report_destinations.ris, received_study.study_instance_uid
    relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        first_patient = study.patient_id
        add_revision(session, study, ReportState.DRAFTED, model=True,
                     findings="Draft findings.", impression="Draft.")  # fmt: skip
        _sign(session, study)
    _deliver_all(relay, session_factory)
    signed_oru = ris.messages[-1]
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        attending = session.scalars(select(User).where(User.username == "attending")).one()
        add_revision(session, study, ReportState.AMENDED, author=attending,
                     findings="Amended findings.", impression="Amended impression.")  # fmt: skip
        stored_sr_uids = set(
            session.scalars(
                select(ReportRevision.sr_sop_instance_uid).where(
                    ReportRevision.sr_sop_instance_uid.is_not(None)
                )
            )
        )
    assert len(stored_sr_uids) == 2
    old_files = _spooled(session_factory, settings)

    assert send_as_corrected(running_gateway.port, tmp_path / "again") == {0x0111}
    relay.run_once()
    held = [row.last_error for row in output_rows(session_factory)[4:]]
    assert held == [HELD_REASON, HELD_REASON], "the amendment is held by the dispute"

    wrong = radraft_command(settings, "study", "correct-patient", uid, "--patient-id",
                            "SOMEONE-ELSE", "--by", "pacs-admin")  # fmt: skip
    assert wrong.returncode != 0
    assert "another Patient ID" in wrong.stderr + wrong.stdout
    corrected = radraft_command(settings, "study", "correct-patient", uid, "--patient-id",
                                NEW_PATIENT["PatientID"], "--by", "pacs-admin")  # fmt: skip
    assert corrected.returncode == 0, corrected.stderr
    assert "2 undelivered output(s) will not be sent" in corrected.stdout
    assert "oru-withdrawal, sr-rejection" in corrected.stdout
    assert "revision 3 queued again" in corrected.stdout
    _deliver_all(relay, session_factory)

    rows = output_rows(session_factory)
    assert [row.last_error for row in rows[4:6]] == [SUPERSEDED_NOTE] * 2, (
        "the amendment built for the first patient never leaves, and says why"
    )
    withdrawals, reissued = rows[6:8], rows[8:]
    assert [row.payload["output"] for row in withdrawals] == ["oru-withdrawal", "sr-rejection"]
    assert [row.payload["output"] for row in reissued] == ["sr", "oru"]
    assert [row.last_error for row in rows[6:]] == [None] * 4, "all four delivered"

    stored = {path: dcmread(path) for path in report_destinations.stored_srs()}
    assert len(stored) == 4, "two SRs, one rejection note, the amendment under the new patient"
    (note,) = [ds for ds in stored.values() if ds.SOPClassUID == KOS]
    assert note.PatientID == first_patient, "rejected where the SRs were filed"
    rejected = {
        item.ReferencedSOPInstanceUID
        for series in note.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert rejected == stored_sr_uids
    (new_sr,) = [
        ds for ds in stored.values()
        if ds.SOPClassUID != KOS and ds.SOPInstanceUID not in stored_sr_uids
    ]  # fmt: skip
    assert (new_sr.PatientID, str(new_sr.PatientName), new_sr.PatientBirthDate) == (
        NEW_PATIENT["PatientID"], NEW_PATIENT["PatientName"], NEW_PATIENT["PatientBirthDate"],
    )  # fmt: skip
    assert "Amended impression." in _texts(new_sr)
    assert new_sr.StudyInstanceUID == uid

    assert len(ris.messages) == 4, "draft, signed, the withdrawal, the amendment again"
    withdrawal, again = ris.messages[2], ris.messages[3]
    assert str(withdrawal.segment("OBR")[25]) == "W"
    for segment, field in (("PID", 3), ("PID", 5), ("OBR", 2), ("OBR", 3), ("OBR", 18)):
        assert str(withdrawal.segment(segment)[field]) == str(signed_oru.segment(segment)[field])
    assert str(again.segment("PID")[3]).split("^")[0] == NEW_PATIENT["PatientID"]
    assert str(again.segment("PID")[5]) == NEW_PATIENT["PatientName"]
    assert str(again.segment("PID")[7]) == NEW_PATIENT["PatientBirthDate"]
    assert str(again.segment("OBR")[25]) != "W"
    assert "Amended impression." in str(again)

    new_files = _spooled(session_factory, settings)
    assert not any(path.exists() for path in old_files), "the old patient's files are gone"
    for path in new_files:
        header = dcmread(path, stop_before_pixels=True)
        assert (header.PatientID, str(header.PatientName)) == (
            NEW_PATIENT["PatientID"], NEW_PATIENT["PatientName"],
        )  # fmt: skip
        assert header.StudyInstanceUID == uid
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        assert (study.patient_id, study.patient_name, study.patient_birth_date) == (
            NEW_PATIENT["PatientID"], NEW_PATIENT["PatientName"], NEW_PATIENT["PatientBirthDate"],
        )  # fmt: skip
        assert (study.identity_disputed_at, study.claimed_patient) == (None, None)
        assert study.patient_corrections == 1
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == CORRECTED_ACTION))
        assert (entry.actor, entry.object_id) == ("cli:pacs-admin", str(received_study.id))
        assert entry.details is not None
        assert {"patient_id", "patient_name", "patient_birth_date"} <= set(entry.details["moved"])
        assert NEW_PATIENT["PatientID"] not in str(entry.details), "names, never values"

    assert send_as_corrected(running_gateway.port, tmp_path / "thrice") == {0x0000}, (
        "the corrected study sent again is the same study now"
    )
    assert _spooled(session_factory, settings) == new_files, "and lands on the same files"
    assert sorted(p for p in settings.spool_dir.rglob("*.dcm")) == sorted(new_files)

    login(app_client, "attending")
    shown = app_client.get(f"/api/studies/{uid}").json()
    assert (shown["patient_corrections"], shown["identity_disputed_at"]) == (1, None)
    case_page = app_client.get(f"/cases/{uid}").text
    assert "Patient corrected" in case_page
    assert "Patient identity disputed" not in case_page
    assert app_client.get("/api/worklist", params={"status": "disputed"}).json() == []
    with TestClient(web_app(settings)) as web:  # the web app as served, DICOMweb included
        service = {"Authorization": f"Bearer {settings.api_token}"}
        assert web.get("/dicomweb/studies", params={"PatientID": first_patient},
                       headers=service).json() == []  # fmt: skip
        (found,) = web.get("/dicomweb/studies", params={"PatientID": NEW_PATIENT["PatientID"]},
                           headers=service).json()  # fmt: skip
        assert found["0020000D"]["Value"] == [uid]
        metadata = web.get(f"/dicomweb/studies/{uid}/metadata", headers=service).json()
        assert {item["00100010"]["Value"][0]["Alphabetic"] for item in metadata} == {
            NEW_PATIENT["PatientName"]
        }, "a viewer shows the corrected patient over the images"

    twice = radraft_command(settings, "study", "correct-patient", uid, "--patient-id",
                            NEW_PATIENT["PatientID"], "--by", "someone")  # fmt: skip
    assert twice.returncode != 0
    assert "not disputed" in twice.stderr + twice.stdout


def test_a_correction_needs_a_dispute_with_a_claim_and_not_a_withdrawn_study(
    received_study: Study, session_factory: sessionmaker[Session]
) -> None:
    uid, now = received_study.study_instance_uid, datetime.now(UTC)
    with session_scope(session_factory) as session, pytest.raises(ConflictError, match="not dis"):
        correct_patient(session, uid, patient_id="X", actor="test", now=now)
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        study.identity_disputed_at = now  # as a study disputed before claims were kept
    with session_scope(session_factory) as session, pytest.raises(ConflictError, match="no pat"):
        correct_patient(session, uid, patient_id="X", actor="test", now=now)
    with session_scope(session_factory) as session:
        withdraw_study(session, uid, actor="test", now=now)
    with session_scope(session_factory) as session, pytest.raises(ConflictError, match="withdr"):
        correct_patient(session, uid, patient_id="X", actor="test", now=now)


def test_outputs_claimed_or_waiting_at_the_correction_never_leave_under_either_patient(
    received_study: Study,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    report_destinations: ReportDestinations,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(update=report_destinations.settings_update())
    ris = report_destinations.ris
    relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        add_revision(session, study, ReportState.DRAFTED, model=True,
                     findings="Draft findings.", impression="Draft.")  # fmt: skip
    _deliver_all(relay, session_factory)
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        _sign(session, study)
    claimed = relay._claim()  # a relay about to send the signed report as the correction comes
    assert len(claimed) == 2
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        attending = session.scalars(select(User).where(User.username == "attending")).one()
        assert study is not None
        add_revision(session, study, ReportState.AMENDED, author=attending,
                     findings="Amended findings.", impression="Amended.")  # fmt: skip
    assert send_as_corrected(running_gateway.port, tmp_path / "again") == {0x0111}
    _correct(session_factory, running_gateway, received_study)
    for row_id in claimed:
        assert not relay._deliver(row_id), "claimed before the correction: not sent"
    _deliver_all(relay, session_factory)

    rows = output_rows(session_factory)
    assert [row.last_error for row in rows[2:6]] == [SUPERSEDED_NOTE] * 4
    assert [row.payload["output"] for row in rows[6:]] == ["oru-withdrawal", "sr-rejection",
                                                           "sr", "oru"]  # fmt: skip
    assert len(ris.messages) == 3, "the draft, its withdrawal, the amendment for the new patient"
    draft, withdrawal, again = ris.messages
    assert str(withdrawal.segment("PID")[3]) == str(draft.segment("PID")[3])
    assert "Draft." in str(withdrawal), "the newest result the RIS had is the one withdrawn"
    assert str(again.segment("PID")[3]).split("^")[0] == NEW_PATIENT["PatientID"]
    assert "Amended." in str(again)
    signed_under_anyone = [
        path for path in report_destinations.stored_srs()
        if "Signed impression." in _texts(dcmread(path))
    ]  # fmt: skip
    assert signed_under_anyone == [], "the signed revision was superseded before it left"


def test_the_sr_sent_again_for_the_corrected_patient_is_a_new_instance(
    received_study: Study,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    report_destinations: ReportDestinations,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(update=report_destinations.settings_update())
    relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        _sign(session, study)
    _deliver_all(relay, session_factory)
    (first,) = [dcmread(path) for path in report_destinations.stored_srs()]
    assert send_as_corrected(running_gateway.port, tmp_path / "again") == {0x0111}
    _correct(session_factory, running_gateway, received_study)
    _deliver_all(relay, session_factory)

    srs = [dcmread(path) for path in report_destinations.stored_srs()]
    (again,) = [ds for ds in srs if ds.SOPClassUID != KOS and ds.PatientID != first.PatientID]
    assert again.SOPInstanceUID != first.SOPInstanceUID, (
        "a new instance: the PACS was just told to reject the first one"
    )
    assert again.SeriesInstanceUID == first.SeriesInstanceUID, "radraft's one SR series"
    with session_scope(session_factory) as session:
        (stored,) = session.scalars(select(ReportRevision.sr_sop_instance_uid))
        assert stored == again.SOPInstanceUID, "the revision names the SR the PACS now holds"


def test_a_correction_whose_files_cannot_be_rewritten_changes_nothing(
    received_study: Study,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    first, second = _spooled(session_factory, settings)
    assert send_as_corrected(running_gateway.port, tmp_path / "again") == {0x0111}
    second.write_bytes(b"not DICOM any more")  # a damaged second file: the first rewrites fine
    spool_before = sorted(settings.spool_dir.rglob("*.dcm"))

    refused = radraft_command(settings, "study", "correct-patient",
                              received_study.study_instance_uid, "--patient-id",
                              NEW_PATIENT["PatientID"], "--by", "admin")  # fmt: skip
    assert refused.returncode != 0
    assert "cannot be rewritten" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
    assert sorted(settings.spool_dir.rglob("*.dcm")) == spool_before, "no new file left behind"
    assert dcmread(first).PatientID != NEW_PATIENT["PatientID"], "the first file untouched"
    assert list((settings.data_dir / "incoming").glob("correction-*")) == []
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        assert study.identity_disputed_at is not None, "still disputed: nothing was corrected"
        assert study.claimed_patient is not None
        assert (study.patient_corrections, study.corrected_through_outbox_id) == (0, None)
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == CORRECTED_ACTION))
        assert audit.all() == []
    assert _spooled(session_factory, settings) == [first, second]
