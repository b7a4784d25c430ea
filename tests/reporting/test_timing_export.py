"""``radraft timing export``: one row per clinical edit session, from the API's stored events."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.models import AuditEntry, Study
from radraft.settings import Settings, settings_to_environment
from tests.reporting.web_support import edit, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


def read_case(client: TestClient, report: int, user: str, seconds: int, keys: int) -> int:
    """Open the report, type for ``seconds`` (client clock), return the session id."""
    csrf = login(client, user)
    opened = client.post(f"/api/reports/{report}/sessions", headers=csrf).json()
    events = [
        {"type": "opened", "client_ms": 0},
        {"type": "draft_shown", "client_ms": 500},
        {"type": "first_input", "client_ms": 2000, "payload": {"keystrokes": 1, "inserted": 1}},
        {"type": "input", "client_ms": 1000 * seconds - 500,
         "payload": {"keystrokes": keys - 1, "inserted": keys - 1}},
        {"type": "submit", "client_ms": 1000 * seconds},
    ]  # fmt: skip
    stored = client.post(f"/api/sessions/{opened['id']}/events", json=events, headers=csrf)
    assert stored.status_code == 200, stored.text
    return int(opened["id"])


def test_export_has_one_row_per_clinical_session_and_no_phi(
    app_client: TestClient,
    world: dict[str, Any],
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    report = world["report"]
    with session_scope(session_factory) as session:
        study = session.scalar(select(Study))
        assert study is not None
        study.patient_name = "Canary^Timing"
    resident = read_case(app_client, report, "resident", seconds=20, keys=30)
    csrf = login(app_client, "resident")
    submitted = app_client.post(f"/api/reports/{report}/submit", json=edit(1, "Resident."),
                                headers=csrf)  # fmt: skip
    assert submitted.status_code == 200
    attending = read_case(app_client, report, "attending", seconds=8, keys=5)
    csrf = login(app_client, "attending")
    signed = app_client.post(f"/api/reports/{report}/sign", json=edit(2, "Resident."),
                             headers=csrf)  # fmt: skip
    assert signed.status_code == 200

    exported = run_export(settings)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [int(row["session_id"]) for row in rows] == [resident, attending]
    first, second = rows
    assert (first["role"], first["start_source"], first["start_demo_model"]) == (
        "resident", "model", "True"
    )  # fmt: skip
    assert (first["start_revision"], first["result_revision"], first["result_state"]) == (
        "1", "2", "PRELIMINARY"
    )  # fmt: skip
    assert float(first["total_s"]) == pytest.approx(20, abs=0.05)
    assert first["keystrokes"] == "30"
    assert float(first["word_edit_rate"]) > 0, "the resident replaced the model's text"
    assert first["accepted_unchanged"] == "False"
    assert (second["role"], second["start_source"], second["result_state"]) == (
        "attending", "resident", "FINAL"
    )  # fmt: skip
    assert float(second["total_s"]) == pytest.approx(8, abs=0.05)
    assert second["accepted_unchanged"] == "True", "the attending signed the resident's text"
    assert float(second["word_edit_rate"]) == 0

    assert "Canary" not in exported
    assert world["study_uid"] not in exported
    with session_scope(session_factory) as session:
        exported = session.scalar(select(AuditEntry).where(AuditEntry.action == "timing.exported"))
        assert exported is not None
        assert exported.object_id == "2"


def test_a_session_without_a_submission_is_not_credited_with_the_next_ones(
    app_client: TestClient, world: dict[str, Any], settings: Settings
) -> None:
    report = world["report"]
    abandoned = read_case(app_client, report, "resident", seconds=6, keys=4)  # submit failed
    retried = read_case(app_client, report, "resident", seconds=9, keys=7)
    assert retried != abandoned, "an ended session is not resumed"
    csrf = login(app_client, "resident")
    submitted = app_client.post(f"/api/reports/{report}/submit", json=edit(1), headers=csrf)
    assert submitted.status_code == 200
    rows = list(csv.DictReader(io.StringIO(run_export(settings))))
    assert [(int(r["session_id"]), r["result_revision"]) for r in rows] == [
        (abandoned, ""), (retried, "2")
    ]  # fmt: skip
    assert rows[0]["word_edit_rate"] == "", "nothing to compare without a result"


def run_export(settings: Settings, *options: str) -> str:
    """``radraft timing export`` as an operator runs it; its CSV from standard output."""
    completed = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "timing", "export", *options],
        env=settings_to_environment(settings) | {"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_export_since_leaves_earlier_sessions_out(
    app_client: TestClient, world: dict[str, Any], settings: Settings
) -> None:
    read_case(app_client, world["report"], "resident", seconds=5, keys=3)
    exported = run_export(settings, "--since", "2999-01-01")
    assert exported.splitlines()[1:] == []
    assert exported.startswith("session_id,report_id,reader_id,role,")
