"""Drafting a study: job bookkeeping, model inputs, and storing the draft idempotently.

A job runs in three steps so that no database transaction stays open while the model works:
take the job (count the delivery, read the inputs), generate, store the draft and close the job
in one transaction. Running a job twice stores one draft.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from radraft.enums import AuditAction, JobStatus, ReportState, StudyStatus
from radraft.errors import RadraftError
from radraft.imaging import Candidate, UnusableImageError, choose_images, load_for_model
from radraft.logs import log_event
from radraft.models import AuditEntry, DraftingJob, Instance, ReportRevision, Series, Study
from radraft.orders import indication_for
from radraft.reports import (
    ModelAuthorship,
    NewRevision,
    UnknownStudyError,
    append_revision,
    lock_report,
    lock_study,
)
from radraft.study_status import PEOPLE_OWN, move_study
from worker.batcher import Batcher
from worker.prompts import findings_instruction, impression_instruction
from worker.runtimes.base import DEMO_LABEL, GenerationRequest, ModelInfo
from worker.study_files import InstanceLocation, StudyFiles

logger = logging.getLogger(__name__)

MAX_DELIVERIES = 5
"""A job delivered this many times without finishing is failed: it may be killing workers."""
MAX_IMAGES = 2
"""CheXagent reads up to two images: the frontal first, the lateral second."""

WITHDRAWN_STUDY = "not drafted: the study's reports were withdrawn as another patient's"
FINISHED_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SUPERSEDED})


class NoUsableImageError(RadraftError):
    """No image of the study can be given to the model: a permanent failure."""


@dataclass(frozen=True)
class DraftInputs:
    """What the model step needs, read in the first transaction."""

    job_id: int
    candidates: tuple[Candidate, ...]
    indication: str
    locations: dict[str, InstanceLocation] = field(default_factory=dict)
    """Where each candidate's file is, by SOP Instance UID."""


@dataclass(frozen=True)
class DraftOutcome:
    """What the model produced and how."""

    findings: str
    impression: str
    prompt: str
    used_images: tuple[str, ...]
    skipped_images: tuple[tuple[str, str], ...]
    generation: dict[str, Any] = field(default_factory=dict)


