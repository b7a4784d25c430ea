"""Prior studies: the same patient's earlier studies and their signed reports, and only those."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import ReportState, Role, StudyStatus
from radraft.models import AuditEntry, Study, User
from radraft.synthetic import SyntheticPatient, make_chest_study
from radraft.timeutil import utcnow
from reporting.web.prior_studies import VIEWED_AS_PRIOR
from tests.dicom_peers import storescu, write_study
from tests.reporting.factories import add_revision, make_user
from tests.reporting.web_support import login
from tests.support import wait_until

CURRENT = "1.2.826.0.1.30.1"
PATIENT = {"patient_id": "P-1", "patient_birth_date": "19600101", "issuer_of_patient_id": "HOSP"}


def _study(
    session: Session,
    uid: str,
    study_date: str,
    status: StudyStatus = StudyStatus.FINAL,
    **fields: Any,
) -> Study:
    received = utcnow() - timedelta(days=1) if uid != CURRENT else utcnow()
    study = Study(
        study_instance_uid=uid,
        status=status,
        study_date=study_date,
        study_description=f"CHEST {uid}",
        accession_number=f"ACC-{uid.rsplit('.', 1)[1]}",
        first_received_at=received,
        last_received_at=received,
        **{**PATIENT, **fields},
    )
    session.add(study)
    session.flush()
    return study


def _signed(session: Session, study: Study, attending: User, impression: str) -> None:
    add_revision(session, study, ReportState.DRAFTED, model=True,
                 findings="MODEL DRAFT TEXT", impression="MODEL DRAFT TEXT")  # fmt: skip
    findings = f"Findings of {study.study_instance_uid}."
    add_revision(session, study, ReportState.FINAL, author=attending,
                 findings=findings, impression=impression)  # fmt: skip


def _history(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """The current study, and around it every kind of study that is or is not its prior."""
    now = utcnow()
    with session_scope(session_factory) as session:
        attending = make_user(session, "dr-prior", Role.ATTENDING, "Dr Prior")
        _study(session, CURRENT, "20261201")
        amended = _study(session, "1.2.826.0.1.30.2", "20250101")
        _signed(session, amended, attending, "Nodule in the right upper lobe.")
        add_revision(session, amended, ReportState.AMENDED, author=attending,
                     findings="Amended findings.", impression="Amended: no nodule.")  # fmt: skip
        unsigned = _study(session, "1.2.826.0.1.30.3", "20240101", StudyStatus.DRAFTED,
                          patient_birth_date=None, issuer_of_patient_id=None)  # fmt: skip
        add_revision(session, unsigned, ReportState.DRAFTED, model=True,
                     findings="MODEL DRAFT TEXT", impression="MODEL DRAFT TEXT")  # fmt: skip
        later = _study(session, "1.2.826.0.1.30.4", "20261215")
        _signed(session, later, attending, "LATER STUDY TEXT")
        for uid, study_date, fields in (
            ("1.2.826.0.1.30.5", "20230101", {"issuer_of_patient_id": "OTHER-HOSP"}),
            ("1.2.826.0.1.30.6", "20220101", {"patient_birth_date": "19700101"}),
            ("1.2.826.0.1.30.7", "20210101", {"withdrawn_at": now}),
            ("1.2.826.0.1.30.8", "20200101", {"identity_disputed_at": now}),
        ):
            _signed(session, _study(session, uid, study_date, **fields), attending,
                    "WITHHELD STUDY TEXT")  # fmt: skip
        _signed(session, _study(session, "1.2.826.0.1.30.9", "20250601", patient_id="P-2"),
                attending, "OTHER PATIENT TEXT")  # fmt: skip
        return {"amended_report": amended.reports[0].id}


def _prior_views(session_factory: sessionmaker[Session]) -> list[tuple[str, str]]:
    with session_scope(session_factory) as session:
        return [
            (entry.actor, entry.object_id)
            for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.action == VIEWED_AS_PRIOR)
            )
        ]


def test_priors_are_the_same_patients_earlier_studies_with_signed_reports_only(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    ids = _history(session_factory)
    login(app_client, "resident")
    response = app_client.get(f"/api/studies/{CURRENT}/priors")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [prior["study_instance_uid"] for prior in body["priors"]] == [
        "1.2.826.0.1.30.2",
        "1.2.826.0.1.30.3",
    ], "earlier studies of this patient, newest first; not the later one, not another patient's"
    newest, unsigned = body["priors"]
    assert newest["report"]["status"] == "AMENDED"
    assert newest["report"]["impression"] == "Amended: no nodule."
    assert newest["report"]["id"] == ids["amended_report"]
    assert unsigned["report"] is None, "a model draft is not shown as a prior report"
    assert body["withheld"] == 4, "other issuer, other birth date, withdrawn, disputed"
    assert body["unavailable"] is None
    assert "WITHHELD" not in response.text
    assert "MODEL DRAFT" not in response.text
    assert _prior_views(session_factory) == [
        (f"user:{world['resident_id']}", str(ids["amended_report"]))
    ], "the one prior report shown is audited as viewed, by who"


def test_the_case_page_shows_the_priors_and_says_what_it_left_out(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    _history(session_factory)
    login(app_client, "attending")
    page = app_client.get(f"/cases/{CURRENT}")
    assert page.status_code == 200, page.text
    assert "Amended: no nodule." in page.text
    assert "Amended findings." in page.text
    assert 'href="/cases/1.2.826.0.1.30.3"' in page.text
    assert "No signed report (status drafted)" in page.text
    assert "4 earlier studies with this Patient ID not listed" in " ".join(page.text.split())
    for absent in ("WITHHELD", "MODEL DRAFT", "LATER STUDY", "OTHER PATIENT", "Nodule in the"):
        assert absent not in page.text, absent
    assert len(_prior_views(session_factory)) == 1


def test_a_study_whose_patient_is_in_question_or_unknown_has_no_priors(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    _history(session_factory)
    login(app_client, "resident")
    with session_scope(session_factory) as session:
        current = session.scalars(select(Study).where(Study.study_instance_uid == CURRENT)).one()
        current.identity_disputed_at = utcnow()
    disputed = app_client.get(f"/api/studies/{CURRENT}/priors").json()
    assert disputed == {
        "priors": [],
        "withheld": 0,
        "unavailable": "the study's patient identity is in question",
    }
    page = app_client.get(f"/cases/{CURRENT}").text
    assert "Not shown: the study&#39;s patient identity is in question." in page
    assert "Amended: no nodule." not in page
    no_patient = app_client.get(f"/api/studies/{world['study_uid']}/priors").json()
    assert no_patient["unavailable"] == "the study has no Patient ID"
    assert _prior_views(session_factory) == []
    assert app_client.get("/api/studies/1.2.3.404/priors").status_code == 404


def test_reading_a_study_through_the_api_is_an_audited_view_of_its_report(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    """``GET /api/studies/{uid}`` returns the report's text, and did so without an audit row."""
    login(app_client, "researcher")
    body = app_client.get(f"/api/studies/{world['study_uid']}").json()
    assert body["report"]["id"] == world["report"]
    with session_scope(session_factory) as session:
        views = session.scalars(
            select(AuditEntry.actor).where(
                AuditEntry.action == "report.viewed", AuditEntry.object_id == str(world["report"])
            )
        ).all()
    assert views == [f"user:{world['researcher_id']}"]


