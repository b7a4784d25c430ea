"""IHE IOCM rejection notes received from a modality or PACS: the images they name are rejected.

Studies and notes are sent by a real storescu to the running gateway; the notes are built with
highdicom as a modality would (a Key Object Selection document in the study, titled with the
rejection reason, its evidence naming the rejected instances).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicomweb.query import Level, find_instances, find_studies, parse_query
from gateway.dicomweb.retrieve import locate
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import JobStatus, ReportState, Role, StudyStatus
from radraft.image_rejection import REJECTED_ACTION, REJECTION_TITLES
from radraft.models import AuditEntry, AwaitedRejection, DraftingJob, Instance, Study
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from radraft.timeutil import utcnow
from reporting.delivery.outputs import load_bundle
from reporting.users import create_user
from reporting.web.app import create_app
from tests.dicom_peers import store_statuses, storescu, write_study
from tests.reporting.factories import add_revision
from tests.reporting.web_support import PASSWORD, edit, login
from tests.support import wait_until
from worker.drafting import take_job

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


def rejection_note(images: list[Dataset], code: str) -> Dataset:
    """The note a modality sends: a KOS in the images' study naming them, titled ``code``."""
    title = Code(code, "DCM", REJECTION_TITLES.get(code, "Of Interest"))
    return hd.ko.KeyObjectSelectionDocument(
        evidence=images,
        content=hd.ko.KeyObjectSelection(document_title=title, referenced_objects=images),
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="MODALITY",
    )


def _send(gateway: Gateway, datasets: list[Dataset], folder: Path) -> set[int]:
    sent = storescu(write_study(datasets, folder), port=gateway.port, debug=True, halt=False)
    return set(store_statuses(sent.output))


def _jobs(factory: sessionmaker[Session]) -> list[DraftingJob]:
    with session_scope(factory) as session:
        return list(session.scalars(select(DraftingJob).order_by(DraftingJob.id)))


def _rejected(factory: sessionmaker[Session]) -> dict[str, tuple[str | None, bool]]:
    with session_scope(factory) as session:
        return {
            instance.sop_instance_uid: (instance.rejection_code, instance.is_chest)
            for instance in session.scalars(select(Instance))
        }


def test_an_image_rejected_for_quality_is_never_drafted_or_served_and_the_study_redrafted(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    pa, lateral = make_chest_study(71, rows=64, columns=64)
    assert _send(running_gateway, [pa, lateral], tmp_path / "study") == {0x0000}
    wait_until(lambda: len(_jobs(session_factory)) == 1, what="the first draft queued")

    note = rejection_note([lateral], "113001")
    assert _send(running_gateway, [note], tmp_path / "note") == {0x0000}
    rows = _rejected(session_factory)
    assert rows[str(lateral.SOPInstanceUID)] == ("113001", False)
    assert rows[str(pa.SOPInstanceUID)] == (None, True)
    wait_until(lambda: len(_jobs(session_factory)) == 2, what="a new draft without it")
    first, second = _jobs(session_factory)
    assert first.status == JobStatus.SUPERSEDED
    assert second.content_version == first.content_version + 1
    with session_scope(session_factory) as session:
        inputs = take_job(session, second.id, worker="w", now=utcnow(), lease_seconds=60.0)
        assert inputs is not None
        assert [c.sop_instance_uid for c in inputs.candidates] == [str(pa.SOPInstanceUID)]
        served = {item.sop_instance_uid for item in locate(
            session, settings.spool_dir, str(pa.StudyInstanceUID)
        )}  # fmt: skip
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == REJECTED_ACTION))
        assert entry.actor == "dicom:STORESCU"
        assert entry.details == {"code": "113001", "instances": 1, "awaited": 0,
                                 "reopened": True, "disputed": False}  # fmt: skip
    assert served == {str(pa.SOPInstanceUID), str(note.SOPInstanceUID)}, "not over DICOMweb"
    with session_scope(session_factory) as session:
        study_uid = str(pa.StudyInstanceUID)
        found = find_instances(session, parse_query([], Level.INSTANCE), "",
                               study_instance_uid=study_uid)  # fmt: skip
        (summary,) = find_studies(
            session, parse_query([("StudyInstanceUID", study_uid)], Level.STUDY), ""
        )
    assert {item["00080018"]["Value"][0] for item in found} == served, "nor found by QIDO-RS"
    assert summary["00201208"]["Value"] == [2], "nor counted"
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        revision = add_revision(session, study, ReportState.DRAFTED, model=True,
                                findings="Findings.", impression="Impression.")  # fmt: skip
        session.flush()
        bundle = load_bundle(session, revision.id, spool_dir=settings.spool_dir)
    evidence = {reference.sop_instance_uid for _, reference in bundle.sources}
    assert evidence == {str(pa.SOPInstanceUID)}, (
        "nor named as the SR's evidence, and the note (a KOS) is no evidence either"
    )
    with session_scope(session_factory) as session:
        create_user(session, "resident", role=Role.RESIDENT, password=PASSWORD, full_name="R")
    with TestClient(create_app(settings)) as client:
        login(client, "resident")
        page = client.get(f"/cases/{pa.StudyInstanceUID}").text
        preview = client.get(f"/api/instances/{lateral.SOPInstanceUID}/window")
    assert str(lateral.SOPInstanceUID) not in page, "not in the case page's viewer"
    assert str(pa.SOPInstanceUID) in page
    assert str(note.SOPInstanceUID) not in page, "a KOS is no image to view"
    assert "1 image(s) of this study were" in page
    assert "Rejected for Quality Reasons" in page
    assert preview.status_code == 404

    assert _send(running_gateway, [lateral], tmp_path / "again") == {0x0000}
    assert _rejected(session_factory)[str(lateral.SOPInstanceUID)] == ("113001", False)
    assert _send(running_gateway, [note], tmp_path / "note-again") == {0x0000}
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        assert study.content_version == second.content_version, "a re-send re-opens nothing"


