"""A study whose copy here is another patient's: its delivered reports are taken back.

The identity dispute holds what has not left radraft yet; these reports had left. The draft and
the signed report reached the PACS (dcmtk's storescp) and the RIS (an MLLP peer) before the
sender contradicted the study's Patient ID (a real storescu sends it again under another one).
The administrator checks with the PACS, finds radraft's copy wrong, and runs the real
``radraft study withdraw``: the PACS gets an IOCM rejection note naming exactly the SRs it
stored, the RIS a W result under the patient and order it filed the result under, an amendment
still waiting in the outbox is never sent, and the report is closed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import JobStatus, OutboxStatus, ReportState, Role
from radraft.models import AuditEntry, DraftingJob, Order, ReportRevision, Study, User
from radraft.settings import MllpDestination, Settings
from radraft.timeutil import utcnow
from radraft.withdrawal import ORU_WITHDRAWAL, WITHDRAWN_ACTION, WITHDRAWN_NOTE, withdraw_study
from radraft_cli.web_app import web_app
from reporting.delivery.relay import OutputDeliveryRelay, retry_failed
from reporting.delivery.withdrawals import NO_ORU_DELIVERED, NO_SR_STORED
from reporting.users import create_user
from tests.conftest import ReportDestinations
from tests.hl7_peer import RisPeer
from tests.processes import radraft_command
from tests.reporting.factories import add_revision, queued_job
from tests.reporting.test_boundary_outputs import dciodvfy_errors
from tests.reporting.test_delivery import SteppingClock, output_rows
from tests.reporting.test_identity_dispute import send_again_under_another_patient
from tests.reporting.web_support import PASSWORD, edit, login
from tests.support import free_port, wait_until
from worker.drafting import WITHDRAWN_STUDY, DraftOutcome, store_draft, take_job
from worker.runtimes.base import ModelInfo

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])

KOS = "1.2.840.10008.5.1.4.1.1.88.59"


def _deliver_all(relay: OutputDeliveryRelay, factory: sessionmaker[Session]) -> None:
    wait_until(lambda: relay.run_once() == 0 and all(
        row.status == OutboxStatus.DONE for row in output_rows(factory)
    ), timeout=120, what="every output settled")  # fmt: skip


def test_a_study_found_to_be_another_patients_is_withdrawn_from_the_pacs_and_the_ris(
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
        draft = add_revision(session, study, ReportState.DRAFTED, model=True,
                             findings="Draft findings.", impression="Draft.")  # fmt: skip
        report_id = draft.report_id
        attending = create_user(session, "attending", role=Role.ATTENDING, password=PASSWORD,
                                full_name="Ada Attending")  # fmt: skip
        add_revision(session, study, ReportState.FINAL, author=attending,
                     findings="Signed findings.", impression="Signed impression.")  # fmt: skip
    _deliver_all(relay, session_factory)
    assert len(report_destinations.stored_srs()) == 2
    assert len(ris.messages) == 2
    signed_oru = ris.messages[-1]
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        attending = session.scalars(select(User).where(User.username == "attending")).one()
        add_revision(session, study, ReportState.AMENDED, author=attending,
                     findings="Amended findings.", impression="Amended.")  # fmt: skip
        stored_sr_uids = set(
            session.scalars(
                select(ReportRevision.sr_sop_instance_uid).where(
                    ReportRevision.sr_sop_instance_uid.is_not(None)
                )
            )
        )
    assert len(stored_sr_uids) == 2

    statuses = send_again_under_another_patient(running_gateway.port, tmp_path / "again")
    assert statuses == {0x0111}

    withdrawn = radraft_command(settings, "study", "withdraw", uid, "--by", "pacs-admin")
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert "2 undelivered output(s) will not be sent" in withdrawn.stdout
    assert "oru-withdrawal, sr-rejection" in withdrawn.stdout
    _deliver_all(relay, session_factory)

    rows = output_rows(session_factory)
    assert [row.last_error for row in rows[4:6]] == [WITHDRAWN_NOTE] * 2, (
        "the amendment waiting in the outbox never leaves, and says why"
    )
    assert [row.last_error for row in rows[6:]] == [None, None], "both withdrawals delivered"
    stored = report_destinations.stored_srs()
    assert len(stored) == 3, "no amended SR; one rejection note"
    (note_path,) = [path for path in stored if dcmread(path).SOPClassUID == KOS]
    assert dciodvfy_errors(note_path) == []
    note = dcmread(note_path)
    title = note.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("113037", "DCM")
    assert (note.PatientID, note.StudyInstanceUID) == (first_patient, uid), (
        "the note is filed where the SRs are: under the patient they were sent for"
    )
    (evidence,) = note.CurrentRequestedProcedureEvidenceSequence
    rejected = {
        item.ReferencedSOPInstanceUID
        for series in evidence.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert rejected == stored_sr_uids

    assert len(ris.messages) == 3, "no amended ORU; one withdrawal"
    withdrawal = ris.messages[-1]
    assert str(withdrawal.segment("OBR")[25]) == "W"
    assert {str(obx[11]) for obx in withdrawal.segments("OBX")} == {"W"}
    for segment, field in (("PID", 3), ("OBR", 2), ("OBR", 3), ("OBR", 18)):
        assert str(withdrawal.segment(segment)[field]) == str(signed_oru.segment(segment)[field])
    assert str(withdrawal.segment("PID")[3]).split("^")[0] == first_patient
    assert "Signed impression." in str(withdrawal), "the result the RIS filed, posted as wrong"

    csrf = login(app_client, "attending")
    version = app_client.get(f"/api/reports/{report_id}").json()["version"]
    refused = app_client.post(
        f"/api/reports/{report_id}/amend", json=edit(version, "Again."), headers=csrf
    )
    assert refused.status_code == 409
    assert "withdrawn" in refused.text
    assert "Withdrawn: an administrator" in app_client.get(f"/cases/{uid}").text
    (row,) = app_client.get("/api/worklist").json()
    assert (row["withdrawn"], row["worklist_status"]) == (True, "withdrawn")
    assert app_client.get("/api/worklist", params={"status": "final"}).json() == [], (
        "not among the studies to report or reported"
    )
    assert len(app_client.get("/api/worklist", params={"status": "withdrawn"}).json()) == 1
    assert app_client.get("/api/worklist", params={"status": "disputed"}).json() == [], "decided"
    assert app_client.get(f"/api/studies/{uid}").json()["withdrawn_at"] is not None
    metrics = app_client.get(
        "/metrics", headers={"Authorization": f"Bearer {settings.api_token}"}
    ).text
    assert "\nradraft_studies_withdrawn 1\n" in metrics
    with TestClient(web_app(settings)) as web:  # the web app as served, DICOMweb included
        service = {"Authorization": f"Bearer {settings.api_token}"}
        found = web.get("/dicomweb/studies", params={"PatientID": first_patient}, headers=service)
        assert found.status_code == 200, found.text
        assert found.json() == [], "hidden from QIDO-RS"
        assert web.get(f"/dicomweb/studies/{uid}/metadata", headers=service).status_code == 404
    assert "\nradraft_studies_identity_disputed 0\n" in metrics, "decided: no longer alerting"

    confirmed = radraft_command(settings, "study", "confirm-identity", uid, "--by", "someone")
    assert confirmed.returncode != 0
    assert "withdrawn" in confirmed.stderr + confirmed.stdout
    twice = radraft_command(settings, "study", "withdraw", uid, "--by", "someone")
    assert twice.returncode != 0
    assert "already withdrawn" in twice.stderr + twice.stdout
    with session_scope(session_factory) as session:
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == WITHDRAWN_ACTION))
        assert (entry.actor, entry.object_id) == ("cli:pacs-admin", str(received_study.id))
        assert entry.details is not None
        assert entry.details["identity_disputed"] is True


def test_a_study_withdrawn_before_anything_left_sends_nothing_and_leaves_nothing_pending(
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
    report_destinations: ReportDestinations,
) -> None:
    settings = settings.model_copy(update=report_destinations.settings_update())
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        add_revision(session, study, ReportState.DRAFTED, model=True,
                     findings="Draft findings.", impression="Draft.")  # fmt: skip

    withdrawn = radraft_command(
        settings, "study", "withdraw", received_study.study_instance_uid, "--by", "admin"
    )
    assert withdrawn.returncode == 0, withdrawn.stderr
    _deliver_all(OutputDeliveryRelay(session_factory, settings, clock=SteppingClock()),
                 session_factory)  # fmt: skip

    notes = [row.last_error for row in output_rows(session_factory)]
    assert notes == [WITHDRAWN_NOTE, WITHDRAWN_NOTE, NO_ORU_DELIVERED, NO_SR_STORED]
    assert report_destinations.stored_srs() == []
    assert report_destinations.ris.messages == []


def test_the_ris_withdrawal_goes_only_to_a_ris_that_had_the_result_and_names_one_now_missing(
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    first, second = RisPeer(free_port()), RisPeer(free_port())
    for peer in (first, second):
        peer.start()
    try:
        to_first = settings.model_copy(
            update={"hl7_destinations": [MllpDestination("127.0.0.1", first.port)]}
        )
        with session_scope(session_factory) as session:
            study = session.get(Study, received_study.id)
            assert study is not None
            add_revision(session, study, ReportState.DRAFTED, model=True,
                         findings="Draft findings.", impression="Draft.")  # fmt: skip
        relay = OutputDeliveryRelay(session_factory, to_first, clock=SteppingClock())
        assert relay.run_once() == 1
        assert len(first.messages) == 1
        with session_scope(session_factory) as session:
            withdraw_study(session, received_study.study_instance_uid, actor="test", now=utcnow())

        only_second = settings.model_copy(update={
            "hl7_destinations": [MllpDestination("127.0.0.1", second.port)],
            "delivery_max_attempts": 1,
        })  # fmt: skip
        OutputDeliveryRelay(session_factory, only_second, clock=SteppingClock()).run_once()
        (withdrawal,) = [
            r for r in output_rows(session_factory) if r.payload["output"] == ORU_WITHDRAWAL
        ]
        assert withdrawal.status == OutboxStatus.FAILED
        assert "no longer configured" in (withdrawal.last_error or "")
        assert f"127.0.0.1:{first.port}" in (withdrawal.last_error or ""), "names the RIS"
        assert second.messages == [], "a RIS that never had the result gets no withdrawal"

        with session_scope(session_factory) as session:
            assert retry_failed(session, withdrawal.id, now=utcnow())
        both = settings.model_copy(update={"hl7_destinations": [
            MllpDestination("127.0.0.1", first.port), MllpDestination("127.0.0.1", second.port),
        ]})  # fmt: skip
        OutputDeliveryRelay(session_factory, both, clock=SteppingClock()).run_once()
        assert [str(m.segment("OBR")[25]) for m in first.messages] == ["R", "W"]
        assert second.messages == []
    finally:
        for peer in (first, second):
            peer.stop()


def test_an_oru_that_reached_one_ris_and_then_failed_is_withdrawn_from_that_ris(
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    """A result for two RIS: the first acknowledged it, the second was down until the row
    failed. The first files a result for the wrong patient, so the withdrawal must reach it."""
    reached, down = RisPeer(free_port()), RisPeer(free_port())
    reached.start()
    try:
        to_both = settings.model_copy(update={
            "hl7_destinations": [MllpDestination("127.0.0.1", reached.port),
                                 MllpDestination("127.0.0.1", down.port)],
            "delivery_max_attempts": 1,
        })  # fmt: skip
        with session_scope(session_factory) as session:
            study = session.get(Study, received_study.id)
            assert study is not None
            add_revision(session, study, ReportState.DRAFTED, model=True,
                         findings="Draft findings.", impression="Draft.")  # fmt: skip
        OutputDeliveryRelay(session_factory, to_both, clock=SteppingClock()).run_once()
        (oru,) = [row for row in output_rows(session_factory) if row.payload["output"] == "oru"]
        assert oru.status == OutboxStatus.FAILED
        assert oru.payload["delivered_to"] == [f"127.0.0.1:{reached.port}"]

        with session_scope(session_factory) as session:
            withdrawal = withdraw_study(
                session, received_study.study_instance_uid, actor="test", now=utcnow()
            )
        assert ORU_WITHDRAWAL in withdrawal.queued

        down.start()
        OutputDeliveryRelay(session_factory, to_both, clock=SteppingClock()).run_once()
        assert [str(m.segment("OBR")[25]) for m in reached.messages] == ["R", "W"]
        assert down.messages == [], "the RIS that never had the result gets no withdrawal"
        rows = {row.payload["output"]: row for row in output_rows(session_factory)}
        assert rows["oru"].last_error == WITHDRAWN_NOTE, "the failed ORU is settled, not retried"
    finally:
        for peer in (reached, down):
            peer.stop()


def _order(study: Study, control: str, patient_class: str = "I") -> Order:
    return Order(
        accession_number=study.accession_number, placer_order_number="PLC-7",
        filler_order_number="FIL-7", message_type="ORM^O01", order_control=control,
        patient_class=patient_class, patient_ids=[study.patient_id], raw_message="MSH|",
    )  # fmt: skip


def test_the_withdrawal_names_the_order_the_result_went_under_after_the_ris_cancelled_it(
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    """The RIS cancels the wrong order first; the W must still name it, or it cannot be
    matched to the result the RIS filed under it."""
    ris = RisPeer(free_port())
    ris.start()
    try:
        linked = settings.model_copy(
            update={"hl7_destinations": [MllpDestination("127.0.0.1", ris.port)]}
        )
        with session_scope(session_factory) as session:
            study = session.get(Study, received_study.id)
            assert study is not None
            assert study.accession_number
            session.add(_order(study, "NW"))
            add_revision(session, study, ReportState.DRAFTED, model=True,
                         findings="Draft findings.", impression="Draft.")  # fmt: skip
        OutputDeliveryRelay(session_factory, linked, clock=SteppingClock()).run_once()
        with session_scope(session_factory) as session:
            study = session.get(Study, received_study.id)
            assert study is not None
            session.add(_order(study, "CA"))
        with session_scope(session_factory) as session:
            withdraw_study(session, received_study.study_instance_uid, actor="test", now=utcnow())
        OutputDeliveryRelay(session_factory, linked, clock=SteppingClock()).run_once()

        result, withdrawal = ris.messages
        for message, status in ((result, "R"), (withdrawal, "W")):
            obr = message.segment("OBR")
            assert (str(obr[2]), str(obr[3]), str(obr[25])) == ("PLC-7", "FIL-7", status)
            assert str(message.segment("PV1")[2]) == "I"
    finally:
        ris.stop()


@pytest.mark.parametrize(
    "name", ["x" * 200, " ", "ops\x1b[2J"], ids=["too long", "blank", "escape sequence"]
)
def test_an_unusable_operator_name_is_refused_before_anything_changes(
    name: str,
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    """The name goes to the audit log: a pasted escape sequence must not, and a name longer
    than its column must not fail on Postgres after the decision was made."""
    uid = received_study.study_instance_uid
    for command in (
        ("study", "withdraw", uid),
        ("study", "confirm-identity", uid),
        ("study", "correct-patient", uid, "--patient-id", "P-1"),
        ("spool", "purge", "--older-than-days", "1"),
    ):
        done = radraft_command(settings, *command, "--by", name)
        assert done.returncode == 2, (command, done.stderr)
        assert "--by" in done.stderr, "says which option is wrong"
        assert "Traceback" not in done.stderr
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        assert study.withdrawn_at is None
        assert session.scalars(select(AuditEntry)).all() == []


@pytest.mark.parametrize("when", ["before it is taken", "while the model writes"])
def test_a_withdrawn_study_gets_no_new_draft(
    when: str, session_factory: sessionmaker[Session]
) -> None:
    uid = "1.2.826.0.1.3680043.9.3811.91"
    with session_scope(session_factory) as session:
        job_id = queued_job(session, uid)
    if when == "while the model writes":
        with session_scope(session_factory) as session:
            assert take_job(session, job_id, worker="w", now=utcnow(), lease_seconds=60.0)
    with session_scope(session_factory) as session:
        withdraw_study(session, uid, actor="test", now=utcnow())
    with session_scope(session_factory) as session:
        if when == "before it is taken":
            assert take_job(session, job_id, worker="w", now=utcnow(), lease_seconds=60.0) is None
        else:
            outcome = DraftOutcome("Findings.", "Impression.", "prompt", (), ())
            info = ModelInfo(name="demo", revision="1", weights_hash="x", backend="test", demo=True)
            assert store_draft(session, job_id, outcome, info, now=utcnow()) is None
    with session_scope(session_factory) as session:
        ended = session.get(DraftingJob, job_id)
        assert ended is not None
        assert (ended.status, ended.last_error) == (JobStatus.SUPERSEDED, WITHDRAWN_STUDY)
        assert session.scalars(select(ReportRevision)).all() == [], "no draft stored"