def test_studies_received_by_the_gateway_find_their_priors_by_the_headers_they_came_with(
    running_gateway: Gateway,
    app_client: TestClient,
    world: dict[str, Any],
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """The rule is only as good as what the gateway keeps of the header: sent by storescu, the
    same patient's older study is a prior, and the same Patient ID from another issuer is not."""
    patient = SyntheticPatient(patient_id="PRI-77", birth_date="19581122")
    sent: dict[str, str] = {}
    for seed, study_date, issuer in ((771, "20230405", "HOSP"), (772, "20261130", "HOSP"),
                                     (773, "20190101", "CLINIC-B")):  # fmt: skip
        datasets = make_chest_study(seed, rows=64, columns=64, patient=patient)
        for dataset in datasets:
            dataset.StudyDate = study_date
            dataset.IssuerOfPatientID = issuer
        files = write_study(datasets, tmp_path / str(seed))
        assert storescu(files, port=running_gateway.port).returncode == 0
        sent[study_date] = str(datasets[0].StudyInstanceUID)

    def received() -> bool:
        with session_scope(session_factory) as session:
            return len(session.scalars(select(Study.id)).all()) == 1 + len(sent)

    wait_until(received, what="the three studies stored")
    login(app_client, "resident")
    body = app_client.get(f"/api/studies/{sent['20261130']}/priors").json()
    assert [prior["study_instance_uid"] for prior in body["priors"]] == [sent["20230405"]]
    assert body["priors"][0]["study_date"] == "20230405"
    assert body["withheld"] == 1, "the same Patient ID from another issuer"
    oldest = app_client.get(f"/api/studies/{sent['20190101']}/priors").json()
    assert oldest == {"priors": [], "withheld": 0, "unavailable": None}
