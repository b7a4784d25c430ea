"""``GET /metrics``: queue depths, backlogs and drafting times for Prometheus.

A PACS administrator needs to see at a glance whether studies are waiting for a worker, whether
SRs and ORUs are piling up for an unreachable PACS or RIS, how long drafting takes, and how
much room the spool has left. Every figure but the spool's free space is computed from the
database, so one scrape of any web process sees the whole deployment. Counts, durations and
bytes only: no identifier of a patient, study or user.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select

from radraft.enums import (
    AuditAction,
    BackupKind,
    JobStatus,
    OutboxChannel,
    OutboxStatus,
    StudyStatus,
)
from radraft.free_space import free_bytes
from radraft.models import AuditEntry, DraftingJob, Instance, OutboxMessage, ReportRevision, Study
from radraft.report_outputs import channels_without_destination
from radraft.settings import Settings
from radraft.timeutil import utcnow
from reporting.web.deps import DbSession
from reporting.web.security import reader

router = APIRouter(tags=["operations"], dependencies=[Depends(reader)])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
RECENT = timedelta(hours=1)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, session: DbSession) -> PlainTextResponse:
    """The Prometheus text exposition of radraft's state."""
    now = utcnow()
    lines: list[str] = []
    _spool(lines, request.app.state.settings)
    _spool_contents(lines, session)
    studies = dict(session.execute(select(Study.status, func.count()).group_by(Study.status)).all())
    _gauge(lines, "radraft_studies", "Studies by workflow status.",
           {(("status", s.value),): studies.get(s, 0) for s in StudyStatus})  # fmt: skip
    jobs = dict(
        session.execute(select(DraftingJob.status, func.count()).group_by(DraftingJob.status)).all()
    )
    _gauge(lines, "radraft_drafting_jobs", "Drafting jobs by status.",
           {(("status", s.value),): jobs.get(s, 0) for s in JobStatus})  # fmt: skip
    oldest_job = session.scalar(
        select(func.min(DraftingJob.created_at)).where(DraftingJob.status == JobStatus.QUEUED)
    )
    _gauge(lines, "radraft_drafting_oldest_queued_seconds",
           "Age of the oldest drafting job no worker has taken (0: none waiting).",
           {(): _age(now, oldest_job)})  # fmt: skip
    _outbox(lines, session, now, channels_without_destination(request.app.state.settings))
    _recent_drafting(lines, session, now)
    conflicts = session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.action == AuditAction.IDENTITY_CONFLICT)
    )
    _gauge(lines, "radraft_identity_conflicts",
           "Instances refused since installation because their UIDs are known with another"
           " patient, study, series or SOP class (see the audit log).",
           {(): conflicts or 0})  # fmt: skip
    disputed = session.scalar(
        select(func.count())
        .select_from(Study)
        .where(Study.identity_disputed_at.is_not(None), Study.withdrawn_at.is_(None))
    )
    _gauge(lines, "radraft_studies_identity_disputed",
           "Studies the sender has since sent under another Patient ID, held from signing and"
           " delivery until confirmed or withdrawn (radraft study confirm-identity, withdraw).",
           {(): disputed or 0})  # fmt: skip
    withdrawn = session.scalar(
        select(func.count()).select_from(Study).where(Study.withdrawn_at.is_not(None))
    )
    _gauge(lines, "radraft_studies_withdrawn",
           "Studies whose reports were withdrawn as another patient's (radraft study withdraw).",
           {(): withdrawn or 0})  # fmt: skip
    other_patient = session.scalar(
        select(func.count(func.distinct(AuditEntry.object_id))).where(
            AuditEntry.action == AuditAction.ORDER_OF_OTHER_PATIENT
        )
    )
    _gauge(lines, "radraft_orders_of_other_patients",
           "Studies whose accession number found an HL7 order naming another patient, which"
           " was not used (see the audit log, action order.other_patient).",
           {(): other_patient or 0})  # fmt: skip
    _backups(lines, session)
    return PlainTextResponse("\n".join(lines) + "\n", media_type=PROMETHEUS_TEXT)


def _backups(lines: list[str], session: DbSession) -> None:
    newest = {
        kind: session.scalar(
            select(func.max(AuditEntry.at)).where(
                AuditEntry.action == AuditAction.BACKUP_CREATED,
                AuditEntry.details["kind"].as_string() == kind.value,
            )
        )
        for kind in BackupKind
    }
    _gauge(lines, "radraft_last_backup_timestamp_seconds",
           "When the newest backup was made (radraft backup create; Unix time, 0: never):"
           " kind full (database and files) or files_only (--files-only).",
           {(("kind", kind.value),): _timestamp(at) for kind, at in newest.items()})  # fmt: skip


def _timestamp(at: datetime | None) -> float:
    return 0.0 if at is None else at.timestamp()


