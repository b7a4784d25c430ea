"""The reader side: blinding, chained reads, feedback, access, bad input."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import Arm
from radraft.models import AuditEntry, StudyRead
from radraft.settings import Settings
from reporting.reader_study.blinding import normalise_draft
from reporting.web.app import create_app
from tests.reader_study.simulated import build_world, protocol_yaml
from tests.reporting.web_support import login
from tests.support import REPO_ROOT

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])
SOURCE_HINTS = [*(arm.value for arm in Arm), "radraft-demo", "[DEMO", "res0", "res1",
                "source", "arm"]  # fmt: skip


@pytest.fixture
def study(settings: Settings, session_factory: sessionmaker[Session]) -> dict[str, Any]:
    residents, attendings, cases = build_world(session_factory, residents=2, attendings=2,
                                               cases=6)  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as admin:
        created = admin.post(
            "/api/reader-studies",
            json={"protocol": protocol_yaml("small", residents, attendings, cases,
                                            reads_per_reader=6, seed=5)},
            headers=login(admin, "admin"),
        )  # fmt: skip
        assert created.status_code == 201, created.text
        rows = admin.get("/api/reader-studies/small/allocation").json()
    return {"app": app, "rows": rows}


def client_for(app: Any, username: str) -> TestClient:
    client = TestClient(app)
    client.headers.update(login(client, username))
    return client


def submit(client: TestClient, read_id: int, text: str = "Edited.") -> None:
    session = client.post(f"/api/reading/{read_id}/session").json()
    body = {"findings": text, "impression": "Fine."}
    assert client.post(f"/api/reading/{read_id}/submit", json=body).status_code == 200
    events = [{"type": "opened", "client_ms": 0}, {"type": "submit", "client_ms": 9000}]
    assert client.post(f"/api/sessions/{session['id']}/events", json=events).status_code == 200


def test_drafts_are_blinded_in_api_and_page(study: dict[str, Any]) -> None:
    app, rows = study["app"], study["rows"]
    residents = [client_for(app, "res0"), client_for(app, "res1")]
    for client in residents:  # release every chained attending read
        while (read_id := client.get("/api/reading/next").json()["read_id"]) is not None:
            submit(client, read_id, "left lower lobe opacity\nno effusion")
            client.post(f"/api/reading/{read_id}/feedback", json={})
    attending = client_for(app, "att0")
    views = {}
    for row in [r for r in rows if r["reader"] == "att0"]:
        response = attending.get(f"/api/reading/{row['read_id']}")
        assert response.status_code == 200, response.text
        page = attending.get(f"/reading/{row['read_id']}")
        assert page.status_code == 200
        for hint in SOURCE_HINTS:
            assert hint not in response.text, (hint, row["arm"])
            assert hint not in re.sub(r"<script.*?</script>", "", page.text), (hint, row["arm"])
        views[row["arm"]] = response.json()
    assert {"attending_model", "attending_resident_scratch"} <= set(views)
    model_view, resident_view = views["attending_model"], views["attending_resident_scratch"]
    assert set(model_view) == set(resident_view)
    assert model_view["draft_label"] == resident_view["draft_label"] == "Draft report"
    assert model_view["demo_drafts_in_study"] == resident_view["demo_drafts_in_study"]
    for view in (model_view, resident_view):
        assert view["findings"] == normalise_draft(view["findings"]), "one format for all"


def test_normalised_drafts_share_one_format(backend: str) -> None:
    model = "[DEMO MODEL, RANDOM WEIGHTS, NOT FOR CLINICAL USE] the lungs are clear | no effusion"
    resident = "The lungs are clear.\n\n  No effusion"
    assert (
        normalise_draft(model) == normalise_draft(resident) == "The lungs are clear. No effusion."
    )


def test_chained_read_waits_and_feedback_rules(
    study: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    app, rows = study["app"], study["rows"]
    chained = next(r for r in rows if r["arm"] == "attending_resident_scratch")
    attending = client_for(app, chained["reader"])
    assert attending.get(f"/api/reading/{chained['read_id']}").status_code == 409
    source = next(r for r in rows if r["reader"] == chained["source_reader"]
                  and r["case"] == chained["case"])  # fmt: skip
    resident = client_for(app, chained["source_reader"])
    early = resident.post(f"/api/reading/{source['read_id']}/feedback", json={})
    assert early.status_code == 409, "feedback comes after submit"
    submit(resident, source["read_id"], "resident's own words")
    bad = resident.post(f"/api/reading/{source['read_id']}/feedback",
                        json={"helps_answer_indication": 9})  # fmt: skip
    assert bad.status_code == 422
    assert resident.post(f"/api/reading/{source['read_id']}/feedback", json={}).status_code == 200
    again = resident.post(f"/api/reading/{source['read_id']}/feedback", json={})
    assert again.status_code == 409
    resubmit = resident.post(f"/api/reading/{source['read_id']}/submit",
                             json={"findings": "x", "impression": "y"})  # fmt: skip
    assert resubmit.status_code == 409, "a submitted read is closed"
    released = attending.get(f"/api/reading/{chained['read_id']}")
    assert released.status_code == 200
    assert released.json()["findings"] == "Resident's own words."
    other = client_for(app, "att1" if chained["reader"] == "att0" else "att0")
    assert other.get(f"/api/reading/{chained['read_id']}").status_code == 404
    admin = client_for(app, "admin")
    assert admin.get(f"/api/reading/{chained['read_id']}").status_code == 403
    with session_scope(session_factory) as session:
        read = session.get(StudyRead, source["read_id"])
        assert read is not None
        assert read.final_findings == "resident's own words"
        actions = set(session.scalars(select(AuditEntry.action)))
    assert {"study_read.viewed", "study_read.submitted", "study_read.feedback"} <= actions


def test_protocol_with_unknown_readers_or_cases_is_refused(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    residents, attendings, cases = build_world(session_factory, residents=1, attendings=1,
                                               cases=3)  # fmt: skip
    with TestClient(create_app(settings)) as admin:
        headers = login(admin, "admin")
        for readers, case_list, message in [
            (["nobody"], cases, "'nobody' is not an active radraft user"),
            (attendings, cases, "is a attending, listed as a resident"),
            (residents, [*cases[:2], "1.2.3.404"], "1.2.3.404: not in radraft"),
        ]:
            text = protocol_yaml("bad", readers, attendings, case_list, reads_per_reader=2,
                                 seed=1)  # fmt: skip
            response = admin.post("/api/reader-studies", json={"protocol": text}, headers=headers)
            assert response.status_code == 422
            assert message in response.json()["detail"]
        resident = client_for(admin.app, residents[0])
        refused = resident.post("/api/reader-studies", json={"protocol": "name: x"})
        assert refused.status_code == 403


def documented_walk() -> list[tuple[str, Any]]:
    """The reading walk of docs/timing-study.md: each curl's path tail and JSON body, in order."""
    text = (REPO_ROOT / "docs" / "timing-study.md").read_text()
    block = text.split("### The reading API, step by step", 1)[1].split("```bash", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    steps = []
    for command in re.split(r"(?=curl )", block):
        if not command.startswith("curl"):
            continue
        body = re.search(r"-d '(.*?)'", command, re.S)
        path = re.search(r"\$BASE(/api/\S+)", command)
        assert path is not None, command
        steps.append((path.group(1), json.loads(body.group(1)) if body else None))
    return steps


def test_the_documented_reading_walk_works_as_written(study: dict[str, Any]) -> None:
    app, rows = study["app"], study["rows"]
    reader = next(row["reader"] for row in rows if row["role"] == "resident")
    client = client_for(app, reader)
    values: dict[str, Any] = {}
    steps = documented_walk()
    assert [path.split("/")[-1] for path, _ in steps] == [
        "next", "$NEXT", "session", "events", "submit", "feedback",
    ]  # fmt: skip
    for path, body in steps:
        url = path.replace("$NEXT", str(values.get("NEXT"))).replace(
            "$SESSION", str(values.get("SESSION"))
        )
        response = client.post(url, json=body) if body is not None or url.endswith(
            "/session") else client.get(url)  # fmt: skip
        assert response.status_code == 200, (url, response.text)
        if url.endswith("/next"):
            values["NEXT"] = response.json()["read_id"]
        if url.endswith("/session"):
            values["SESSION"] = response.json()["id"]
    assert client.get("/api/reading/next").json()["read_id"] != values["NEXT"], "next read"
