"""Study completion: once a study has been stable for ``stable_seconds``, decide and queue.

The check reads the database, not memory, so it survives restarts and works with several
gateway processes: a study is claimed with a conditional update of ``completed_version``.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.redelivery import (
    QueueDepth,
    publish_draft_message,
    redeliver_unclaimed_jobs,
    requeue_lost_jobs,
)
from gateway.selection import study_eligibility
from radraft.db import session_scope
from radraft.enums import JobStatus, ReportState, StudyStatus
from radraft.logs import log_event
from radraft.models import DraftingJob, EditSession, Instance, Report, Study
from radraft.study_status import STUDY_STATUS_FOR_REPORT_STATE, can_move, move_study
from radraft.timeutil import Clock, utcnow

logger = logging.getLogger(__name__)


def complete_stable_studies(
    session_factory: sessionmaker[Session],
    *,
    stable_seconds: float,
    clock: Clock = utcnow,
    limit: int = 100,
) -> int:
    """Decide every study stable since ``stable_seconds``; returns how many were decided."""
    with session_scope(session_factory) as session:
        now = clock()
        cutoff = now - timedelta(seconds=stable_seconds)
        candidates = session.scalars(
            select(Study)
            .where(
                Study.content_version > Study.completed_version,
                Study.last_received_at <= cutoff,
            )
            .order_by(Study.last_received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        decided = 0
        for study in candidates:
            if _claim(session, study):
                decide_study(session, study, now=now)
                decided += 1
        return decided


def _claim(session: Session, study: Study) -> bool:
    """Set ``completed_version`` only if no other process did; False if someone else won."""
    result = session.execute(
        update(Study)
        .where(Study.id == study.id, Study.completed_version == study.completed_version)
        .values(completed_version=study.content_version)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.refresh(study, ["completed_version"])
    return True


def decide_study(session: Session, study: Study, *, now: datetime) -> None:
    """Classify a complete study and, if eligible, queue one drafting job through the outbox."""
    instances = session.scalars(select(Instance).where(Instance.study_id == study.id)).all()
    eligibility = study_eligibility(
        (instance.is_chest, instance.view_position, instance.classification_reason)
        for instance in instances
    )
    study.eligible = eligibility.eligible
    study.eligibility_reason = eligibility.reason
    study.completed_at = now
    if not eligibility.eligible:
        _supersede_queued_jobs(session, study)  # a rejection note took its images away
        report = session.scalar(select(Report).where(Report.study_id == study.id))
        target = (
            STUDY_STATUS_FOR_REPORT_STATE[ReportState(report.state)]
            if report is not None  # rejected images of a drafted study: the draft stays
            else StudyStatus.NOT_ELIGIBLE
        )
        if can_move(StudyStatus(study.status), target):
            move_study(study, target)
        # else: a study somebody already reports on keeps its report's status.
        log_event(logger, "gateway.study_not_eligible", study_id=study.id)
        return
    editing_started = session.scalar(
        select(exists().where(EditSession.report_id == Report.id, Report.study_id == study.id))
    )
    if editing_started:
        report = session.scalar(select(Report).where(Report.study_id == study.id))
        if report is not None:
            move_study(study, STUDY_STATUS_FOR_REPORT_STATE[ReportState(report.state)])
        study.eligibility_reason = (
            f"{eligibility.reason}; new images arrived after editing started, no new draft"
        )
        log_event(logger, "gateway.study_redraft_skipped", study_id=study.id)
        return
    _supersede_queued_jobs(session, study)
    job = DraftingJob(study_id=study.id, content_version=study.content_version)
    session.add(job)
    session.flush()
    publish_draft_message(session, job)
    move_study(study, StudyStatus.QUEUED)
    log_event(logger, "gateway.study_queued", study_id=study.id, job_id=job.id)


def _supersede_queued_jobs(session: Session, study: Study) -> None:
    """Jobs for the study's earlier content, not taken yet, will never be."""
    for older in session.scalars(
        select(DraftingJob).where(
            DraftingJob.study_id == study.id, DraftingJob.status == JobStatus.QUEUED
        )
    ):
        older.status = JobStatus.SUPERSEDED


def run_completion_until(
    stop: threading.Event,
    session_factory: sessionmaker[Session],
    *,
    stable_seconds: float,
    poll_seconds: float,
    job_lease_seconds: float,
    queue_depth: QueueDepth | None = None,
) -> None:
    """Check for stable studies and lost jobs until ``stop`` is set; outages are retried.

    Unclaimed jobs are looked for every quarter lease, and only with a ``queue_depth`` to ask
    the broker (a gateway whose publisher is not a broker has none).
    """
    next_unclaimed_check = time.monotonic()
    while not stop.is_set():
        try:
            complete_stable_studies(session_factory, stable_seconds=stable_seconds)
            requeue_lost_jobs(session_factory, lease_seconds=job_lease_seconds)
            if queue_depth is not None and time.monotonic() >= next_unclaimed_check:
                next_unclaimed_check = time.monotonic() + job_lease_seconds / 4
                redeliver_unclaimed_jobs(
                    session_factory, queue_depth, lease_seconds=job_lease_seconds
                )
        except Exception as error:
            log_event(logger, "gateway.completion_error", logging.ERROR, error=type(error).__name__)
        stop.wait(poll_seconds)
