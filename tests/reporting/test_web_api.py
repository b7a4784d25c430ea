"""The web API: logins, roles on every route, the lifecycle, timing events, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import StudyStatus
from radraft.models import AuditEntry, ReportRevision, Study, TimingEvent
from tests.reporting.web_support import PASSWORD, ROLES, edit, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def test_lifecycle_and_timing_through_the_api(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    report = world["report"]
    csrf = login(app_client, "resident")
    opened = app_client.post(f"/api/reports/{report}/sessions", headers=csrf).json()
    again = app_client.post(f"/api/reports/{report}/sessions", headers=csrf).json()
    assert again == {**opened, "resumed": True}, "a reload resumes the session"
    events = [
        {"type": "opened", "client_ms": 0},
        {"type": "draft_shown", "client_ms": 800},
        {"type": "first_input", "client_ms": 4000, "payload": {"keystrokes": 1, "inserted": 1}},
        {"type": "input", "client_ms": 9000, "payload": {"keystrokes": 20, "inserted": 18}},
        {"type": "submit", "client_ms": 12000},
    ]
    stored = app_client.post(f"/api/sessions/{opened['id']}/events", json=events, headers=csrf)
    assert stored.json() == {"stored": 5}
    times = app_client.get(f"/api/sessions/{opened['id']}/times").json()
    assert times["total_seconds"] == pytest.approx(12, abs=0.01)
    assert 0 < times["active_seconds"] <= times["total_seconds"]
    assert times["time_to_first_input_seconds"] == pytest.approx(4, abs=0.01)
    assert times["keystrokes"] == 21
    assert (
        app_client.post(f"/api/reports/{report}/submit", json=edit(1), headers=csrf).status_code
        == 200
    )

    csrf = login(app_client, "attending")
    signed = app_client.post(f"/api/reports/{report}/sign", json=edit(2, "Signed."), headers=csrf)
    assert signed.status_code == 200
    detail = app_client.get(f"/api/reports/{report}").json()
    assert [r["state"] for r in detail["revisions"]] == ["DRAFTED", "PRELIMINARY", "FINAL"]
    assert [r["author_role"] for r in detail["revisions"]] == [None, "resident", "attending"]
    with session_scope(session_factory) as session:
        actions = set(session.scalars(select(AuditEntry.action)))
        assert session.scalar(select(Study.status)) == StudyStatus.FINAL
        assert len(list(session.scalars(select(TimingEvent)))) == 5
    assert {"report.submitted", "report.signed", "report.viewed"} <= actions


ROUTES = [
    ("GET", "/api/studies", None),
    ("GET", "/api/studies/{study_uid}", None),
    ("GET", "/api/outbox", None),
    ("GET", "/api/reports/{report}", None),
    ("POST", "/api/reports/{report}/sessions", None),
    ("POST", "/api/reports/{report}/submit", edit(1)),
    ("POST", "/api/reports/{report}/sign", edit(1)),
    ("GET", "/api/me", None),
    ("GET", "/api/worklist", None),
    ("GET", "/api/reports/{report}/diff?old=1&new=1", None),
    ("GET", "/api/users", None),
    ("POST", "/api/users", {"username": "new", "role": "resident", "password": "p" * 12}),
    ("PATCH", "/api/users/{resident_id}", {"full_name": "Renamed"}),
    ("GET", "/worklist", None),
    ("GET", "/cases/{study_uid}", None),
    ("GET", "/admin/users", None),
    ("GET", "/api/reading/next", None),
    ("GET", "/api/reader-studies", None),
    ("POST", "/api/reader-studies", {"protocol": "name: [unclosed"}),
    ("GET", "/reading", None),
    ("GET", "/admin/reader-studies", None),
    ("GET", "/api/instances/1.2.3.404/window", None),
    ("GET", "/api/reader-studies/none/allocation", None),
    ("PUT", "/api/sessions/999/autosave", {"base_version": 1, "findings": "", "impression": ""}),
    ("GET", "/api/reading/999", None),
    ("POST", "/api/reading/999/submit", {"findings": "a", "impression": "b"}),
    ("POST", "/api/reading/999/feedback", {}),
    ("GET", "/api/sessions/999/times", None),
    ("GET", "/metrics", None),
]
EXPECTED = {
    # route index: statuses for (anonymous, resident, attending, admin, researcher)
    0: (401, 200, 200, 200, 200),
    1: (401, 200, 200, 200, 200),
    2: (401, 200, 200, 200, 200),
    3: (401, 200, 200, 200, 200),
    4: (401, 200, 200, 403, 403),
    5: (401, 200, 403, 403, 403),
    6: (401, 403, 200, 403, 403),
    7: (401, 200, 200, 200, 200),
    8: (401, 200, 200, 200, 200),
    9: (401, 200, 200, 200, 200),
    10: (401, 403, 403, 200, 403),
    11: (401, 403, 403, 201, 403),
    12: (401, 403, 403, 200, 403),
    # pages: anonymous is sent to the login page
    13: (303, 200, 200, 200, 200),
    14: (303, 200, 200, 200, 200),
    15: (303, 403, 403, 200, 403),
    16: (401, 200, 200, 403, 403),
    17: (401, 403, 403, 200, 200),
    18: (401, 403, 403, 422, 403),
    19: (303, 200, 200, 403, 403),
    20: (303, 403, 403, 200, 403),
    # unknown objects: the role check comes first, then 404
    21: (401, 404, 404, 404, 404),
    22: (401, 403, 403, 404, 404),
    23: (401, 404, 404, 403, 403),
    24: (401, 404, 404, 403, 403),
    25: (401, 404, 404, 403, 403),
    26: (401, 404, 404, 403, 403),
    27: (401, 404, 404, 403, 403),
    28: (401, 200, 200, 200, 200),
}


@pytest.mark.parametrize("who", ["anonymous", *ROLES])
def test_authorization_matrix(who: str, app_client: TestClient, world: dict[str, Any]) -> None:
    headers = login(app_client, who) if who != "anonymous" else {}
    column = ["anonymous", *ROLES].index(who)
    for index, (method, path, body) in enumerate(ROUTES):
        url = path.format(**world)
        response = app_client.request(
            method, url, json=body, headers=headers, follow_redirects=False
        )
        assert response.status_code == EXPECTED[index][column], f"{who} {method} {url}"


def test_service_token_reads_but_cannot_edit(app_client: TestClient, world: dict[str, Any]) -> None:
    token = {"Authorization": "Bearer test-service-token"}
    assert app_client.get("/api/studies", headers=token).status_code == 200
    assert (
        app_client.get("/api/studies", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    report = world["report"]
    assert app_client.post(
        f"/api/reports/{report}/sign", json=edit(1), headers=token
    ).status_code in (401, 403)


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    app_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    report = world["report"]
    csrf = login(app_client, "resident")
    cases = [
        (f"/api/reports/{report}/submit", edit(1, "x" * 20_001), csrf, 422),
        (f"/api/reports/{report}/submit", {"expected_version": 1}, csrf, 422),
        (f"/api/reports/{report}/submit", edit(0), csrf, 409),
        (f"/api/reports/{report}/amend", edit(1), csrf, 403),
        (f"/api/reports/{report}/submit", edit(1), {"X-CSRF-Token": "forged"}, 403),
        ("/api/reports/999999/submit", edit(1), csrf, 404),
    ]
    for url, body, headers, status in cases:
        response = app_client.post(url, json=body, headers=headers)
        assert response.status_code == status, (url, body, response.text)
        assert "detail" in response.json()
    assert app_client.get("/api/studies/1.2.3.999").status_code == 404
    with session_scope(session_factory) as session:
        assert len(list(session.scalars(select(ReportRevision)))) == 1


def test_login_is_throttled(app_client: TestClient, world: dict[str, Any]) -> None:
    for _ in range(5):
        wrong = app_client.post("/api/login", json={"username": "resident", "password": "bad"})
        assert wrong.status_code == 401
    blocked = app_client.post("/api/login", json={"username": "resident", "password": PASSWORD})
    assert blocked.status_code == 429
