"""``GET /metrics``: what an operator's Prometheus sees, and that it shows no PHI."""

from __future__ import annotations

import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import AuditAction, JobStatus, OutboxChannel, OutboxStatus, ReportState
from radraft.models import AuditEntry, DraftingJob, OutboxMessage, ReportRevision, Study
from radraft.settings import MllpDestination, Settings
from radraft.timeutil import utcnow
from reporting.web.app import create_app

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])
TOKEN = {"Authorization": "Bearer test-service-token"}
SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def scrape(client: TestClient) -> dict[tuple[str, str], float]:
    """(name, labels) -> value; every sample line must parse and carry HELP and TYPE."""
    response = client.get("/metrics", headers=TOKEN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    declared = set()
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, labels, value = match.groups()
        assert name in declared, f"{name} has no TYPE line"
        samples[(name, labels or "")] = float(value)
    return samples


@pytest.fixture
def connected_client(settings: Settings) -> Iterator[TestClient]:
    """The web app of a site with a RIS link (its delivery is not run here)."""
    linked = settings.model_copy(update={"hl7_destinations": [MllpDestination("127.0.0.1", 9)]})
    with TestClient(create_app(linked)) as client:
        yield client


def test_metrics_count_queues_backlogs_and_drafting_times(
    connected_client: TestClient, world: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    app_client = connected_client
    now = utcnow()
    with session_scope(session_factory) as session:
        study = session.scalar(select(Study))
        assert study is not None
        study.patient_name = "Canary^Metrics"

        def ago(seconds: float) -> Any:
            return now - timedelta(seconds=seconds)

        def job(version: int, status: JobStatus, **times: Any) -> DraftingJob:
            return DraftingJob(study_id=study.id, content_version=version, status=status, **times)

        session.add_all([
            job(7, JobStatus.QUEUED, created_at=ago(120)),
            job(8, JobStatus.SUCCEEDED, started_at=ago(600), finished_at=ago(597)),
            job(9, JobStatus.SUCCEEDED, started_at=ago(300), finished_at=ago(295)),
            job(10, JobStatus.SUCCEEDED, started_at=ago(3 * 3600), finished_at=ago(2 * 3600)),
            OutboxMessage(channel=OutboxChannel.HL7, idempotency_key="metrics-old", payload={},
                          status=OutboxStatus.PENDING, created_at=ago(900)),
            OutboxMessage(channel=OutboxChannel.DICOM, idempotency_key="metrics-failed",
                          payload={}, status=OutboxStatus.FAILED),
            *(AuditEntry(actor="dicom:MODALITY", action=AuditAction.IDENTITY_CONFLICT,
                         object_type="instance", object_id=str(n), details={"differs": []})
              for n in range(3)),
            AuditEntry(actor="user:1", action="report.viewed", object_type="report",
                       object_id="1"),
        ])  # fmt: skip
        session.flush()
        drafted_by = session.scalar(select(DraftingJob).where(DraftingJob.content_version == 9))
        assert drafted_by is not None
        session.add(ReportRevision(report_id=world["report"], number=9, state=ReportState.DRAFTED,
                                   drafting_job_id=drafted_by.id, model_name='tiny "demo"',
                                   demo_model=True))  # fmt: skip
    with session_scope(session_factory) as session:
        rows = Counter((row.channel, row.status) for row in session.scalars(select(OutboxMessage)))
        jobs = Counter(session.scalars(select(DraftingJob.status)))

    samples = scrape(app_client)
    for (channel, status), count in rows.items():
        key = ("radraft_outbox_messages", f'channel="{channel}",status="{status}"')
        assert samples[key] == count, key
    assert samples[("radraft_outbox_messages", 'channel="dicom",status="failed"')] >= 1
    assert sum(v for (n, _), v in samples.items() if n == "radraft_outbox_messages") == sum(
        rows.values()
    )
    for job_status in JobStatus:
        assert samples[("radraft_drafting_jobs", f'status="{job_status}"')] == jobs[job_status]
    assert samples[("radraft_studies", 'status="drafted"')] == 1
    assert 119 <= samples[("radraft_drafting_oldest_queued_seconds", "")] <= 180
    assert 899 <= samples[("radraft_outbox_oldest_pending_seconds", 'channel="hl7"')] <= 960
    assert samples[("radraft_outbox_oldest_pending_seconds", 'channel="celery"')] == 0
    assert samples[("radraft_outbox_awaiting_destination", 'channel="hl7"')] == 0
    listed = app_client.get("/api/outbox", headers=TOKEN).json()
    assert {row["waits_for"] for row in listed if row["channel"] == "hl7"} == {None}
    # last hour only: the 3 s and 5 s drafts, not the one from two hours ago
    assert samples[("radraft_drafts_last_hour", "")] == 2
    median = samples[("radraft_drafting_seconds_last_hour", 'quantile="0.5"')]
    assert median == pytest.approx(4.0, abs=0.01)
    p90 = samples[("radraft_drafting_seconds_last_hour", 'quantile="0.9"')]
    assert 4.0 < p90 <= 5.0
    assert (
        samples[("radraft_drafts_by_model_last_hour", 'model="tiny \\"demo\\"",demo="true"')] == 1
    )

    assert samples[("radraft_identity_conflicts", "")] == 3

    text = app_client.get("/metrics", headers=TOKEN).text
    assert "Canary" not in text
    assert world["study_uid"] not in text


def test_outputs_for_a_peer_not_configured_wait_apart_from_late_deliveries(
    app_client: TestClient, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """A site without a RIS link: its ORUs wait for one, and the age alert stays quiet."""
    assert not settings.hl7_destinations
    with session_scope(session_factory) as session:
        session.add_all(
            OutboxMessage(channel=OutboxChannel.HL7, idempotency_key=f"unlinked-{n}", payload={},
                          status=OutboxStatus.PENDING, created_at=utcnow() - timedelta(days=30))
            for n in range(3)
        )  # fmt: skip
    samples = scrape(app_client)
    assert samples[("radraft_outbox_oldest_pending_seconds", 'channel="hl7"')] == 0
    assert samples[("radraft_outbox_awaiting_destination", 'channel="hl7"')] == 3
    assert samples[("radraft_outbox_messages", 'channel="hl7",status="pending"')] == 3
    listed = app_client.get("/api/outbox", headers=TOKEN).json()
    assert {row["waits_for"] for row in listed if row["channel"] == "hl7"} == {
        "RADRAFT_HL7_DESTINATIONS"
    }


def test_metrics_need_the_service_token_or_a_login(app_client: TestClient) -> None:
    assert app_client.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert app_client.get("/metrics", headers=wrong).status_code == 401
    samples = scrape(app_client)
    assert math.isnan(samples[("radraft_drafting_seconds_last_hour", 'quantile="0.5"')])
    assert samples[("radraft_drafts_last_hour", "")] == 0
    assert not [name for name, _ in samples if name == "radraft_drafts_by_model_last_hour"]


def test_metrics_show_the_spool_disks_free_space_and_the_gateways_floor(
    app_client: TestClient, settings: Settings
) -> None:
    """A full spool disk makes the gateway refuse every instance, and only purges (retention,
    the target free space) free it: the free space is the figure to alert on."""
    if settings.spool_dir.exists():
        shutil.rmtree(settings.spool_dir)
    samples = scrape(app_client)
    assert math.isnan(samples[("radraft_spool_free_bytes", "")]), "no spool on this host yet"
    assert samples[("radraft_spool_min_free_bytes", "")] == settings.spool_min_free_bytes
    assert math.isnan(samples[("radraft_spool_target_free_bytes", "")]), "not set"
    settings.spool_dir.mkdir(parents=True)
    free = scrape(app_client)[("radraft_spool_free_bytes", "")]
    stats = os.statvfs(settings.spool_dir)
    assert free > 0
    assert abs(free - stats.f_bavail * stats.f_frsize) < 256 << 20, "this disk's free space"