def _outbox(
    lines: list[str], session: DbSession, now: datetime, waiting: frozenset[OutboxChannel]
) -> None:
    """Backlogs per channel. Rows of a channel with no destination configured (``waiting``)
    are not late deliveries: they are counted apart, so the age alert means a peer that does
    not answer, not a site that has no RIS link."""
    counts = {
        (channel, status): count
        for channel, status, count in session.execute(
            select(OutboxMessage.channel, OutboxMessage.status, func.count()).group_by(
                OutboxMessage.channel, OutboxMessage.status
            )
        ).all()
    }
    _gauge(lines, "radraft_outbox_messages",
           "Outbox rows by channel (celery: drafting jobs; dicom: SRs; hl7: ORUs) and status.",
           {(("channel", c.value), ("status", s.value)): counts.get((c, s), 0)
            for c in OutboxChannel for s in OutboxStatus})  # fmt: skip
    oldest = dict(
        session.execute(
            select(OutboxMessage.channel, func.min(OutboxMessage.created_at))
            .where(OutboxMessage.status == OutboxStatus.PENDING)
            .group_by(OutboxMessage.channel)
        ).all()
    )
    ages = {
        (("channel", c.value),): 0.0 if c in waiting else _age(now, oldest.get(c))
        for c in OutboxChannel
    }
    _gauge(lines, "radraft_outbox_oldest_pending_seconds",
           "Age of the oldest undelivered row per channel with a destination (0: nothing "
           "waiting).", ages)  # fmt: skip
    _gauge(lines, "radraft_outbox_awaiting_destination",
           "Pending rows of a channel no destination is configured for (RADRAFT_SR_DESTINATION,"
           " RADRAFT_HL7_DESTINATIONS): sent once one is.",
           {(("channel", c.value),): counts.get((c, OutboxStatus.PENDING), 0) if c in waiting
            else 0 for c in OutboxChannel})  # fmt: skip


def _spool(lines: list[str], settings: Settings) -> None:
    """Free space on the spool's disk, as this process sees it (the web app runs where the spool
    is, as DICOMweb reads it). The gateway refuses every instance once the free space is below
    ``RADRAFT_SPOOL_MIN_FREE_BYTES``, and only spool retention (if set) ever frees space, so
    this is the alert that comes before radraft stops receiving studies."""
    try:
        free = float(free_bytes(settings.spool_dir))
    except OSError:  # no spool here yet (nothing received), or not this host's to see
        free = float("nan")
    _gauge(lines, "radraft_spool_free_bytes",
           "Bytes free on the spool's disk, seen from this web process (NaN: no spool here).",
           {(): free})  # fmt: skip
    _gauge(lines, "radraft_spool_min_free_bytes",
           "RADRAFT_SPOOL_MIN_FREE_BYTES: below it the gateway refuses instances (0xA700).",
           {(): settings.spool_min_free_bytes})  # fmt: skip
    target = settings.spool_target_free_bytes
    _gauge(lines, "radraft_spool_target_free_bytes",
           "RADRAFT_SPOOL_TARGET_FREE_BYTES: below it the gateway purges settled studies for "
           "space (NaN: not set).",
           {(): float("nan") if target is None else target})  # fmt: skip


def _spool_contents(lines: list[str], session: DbSession) -> None:
    """Instances whose files the spool holds and those spool retention deleted, and the bytes
    held: how much retention frees, and what the spool would hold without it."""
    held = Instance.purged_at.is_(None)
    counts = dict(session.execute(select(held, func.count()).group_by(held)).all())
    held_bytes = session.scalar(select(func.coalesce(func.sum(Instance.size_bytes), 0)).where(held))
    _gauge(lines, "radraft_spool_instances",
           "Instances by whether the spool holds the file (purged: deleted by retention).",
           {(("state", "held"),): counts.get(True, 0),
            (("state", "purged"),): counts.get(False, 0)})  # fmt: skip
    _gauge(lines, "radraft_spool_held_bytes", "Bytes of the instance files the spool holds.",
           {(): held_bytes or 0})  # fmt: skip


def _recent_drafting(lines: list[str], session: DbSession, now: datetime) -> None:
    """Wall time from a worker taking a job to its draft being stored, over the last hour."""
    finished = session.execute(
        select(DraftingJob.started_at, DraftingJob.finished_at).where(
            DraftingJob.status == JobStatus.SUCCEEDED, DraftingJob.finished_at >= now - RECENT
        )
    ).all()
    seconds = sorted(
        (end - start).total_seconds() for start, end in finished if start is not None and end
    )
    _gauge(lines, "radraft_drafts_last_hour", "Drafts stored in the last hour.",
           {(): len(seconds)})  # fmt: skip
    quantiles = {(("quantile", q),): _quantile(seconds, float(q)) for q in ("0.5", "0.9")}
    _gauge(lines, "radraft_drafting_seconds_last_hour",
           "Seconds from a worker taking a job to its stored draft, last hour (NaN: none).",
           quantiles)  # fmt: skip
    by_model = session.execute(
        select(ReportRevision.model_name, ReportRevision.demo_model, func.count())
        .where(
            ReportRevision.drafting_job_id.is_not(None),
            ReportRevision.created_at >= now - RECENT,
        )
        .group_by(ReportRevision.model_name, ReportRevision.demo_model)
    ).all()
    _gauge(lines, "radraft_drafts_by_model_last_hour",
           "Drafts stored in the last hour by model; demo=\"true\" is a random-weight model that"
           " must never draft in clinical use.",
           {(("model", name or "unknown"), ("demo", "true" if demo else "false")): count
            for name, demo, count in by_model})  # fmt: skip


def _gauge(
    lines: list[str], name: str, help_text: str, samples: Mapping[tuple[Any, ...], float]
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")
    for labels, value in samples.items():
        lines.append(f"{name}{_labels(labels)} {_number(value)}")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    """A label value as the exposition format wants it (backslash, quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    percentiles = statistics.quantiles(values, n=100, method="inclusive")
    return percentiles[round(q * 100) - 1]
