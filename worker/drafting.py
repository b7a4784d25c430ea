"""Drafting a study: the job's state machine around the model call.

No model runtime is installed yet (that is the worker issue's next step), so a delivered job is
recorded as ACKNOWLEDGED: the worker really received and processed the message, and nothing
pretends a draft exists.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import JobStatus, StudyStatus
from radraft.logs import log_event
from radraft.models import DraftingJob, Study

logger = logging.getLogger(__name__)

MAX_DELIVERIES = 5
"""A job delivered this many times without finishing is failed: it may be killing workers."""

FINISHED_STATUSES = frozenset(
    {JobStatus.ACKNOWLEDGED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SUPERSEDED}
)


def record_delivery(session: Session, job_id: int, *, worker: str, now: datetime) -> bool:
    """Count one delivery of a job; returns False if there is nothing (more) to do.

    The counter lives in the database so that a study which crashes workers (and is redelivered
    because of ``reject_on_worker_lost``) stops after ``MAX_DELIVERIES`` instead of looping.
    """
    job = session.scalar(select(DraftingJob).where(DraftingJob.id == job_id).with_for_update())
    if job is None or job.status in FINISHED_STATUSES:
        return False
    job.attempts += 1
    job.worker = worker
    if job.attempts > MAX_DELIVERIES:
        job.status = JobStatus.FAILED
        job.last_error = f"delivered {job.attempts - 1} times without finishing"
        job.finished_at = now
        _set_study_status(session, job, StudyStatus.FAILED)
        log_event(logger, "worker.job_dead_lettered", logging.ERROR, job_id=job.id)
        return False
    job.status = JobStatus.RUNNING
    job.started_at = now
    _set_study_status(session, job, StudyStatus.DRAFTING)
    return True


def acknowledge_without_model(session: Session, job_id: int, *, now: datetime) -> None:
    """Close a job that ran while no model runtime is installed."""
    job = session.get(DraftingJob, job_id)
    if job is None or job.status != JobStatus.RUNNING:
        return
    job.status = JobStatus.ACKNOWLEDGED
    job.finished_at = now
    job.last_error = None
    _set_study_status(session, job, StudyStatus.QUEUED)
    log_event(logger, "worker.job_acknowledged", job_id=job.id)


def _set_study_status(session: Session, job: DraftingJob, status: StudyStatus) -> None:
    study = session.get(Study, job.study_id)
    if study is not None and study.content_version == job.content_version:
        study.status = status