def test_images_rejected_as_another_patients_hold_the_study_that_has_a_draft(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    pa, lateral = make_chest_study(72, rows=64, columns=64)
    assert _send(running_gateway, [pa, lateral], tmp_path / "study") == {0x0000}
    wait_until(lambda: len(_jobs(session_factory)) == 1, what="the first draft queued")
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        add_revision(session, study, ReportState.DRAFTED, model=True,
                     findings="Draft findings.", impression="Draft.")  # fmt: skip

    decided = _study(session_factory).completed_version
    assert _send(running_gateway, [rejection_note([pa, lateral], "113038")], tmp_path / "n") == {
        0x0000
    }
    wait_until(lambda: _study(session_factory).completed_version > decided, what="decided again")
    study = _study(session_factory)
    assert study.identity_disputed_at is not None, "no one signs a draft of rejected images"
    assert study.claimed_patient is None
    assert (study.eligible, study.status) == (False, StudyStatus.DRAFTED), "its draft stays"
    (job,) = _jobs(session_factory)
    assert job.status == JobStatus.SUPERSEDED, "nothing left to draft from"


def test_a_note_reaches_only_into_its_own_study_and_another_title_rejects_nothing(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    mine = make_chest_study(73, rows=64, columns=64)
    other = make_chest_study(74, rows=64, columns=64)
    assert _send(running_gateway, [*mine, *other], tmp_path / "studies") == {0x0000}

    reaching = rejection_note([other[0]], "113037")  # filed in my study, naming the other's
    for keyword in (
        "StudyInstanceUID",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "StudyTime",
    ):
        if keyword in mine[0]:
            setattr(reaching, keyword, mine[0].get(keyword))
    of_interest = rejection_note([mine[1]], "113000")
    assert _send(running_gateway, [reaching, of_interest], tmp_path / "notes") == {0x0000}

    rows = _rejected(session_factory)
    assert rows[str(other[0].SOPInstanceUID)] == (None, True), "another study is untouched"
    assert rows[str(mine[1].SOPInstanceUID)] == (None, True), "'Of Interest' rejects nothing"


def test_a_note_sent_before_its_images_rejects_them_as_they_arrive(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """A forwarding PACS sends the note on one association and the images on another."""
    pa, lateral = make_chest_study(76, rows=64, columns=64)
    never_sent = make_chest_study(76, rows=64, columns=64)[0]
    never_sent.SOPInstanceUID = generate_uid()
    note = rejection_note([lateral, never_sent], "113001")
    assert _send(running_gateway, [note], tmp_path / "note") == {0x0000}
    assert _study(session_factory).awaited_rejections == 2
    with session_scope(session_factory) as session:
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == REJECTED_ACTION))
        assert entry.details is not None
        assert (entry.details["instances"], entry.details["awaited"]) == (0, 2)

    assert _send(running_gateway, [pa, lateral], tmp_path / "study") == {0x0000}
    rows = _rejected(session_factory)
    assert rows[str(lateral.SOPInstanceUID)] == ("113001", False), "rejected as it arrived"
    assert rows[str(pa.SOPInstanceUID)] == (None, True)
    assert _study(session_factory).awaited_rejections == 1, "the one never sent is still awaited"
    with session_scope(session_factory) as session:
        reason = session.scalars(
            select(Instance.classification_reason).where(
                Instance.sop_instance_uid == str(lateral.SOPInstanceUID)
            )
        ).one()
        remaining = session.scalars(select(AwaitedRejection.sop_instance_uid)).all()
    assert "Rejected for Quality Reasons" in reason
    assert remaining == [str(never_sent.SOPInstanceUID)]

    wait_until(lambda: len(_jobs(session_factory)) == 1, what="the draft queued")
    with session_scope(session_factory) as session:
        inputs = take_job(session, _jobs(session_factory)[0].id, worker="w", now=utcnow(),
                          lease_seconds=60.0)  # fmt: skip
        assert inputs is not None
        assert [c.sop_instance_uid for c in inputs.candidates] == [str(pa.SOPInstanceUID)]

    assert _send(running_gateway, [note], tmp_path / "note-again") == {0x0000}
    assert _study(session_factory).awaited_rejections == 1, "a re-sent note awaits nothing twice"
    with session_scope(session_factory) as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == REJECTED_ACTION))
        assert len(entries.all()) == 1, "nor is it audited again"