def _lock_job(session: Session, job_id: int) -> tuple[DraftingJob, Study] | None:
    """The job and its study, locked in the writers' order (study first); None if gone."""
    study_id = session.scalar(select(DraftingJob.study_id).where(DraftingJob.id == job_id))
    if study_id is None:
        return None
    try:
        study = lock_study(session, study_id)
    except UnknownStudyError:
        return None
    job = session.scalar(
        select(DraftingJob)
        .where(DraftingJob.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (job, study) if job is not None else None


def take_job(
    session: Session,
    job_id: int,
    *,
    worker: str,
    now: datetime,
    lease_seconds: float,
    is_retry: bool = False,
) -> DraftInputs | None:
    """Count one delivery and read the inputs; None if there is nothing (more) to do.

    The delivery counter lives in the database so that a study which crashes workers (and is
    redelivered because of ``reject_on_worker_lost``) stops after ``MAX_DELIVERIES``. A second
    copy of the message (the gateway publishes one for a job that looks lost, and it may just
    have been slow to claim) finds the job running with a live heartbeat and leaves it alone;
    Celery's own retry of this delivery (``is_retry``) takes it back.
    """
    locked = _lock_job(session, job_id)
    if locked is None or locked[0].status in FINISHED_STATUSES:
        return None
    job, study = locked
    if study.withdrawn_at is not None:
        job.status = JobStatus.SUPERSEDED
        job.last_error = WITHDRAWN_STUDY
        job.finished_at = now
        log_event(logger, "worker.study_withdrawn", job_id=job.id)
        return None
    if (
        job.status == JobStatus.RUNNING
        and not is_retry
        and job.heard_from_since(now - timedelta(seconds=lease_seconds))
    ):
        log_event(logger, "worker.job_already_running", job_id=job.id)
        return None
    job.attempts += 1
    job.worker = worker
    if job.attempts > MAX_DELIVERIES:
        fail_job(session, job_id, f"delivered {job.attempts - 1} times without finishing", now=now)
        return None
    job.status = JobStatus.RUNNING
    job.started_at = now
    job.heartbeat_at = now
    _set_study_status(study, job, StudyStatus.DRAFTING)
    rows = session.execute(
        select(Instance, Series.series_instance_uid)
        .join(Series, Series.id == Instance.series_id)
        .where(Instance.study_id == study.id, Instance.is_chest.is_(True))
        .order_by(Instance.id)
    ).all()
    candidates = tuple(
        Candidate(i.sop_instance_uid, Path(i.spool_path), i.view_position) for i, _ in rows
    )
    locations = {
        i.sop_instance_uid: InstanceLocation(
            study.study_instance_uid,
            series_uid,
            i.sop_instance_uid,
            Path(i.spool_path),
            i.size_bytes,
            i.origin,
            purged=i.purged_at is not None,
        )
        for i, series_uid in rows
    }
    indication = indication_for(session, study)
    if indication.order_of_other_patient:
        _record_order_of_other_patient(session, study, job, worker, now)
    return DraftInputs(
        job_id=job.id,
        candidates=candidates,
        indication=indication.text,
        locations=locations,
    )


def _record_order_of_other_patient(
    session: Session, study: Study, job: DraftingJob, worker: str, now: datetime
) -> None:
    """Say that the study's accession number found another patient's order, which was left out
    of the prompt (and is left out of the SR and ORU): the RIS or the modality holds a wrong
    accession number or Patient ID, and someone must put it right. No identifier is logged."""
    session.add(
        AuditEntry(
            at=now,
            actor=f"worker:{worker}",
            action=AuditAction.ORDER_OF_OTHER_PATIENT,
            object_type="study",
            object_id=str(study.id),
            details={"job_id": job.id},
        )
    )
    log_event(
        logger, "worker.order_of_other_patient", logging.WARNING, study_id=study.id, job_id=job.id
    )


def generate_draft(
    inputs: DraftInputs,
    *,
    batcher: Batcher,
    files: StudyFiles,
    image_size: int,
    max_new_tokens: int,
) -> DraftOutcome:
    """Prepare the images and run findings, then impression, through the batcher.

    Raises
    ------
    NoUsableImageError
        If none of the study's chest images can be decoded.
    """
    images: list[np.ndarray] = []
    used: list[str] = []
    skipped: list[tuple[str, str]] = []
    started = time.perf_counter()
    for candidate in choose_images(list(inputs.candidates)):
        if len(images) == MAX_IMAGES:
            break
        try:
            path = files.path_of(inputs.locations[candidate.sop_instance_uid])
            images.append(load_for_model(path, size=image_size))
            used.append(candidate.sop_instance_uid)
        except UnusableImageError as error:
            skipped.append((candidate.sop_instance_uid, error.reason))
    preprocess_seconds = time.perf_counter() - started
    if not images:
        reasons = "; ".join(sorted({reason for _, reason in skipped})) or "no chest image"
        raise NoUsableImageError(f"no usable image: {reasons}")
    findings_request = GenerationRequest(
        tuple(images), findings_instruction(inputs.indication), max_new_tokens
    )
    findings = batcher.generate(findings_request)
    impression = batcher.generate(
        GenerationRequest(tuple(images), impression_instruction(findings.text), max_new_tokens)
    )
    return DraftOutcome(
        findings=findings.text,
        impression=impression.text,
        prompt=findings.prompt,
        used_images=tuple(used),
        skipped_images=tuple(skipped),
        generation={
            "indication": inputs.indication,
            "max_new_tokens": max_new_tokens,
            "findings": _counts(findings),
            "impression": _counts(impression),
            "impression_prompt": impression.prompt,
            "preprocess_seconds": round(preprocess_seconds, 4),
            "images": list(used),
            "skipped_images": [list(item) for item in skipped],
        },
    )


def _counts(result: Any) -> dict[str, Any]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "generated_tokens": result.generated_tokens,
        "seconds": round(result.seconds, 4),
        "batch_size": result.batch_size,
    }


def label_demo(text: str, *, demo: bool) -> str:
    """Demo drafts say so in their own text, so every output derived from them says it too."""
    return f"[{DEMO_LABEL.upper()}] {text}" if demo else text


def store_draft(
    session: Session, job_id: int, outcome: DraftOutcome, info: ModelInfo, *, now: datetime
) -> ReportRevision | None:
    """Store the draft and close the job in one transaction; a second run stores nothing."""
    locked = _lock_job(session, job_id)
    if locked is None or locked[0].status in FINISHED_STATUSES:
        return None
    job, study = locked
    if study.withdrawn_at is not None:  # withdrawn while the model wrote
        job.status = JobStatus.SUPERSEDED
        job.finished_at = now
        job.last_error = WITHDRAWN_STUDY
        return None
    report = lock_report(session, study.id)
    if report is not None and report.state != ReportState.DRAFTED:
        job.status = JobStatus.SUPERSEDED
        job.finished_at = now
        job.last_error = f"report is {report.state}; a new draft would overwrite human work"
        return None
    generation = {**outcome.generation, "decoding": info.decoding, "backend": info.backend}
    revision = append_revision(
        session,
        study,
        report,
        NewRevision(
            ReportState.DRAFTED,
            label_demo(outcome.findings, demo=info.demo),
            label_demo(outcome.impression, demo=info.demo),
            model=ModelAuthorship(
                name=info.name,
                revision=info.revision,
                weights_hash=info.weights_hash,
                demo=info.demo,
                prompt=outcome.prompt,
                generation=generation,
                drafting_job_id=job.id,
            ),
        ),
        now=now,
        update_study_status=study.content_version == job.content_version,
    )
    job.status = JobStatus.SUCCEEDED
    job.finished_at = now
    job.last_error = None
    log_event(logger, "worker.draft_stored", job_id=job.id, revision_id=revision.id)
    return revision


def renew_heartbeat(session: Session, job_id: int, *, now: datetime) -> None:
    """Tell the lost-job check that this job's worker is alive."""
    session.execute(
        update(DraftingJob)
        .where(DraftingJob.id == job_id, DraftingJob.status == JobStatus.RUNNING)
        .values(heartbeat_at=now)
    )


def fail_job(session: Session, job_id: int, reason: str, *, now: datetime) -> None:
    """Dead-letter a job: failed, with the reason visible through the study API."""
    locked = _lock_job(session, job_id)
    if locked is None or locked[0].status in FINISHED_STATUSES:
        return
    job, study = locked
    job.status = JobStatus.FAILED
    job.last_error = reason[:2000]
    job.finished_at = now
    _set_study_status(study, job, StudyStatus.FAILED)
    log_event(logger, "worker.job_failed", logging.ERROR, job_id=job_id)


def _set_study_status(study: Study, job: DraftingJob, status: StudyStatus) -> None:
    """Move the study only for the job of its current content (an older job's news is stale).

    A study that already has a signed or submitted report keeps showing the report's state.
    """
    if study.content_version != job.content_version:
        return
    if StudyStatus(study.status) in PEOPLE_OWN:
        return
    move_study(study, status)
