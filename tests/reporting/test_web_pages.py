"""Pages and the API behind them: worklist filters, autosave, word diffs, user admin, cookies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import ReportState, StudyStatus
from radraft.models import AuditEntry, Study, User
from radraft.settings import Settings
from radraft.timeutil import utcnow
from reporting.web.app import create_app
from reporting.worddiff import word_diff, word_edit_distance
from tests.reporting.factories import add_revision
from tests.reporting.web_support import PASSWORD, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def test_worklist_filters_and_order(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    now = utcnow()
    with session_scope(session_factory) as session:
        for index, (status, priority, accession) in enumerate(
            [
                (StudyStatus.FINAL, 0, "ACC-OLD"),
                (StudyStatus.FAILED, 0, "ACC-FAIL"),
                (StudyStatus.QUEUED, 2, "ACC-STAT"),
                (StudyStatus.RECEIVING, 0, "ACC-NEW"),
            ]
        ):
            session.add(
                Study(
                    study_instance_uid=f"1.2.826.0.1.9.{index}",
                    accession_number=accession,
                    status=status,
                    priority=priority,
                    first_received_at=now - timedelta(minutes=10 - index),
                    last_received_at=now - timedelta(minutes=10 - index),
                )
            )
    login(app_client, "researcher")

    def accessions(**params: Any) -> list[str | None]:
        response = app_client.get("/api/worklist", params=params)
        assert response.status_code == 200, response.text
        return [row["accession_number"] for row in response.json()]

    everything = accessions()
    assert everything[0] == "ACC-STAT", "priority first"
    assert everything.index("ACC-NEW") < everything.index("ACC-FAIL") < everything.index("ACC-OLD")
    assert accessions(status="waiting") == ["ACC-STAT", "ACC-NEW"]
    assert accessions(status="failed") == ["ACC-FAIL"]
    assert accessions(status="final") == ["ACC-OLD"]
    assert accessions(text="fail") == ["ACC-FAIL"]
    assert accessions(min_priority=1) == ["ACC-STAT"]
    drafted = app_client.get("/api/worklist", params={"status": "drafted"}).json()
    assert [row["report_id"] for row in drafted] == [world["report"]]
    assert app_client.get("/api/worklist", params={"status": "bogus"}).status_code == 422


def test_autosave_resumes_after_a_reload_and_ends_with_the_session(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    report = world["report"]
    csrf = login(app_client, "resident")
    opened = app_client.post(f"/api/reports/{report}/sessions", headers=csrf).json()
    assert opened["autosave"] is None
    typed = {"base_version": 1, "findings": "Typed findings", "impression": "Typed impression"}
    saved = app_client.put(f"/api/sessions/{opened['id']}/autosave", json=typed, headers=csrf)
    assert saved.status_code == 200, saved.text
    reloaded = app_client.post(f"/api/reports/{report}/sessions", headers=csrf).json()
    assert reloaded["resumed"] is True
    assert {k: reloaded["autosave"][k] for k in typed} == typed
    with session_scope(session_factory) as session:
        revisions = app_client.get(f"/api/reports/{report}").json()["revisions"]
        assert len(revisions) == 1, "an autosave is not a revision"
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "report.autosaved"))
    # Another reader cannot write into this session.
    other = TestClient(app_client.app)
    other_csrf = login(other, "attending")
    foreign = other.put(f"/api/sessions/{opened['id']}/autosave", json=typed, headers=other_csrf)
    assert foreign.status_code == 404
    ended = app_client.post(
        f"/api/sessions/{opened['id']}/events",
        json=[{"type": "submit", "client_ms": 10}],
        headers=csrf,
    )
    assert ended.status_code == 200
    late = app_client.put(f"/api/sessions/{opened['id']}/autosave", json=typed, headers=csrf)
    assert late.status_code == 409
    too_long = {**typed, "findings": "x" * 20_001}
    fresh = app_client.post(f"/api/reports/{report}/sessions", headers=csrf).json()
    assert fresh["resumed"] is False
    bad = app_client.put(f"/api/sessions/{fresh['id']}/autosave", json=too_long, headers=csrf)
    assert bad.status_code == 422


def test_word_diff_between_revisions(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    with session_scope(session_factory) as session:
        study = session.scalar(select(Study).where(Study.study_instance_uid == "1.2.826.0.1.7"))
        assert study is not None
        resident = session.scalar(select(User).where(User.username == "resident"))
        add_revision(session, study, ReportState.PRELIMINARY, author=resident,
                     findings="Draft findings with a small effusion.",
                     impression="Draft impression.")  # fmt: skip
    login(app_client, "attending")
    report = world["report"]
    diff = app_client.get(f"/api/reports/{report}/diff", params={"old": 1, "new": 2})
    assert diff.status_code == 200, diff.text
    pieces = diff.json()["findings"]
    assert {"op": "delete", "text": "findings."} in pieces
    assert {"op": "insert", "text": "findings with a small effusion."} in pieces
    assert all(piece["op"] == "equal" for piece in diff.json()["impression"])
    revisions = app_client.get(f"/api/reports/{report}").json()["revisions"]
    assert revisions[0]["source_label"] == "demo model draft"
    assert revisions[1]["author_name"] == "Resident"
    missing = app_client.get(f"/api/reports/{report}/diff", params={"old": 1, "new": 9})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("No effusion.", "Small left effusion."),
        ("", "New text."),
        ("Lungs are clear.\nNo pneumothorax.", "Lungs are clear.\n\nNo pneumothorax seen."),
    ],
)
def test_word_diff_rebuilds_both_texts(old: str, new: str, backend: str) -> None:
    pieces = word_diff(old, new)
    assert "".join(p.text for p in pieces if p.op != "insert") == old
    assert "".join(p.text for p in pieces if p.op != "delete") == new


def test_word_edit_distance(backend: str) -> None:
    assert word_edit_distance("no acute findings", "no acute findings") == 0
    assert word_edit_distance("no effusion", "small left effusion") == 2
    assert word_edit_distance("", "three new words") == 3


def test_admin_manages_users(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    csrf = login(app_client, "admin")
    body = {"username": "newres", "full_name": "New Res", "role": "resident", "password": PASSWORD}
    created = app_client.post("/api/users", json=body, headers=csrf)
    assert created.status_code == 201, created.text
    assert "password_hash" not in created.json()
    assert app_client.post("/api/users", json=body, headers=csrf).status_code == 409
    short = {**body, "username": "other", "password": "short"}
    assert app_client.post("/api/users", json=short, headers=csrf).status_code == 422
    bad_role = {**body, "username": "other", "role": "superuser"}
    assert app_client.post("/api/users", json=bad_role, headers=csrf).status_code == 422
    new_id = created.json()["id"]
    assert app_client.patch(f"/api/users/{new_id}", json={"active": False}, headers=csrf).is_success
    refused = TestClient(app_client.app).post(
        "/api/login", json={"username": "newres", "password": PASSWORD}
    )
    assert refused.status_code == 401, "a deactivated account cannot log in"
    reset = {"active": True, "password": "a new long password"}
    assert app_client.patch(f"/api/users/{new_id}", json=reset, headers=csrf).is_success
    login(TestClient(app_client.app), "newres", "a new long password")
    own = app_client.patch(f"/api/users/{world['admin_id']}", json={"active": False}, headers=csrf)
    assert own.status_code == 409
    assert app_client.patch("/api/users/99999", json={}, headers=csrf).status_code == 404
    with session_scope(session_factory) as session:
        actions = list(session.scalars(select(AuditEntry.action)))
    assert actions.count("user.created") == 1
    assert actions.count("user.changed") == 2


@pytest.mark.parametrize(("scheme", "secure"), [("https", True), ("http", False)])
def test_session_cookie_is_secure_over_tls(
    settings: Settings, world: dict[str, Any], scheme: str, secure: bool
) -> None:
    with TestClient(create_app(settings), base_url=f"{scheme}://testserver") as client:
        response = client.post("/api/login", json={"username": "resident", "password": PASSWORD})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert ("; secure" in cookie) is secure


def test_case_page_shows_indication_demo_label_and_viewer_link(
    settings: Settings, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    with session_scope(session_factory) as session:
        study = session.scalar(select(Study).where(Study.study_instance_uid == "1.2.826.0.1.7"))
        assert study is not None
        study.patient_name = "<script>alert(1)</script>"
        study.reason_for_requested_procedure = "Cough and fever"
    settings = settings.model_copy(
        update={
            "viewer_url_template": "https://pacs.example/ohif?StudyInstanceUIDs={study_instance_uid}"
        }
    )
    with TestClient(create_app(settings)) as client:
        anonymous = client.get("/cases/1.2.826.0.1.7", follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/login?next=/cases/1.2.826.0.1.7"
        login(client, "resident")
        page = client.get("/cases/1.2.826.0.1.7")
        assert client.get("/cases/1.2.3.404").status_code == 404
    assert page.status_code == 200
    html = page.text
    assert "Cough and fever" in html
    assert "not for clinical use" in html
    assert 'href="https://pacs.example/ohif?StudyInstanceUIDs=1.2.826.0.1.7"' in html
    assert "<script>alert(1)</script>" not in html, "patient data is escaped"
    assert "&lt;script&gt;" in html


def test_the_case_page_shows_the_indication_the_model_was_given(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    from radraft.models import DraftingJob, Order
    from radraft.timeutil import utcnow
    from worker.drafting import take_job

    def order(placer: str, control: str, reason: str | None) -> Order:
        return Order(accession_number="ACC-IND", placer_order_number=placer,
                     order_control=control, message_type="ORM^O01", reason_for_exam=reason,
                     patient_ids=["PID-IND"], raw_message="MSH|")  # fmt: skip

    def prompt_and_page() -> tuple[str, str]:
        with session_scope(session_factory) as session:
            study = session.scalar(
                select(Study).where(Study.study_instance_uid == world["study_uid"])
            )
            assert study is not None
            job = DraftingJob(study_id=study.id, content_version=study.content_version + len(
                session.scalars(select(DraftingJob)).all()) + 1)  # fmt: skip
            session.add(job)
            session.flush()
            inputs = take_job(session, job.id, worker="test", now=utcnow(), lease_seconds=60.0)
            assert inputs is not None
        page = app_client.get(f"/cases/{world['study_uid']}")
        assert page.status_code == 200
        return inputs.indication, page.text

    with session_scope(session_factory) as session:
        study = session.scalar(select(Study).where(Study.study_instance_uid == world["study_uid"]))
        assert study is not None
        study.accession_number = "ACC-IND"
        study.patient_id = "PID-IND"
        study.reason_for_requested_procedure = "Header reason"
        study.study_description = "XR CHEST"
        session.add_all([order("P1", "NW", "Fever, cough"), order("P2", "NW", "Chest pain")])
    login(app_client, "resident")
    indication, page = prompt_and_page()
    assert indication == "Chest pain", "the newest standing order"
    assert "Chest pain" in page
    assert "Fever, cough" not in page
    assert "Header reason" not in page

    with session_scope(session_factory) as session:
        session.add(order("P2", "CA", None))  # the newer order is cancelled
    indication, page = prompt_and_page()
    assert indication == "Fever, cough"
    assert "Fever, cough" in page
    assert "Chest pain" not in page


def test_the_case_page_says_when_the_draft_was_written_for_another_indication(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    """An order that comes (or changes) after drafting changes the indication shown, but the
    draft on the page was written without it: the page says what the model was asked."""
    from radraft.models import Order, ReportRevision

    with session_scope(session_factory) as session:
        study = session.scalar(select(Study).where(Study.study_instance_uid == world["study_uid"]))
        assert study is not None
        study.accession_number, study.patient_id = "ACC-LATE", "PID-LATE"
        study.reason_for_requested_procedure = "Header reason"
        draft = session.scalar(
            select(ReportRevision).where(ReportRevision.report_id == world["report"])
        )
        assert draft is not None
        draft.generation = {"indication": "Header reason"}
    login(app_client, "resident")
    page = app_client.get(f"/cases/{world['study_uid']}").text
    assert "Header reason" in page
    assert "The model&#39;s draft was written for" not in page, "the same question: said once"

    with session_scope(session_factory) as session:
        session.add(
            Order(
                accession_number="ACC-LATE",
                order_control="NW",
                message_type="ORM^O01",
                reason_for_exam="Late order: haemoptysis",
                patient_ids=["PID-LATE"],
                raw_message="MSH|",
            )
        )
    page = app_client.get(f"/cases/{world['study_uid']}").text
    assert "Indication (HL7 order)" in page
    assert "Late order: haemoptysis" in page
    assert "The model&#39;s draft was written for</dt><dd>Header reason" in page


def test_the_case_page_warns_when_its_accession_number_has_another_patient_s_study(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    """An accession number is one order for one patient. A study moved at the PACS under new
    UIDs, or a worklist entry picked wrongly, leaves two studies with one accession number and
    two Patient IDs; the reader is told before signing either."""
    with session_scope(session_factory) as session:
        study = session.scalar(select(Study).where(Study.study_instance_uid == world["study_uid"]))
        assert study is not None
        study.accession_number, study.patient_id = "ACC-TWO", "PID-ONE"
        session.add(Study(study_instance_uid="1.2.826.0.1.8", accession_number="ACC-TWO",
                          patient_id="PID-ONE"))  # fmt: skip
    login(app_client, "resident")
    assert "accession-banner" not in app_client.get(f"/cases/{world['study_uid']}").text, (
        "two studies of one patient under one order are normal"
    )
    with session_scope(session_factory) as session:
        session.add(Study(study_instance_uid="1.2.826.0.1.9", accession_number="ACC-TWO",
                          patient_id="PID-TWO"))  # fmt: skip
    page = app_client.get(f"/cases/{world['study_uid']}").text
    assert "Another study with this" in page
    assert "PID-TWO" not in page, "the other patient is not shown"
