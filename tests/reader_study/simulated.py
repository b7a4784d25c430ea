"""A simulated timing study driven through the real API and tables.

Readers, cases (studies with model drafts) and the protocol are created as a department
would (users in the users table, the study through ``POST /api/reader-studies``); each read is
then done through the reader API as the page does it: open the read, open its edit session,
post timing events on the page's clock, submit, give feedback. The reading times come from a
known model (arm effects, reader and case random effects), so the analysis can be checked
against the truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import ReportState, Role, StudyStatus
from radraft.models import Study
from reporting.users import create_user
from tests.reporting.factories import add_revision
from tests.reporting.web_support import PASSWORD, login

EDIT_REASONS = ["false_finding", "missed_finding", "laterality", "poor_style", "not_my_style"]
FINDINGS = [
    "the lungs are clear | no pleural effusion",
    "heart size normal.\nsmall left basilar opacity",
    "no pneumothorax. lines and tubes unchanged",
]


@dataclass
class PlantedStudy:
    """The truth a simulated study was generated from."""

    arm_ratios: dict[str, float]
    baseline_seconds: dict[str, float] = field(
        default_factory=lambda: {"resident": 150.0, "attending": 80.0}
    )
    reader_sd: float = 0.25
    case_sd: float = 0.20
    residual_sd: float = 0.30
    idle_share: float = 0.2
    """Share of reads with a long pause (idle) that active time must leave out."""


def build_world(
    factory: sessionmaker[Session], *, residents: int, attendings: int, cases: int
) -> tuple[list[str], list[str], list[str]]:
    """Users and drafted case studies in the tables; returns (residents, attendings, cases)."""
    resident_names = [f"res{i}" for i in range(residents)]
    attending_names = [f"att{i}" for i in range(attendings)]
    case_uids = [f"1.2.826.0.1.3680043.99.{i}" for i in range(cases)]
    with session_scope(factory) as session:
        create_user(session, "admin", role=Role.ADMIN, password=PASSWORD)
        for name in resident_names:
            create_user(session, name, role=Role.RESIDENT, password=PASSWORD)
        for name in attending_names:
            create_user(session, name, role=Role.ATTENDING, password=PASSWORD)
        for index, uid in enumerate(case_uids):
            study = Study(study_instance_uid=uid, status=StudyStatus.DRAFTED)
            session.add(study)
            session.flush()
            add_revision(session, study, ReportState.DRAFTED, model=True,
                         findings=FINDINGS[index % len(FINDINGS)],
                         impression="no acute cardiopulmonary process")  # fmt: skip
    return resident_names, attending_names, case_uids


def protocol_yaml(
    name: str,
    residents: list[str],
    attendings: list[str],
    cases: list[str],
    *,
    reads_per_reader: int,
    seed: int,
    practice: list[str] | None = None,
) -> str:
    """The CheXagent reader-study design: one third from scratch / resident drafts."""
    practice_line = f"practice_cases: [{', '.join(practice)}]\n" if practice else ""
    return (
        f"name: {name}\nseed: {seed}\n"
        f"readers:\n  resident: [{', '.join(residents)}]\n  attending: [{', '.join(attendings)}]\n"
        f"cases: [{', '.join(cases)}]\n{practice_line}"
        f"reads_per_reader: {{resident: {reads_per_reader}, attending: {reads_per_reader}}}\n"
        "arms:\n  resident: {scratch: 1, model: 2}\n  attending: {resident_scratch: 1, model: 2}\n"
        "equivalence_margin: 0.2\n"
    )


def run_reads(
    app: Any,
    study_name: str,
    planted: PlantedStudy,
    readers: dict[str, str],
    seed: int,
) -> dict[str, int]:
    """Do every read of every reader through the API; returns reads done per reader."""
    rng = np.random.default_rng(seed)
    reader_effect = {name: rng.normal(0, planted.reader_sd) for name in readers}
    case_effects: dict[str, float] = {}
    clients = {}
    for name in readers:
        clients[name] = TestClient(app)
        clients[name].headers.update(login(clients[name], name))
    admin = TestClient(app)
    admin.headers.update(login(admin, "admin"))
    allocation = {
        row["read_id"]: row
        for row in admin.get(f"/api/reader-studies/{study_name}/allocation").json()
    }
    done = dict.fromkeys(readers, 0)
    progress = True
    while progress:
        progress = False
        for name, role in readers.items():  # interleaved, so chained reads get released
            client = clients[name]
            read_id = client.get("/api/reading/next").json()["read_id"]
            if read_id is None:
                continue
            truth = allocation[read_id]
            case_effect = case_effects.setdefault(truth["case"], rng.normal(0, planted.case_sd))
            log_seconds = (
                math.log(planted.baseline_seconds[role])
                + math.log(planted.arm_ratios.get(truth["arm"], 1.0))
                + reader_effect[name]
                + case_effect
                + rng.normal(0, planted.residual_sd)
            )
            one_read(client, read_id, math.exp(log_seconds), rng, planted.idle_share)
            done[name] += 1
            progress = True
    return done


def one_read(
    client: TestClient,
    read_id: int,
    active_seconds: float,
    rng: np.random.Generator,
    idle_share: float,
) -> None:
    """Open, edit for ``active_seconds`` of activity (maybe with an idle pause), submit."""
    view = client.get(f"/api/reading/{read_id}")
    assert view.status_code == 200, view.text
    body = view.json()
    session = client.post(f"/api/reading/{read_id}/session").json()
    events: list[dict[str, Any]] = [
        {"type": "opened", "client_ms": 0.0},
        {"type": "draft_shown", "client_ms": 300.0},
        {"type": "images_rendered", "client_ms": 600.0},
    ]
    pause = float(rng.uniform(60, 120)) if rng.random() < idle_share else 0.0
    idle_at = active_seconds / 2

    def page_ms(active: float) -> float:
        """Where a moment of active time falls on the page's clock (after the pause, if any)."""
        return (active + (pause if pause and active > idle_at else 0.0)) * 1000

    first_input = min(5.0, active_seconds / 4)
    events.append({"type": "first_input", "client_ms": page_ms(first_input)})
    clock = first_input
    while clock < active_seconds:
        clock = min(clock + 8.0, active_seconds)
        events.append({"type": "input", "client_ms": page_ms(clock),
                       "payload": {"keystrokes": 12, "inserted": 10, "deleted": 2}})  # fmt: skip
    if pause:
        events.append({"type": "idle_start", "client_ms": idle_at * 1000})
        events.append({"type": "idle_end", "client_ms": (idle_at + pause) * 1000})
    findings = body["findings"] or "Lungs clear."
    if rng.random() < 0.7:
        findings += " Mild bibasilar atelectasis."
    impression = body["impression"] or "No acute disease."
    submitted = client.post(f"/api/reading/{read_id}/submit",
                            json={"findings": findings, "impression": impression})  # fmt: skip
    assert submitted.status_code == 200, submitted.text
    events.append({"type": "submit", "client_ms": page_ms(active_seconds) + 1})
    stored = client.post(f"/api/sessions/{session['id']}/events", json=events)
    assert stored.status_code == 200, stored.text
    feedback: dict[str, Any] = {"free_text": ""}
    if body["draft_label"]:
        feedback |= {
            "edit_reasons": list(rng.choice(EDIT_REASONS, size=2, replace=False)),
            "helps_answer_indication": int(rng.integers(1, 6)),
            "efficiency": str(rng.choice(["no", "interpretation", "writing"])),
            "thinks_model_wrote_draft": bool(rng.random() < 0.5),
        }
    answered = client.post(f"/api/reading/{read_id}/feedback", json=feedback)
    assert answered.status_code == 200, answered.text