def test_a_note_naming_the_sr_radraft_sent_awaits_nothing(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """The PACS rejects radraft's draft SR (stored there, never received here): it is not
    awaited, or every later instance of the study would look it up for ever."""
    pa, lateral = make_chest_study(77, rows=64, columns=64)
    assert _send(running_gateway, [pa, lateral], tmp_path / "study") == {0x0000}
    our_sr = make_chest_study(77, rows=64, columns=64)[0]
    our_sr.SOPInstanceUID, our_sr.SeriesInstanceUID = generate_uid(), generate_uid()
    with session_scope(session_factory) as session:
        revision = add_revision(session, session.scalars(select(Study)).one(), ReportState.DRAFTED,
                                model=True, findings="Draft.", impression="Draft.")  # fmt: skip
        revision.sr_sop_instance_uid = str(our_sr.SOPInstanceUID)
    never_sent = make_chest_study(77, rows=64, columns=64)[0]
    never_sent.SOPInstanceUID = generate_uid()
    note = rejection_note([our_sr, never_sent], "113001")
    assert _send(running_gateway, [note], tmp_path / "note") == {0x0000}
    with session_scope(session_factory) as session:
        remaining = session.scalars(select(AwaitedRejection.sop_instance_uid)).all()
    assert remaining == [str(never_sent.SOPInstanceUID)], "only the image radraft never had"
    assert _study(session_factory).awaited_rejections == 1


def _study(factory: sessionmaker[Session]) -> Study:
    with session_scope(factory) as session:
        return session.scalars(select(Study)).one()


def test_a_draft_whose_images_were_all_rejected_for_quality_can_still_be_submitted(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """The re-take comes as new images; meanwhile the resident's draft is not locked out."""
    pa, lateral = make_chest_study(75, rows=64, columns=64)
    assert _send(running_gateway, [pa, lateral], tmp_path / "study") == {0x0000}
    wait_until(lambda: len(_jobs(session_factory)) == 1, what="the first draft queued")
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        report_id = add_revision(session, study, ReportState.DRAFTED, model=True,
                                 findings="Draft.", impression="Draft.").report_id  # fmt: skip
        create_user(session, "resident", role=Role.RESIDENT, password=PASSWORD, full_name="R")
    decided = _study(session_factory).completed_version
    assert _send(running_gateway, [rejection_note([pa, lateral], "113001")], tmp_path / "n") == {
        0x0000
    }
    wait_until(lambda: _study(session_factory).completed_version > decided, what="decided again")
    assert (_study(session_factory).status, _study(session_factory).eligible) == (
        StudyStatus.DRAFTED, False,
    )  # fmt: skip

    with TestClient(create_app(settings)) as client:
        csrf = login(client, "resident")
        version = client.get(f"/api/reports/{report_id}").json()["version"]
        submitted = client.post(
            f"/api/reports/{report_id}/submit", json=edit(version, "Re-take requested."),
            headers=csrf,
        )  # fmt: skip
    assert submitted.status_code == 200, submitted.text
    assert _study(session_factory).status == StudyStatus.PRELIMINARY
