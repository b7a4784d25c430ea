"""Drafting jobs whose worker vanished: found in the database and published again.

Two gaps are closed here, for either broker. A worker killed while drafting leaves its job
RUNNING with a heartbeat that stops; a worker killed between receiving the message and claiming
the job leaves it QUEUED while the message is gone from the queue (Redis holds it among the dead
consumer's unacknowledged messages until the visibility timeout, hours; the filesystem broker
has already deleted it). The worker's delivery counter bounds how often a job comes back, and a
finished job ignores late copies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.contract import DRAFT_STUDY_TASK
from radraft.db import session_scope
from radraft.enums import JobStatus, OutboxChannel, OutboxStatus
from radraft.logs import log_event
from radraft.models import DraftingJob, OutboxMessage
from radraft.outbox import add_message
from radraft.timeutil import Clock, utcnow

logger = logging.getLogger(__name__)

QueueDepth = Callable[[], int]
"""How many drafting messages wait in the broker's queue, not yet taken by any worker."""

UNCLAIMED_CHECK_LIMIT = 100
"""Queued jobs looked at per check; the rest wait for the next one."""


def draft_message_key(study_id: int, content_version: int) -> str:
    """The outbox key of the first message that asks for a study's draft at a content version;
    later copies of the same job extend it after a colon."""
    return f"draft-study:{study_id}:{content_version}"


def requeue_lost_jobs(
    session_factory: sessionmaker[Session],
    *,
    lease_seconds: float,
    clock: Clock = utcnow,
) -> int:
    """Publish again the running jobs whose worker stopped renewing the heartbeat.

    Redis would redeliver such a message only after its visibility timeout and the embedded
    broker never does, so the database decides: no heartbeat for ``lease_seconds`` means the
    worker is gone.
    """
    with session_scope(session_factory) as session:
        cutoff = clock() - timedelta(seconds=lease_seconds)
        lost = session.scalars(
            select(DraftingJob)
            .where(
                DraftingJob.status == JobStatus.RUNNING,
                ~DraftingJob.heard_from_since(cutoff),
            )
            .with_for_update(skip_locked=True)
        ).all()
        for job in lost:
            job.status = JobStatus.QUEUED
            publish_draft_message(session, job, copy_suffix=f"redelivery:{job.attempts}")
            log_event(logger, "gateway.job_requeued", logging.WARNING, job_id=job.id)
        return len(lost)


def redeliver_unclaimed_jobs(
    session_factory: sessionmaker[Session],
    queue_depth: QueueDepth,
    *,
    lease_seconds: float,
    clock: Clock = utcnow,
) -> int:
    """Publish again the queued jobs whose message went out long ago and is in no queue.

    A job still QUEUED whose every message was handed to the broker more than ``lease_seconds``
    ago, while the drafting queue is empty, was received by a worker that never claimed it: a
    worker prefetches no more messages than it runs at once, and a live one claims a message
    within moments. While messages wait in the queue nothing is decided (that job may simply be
    behind them), so the check costs the broker a question only when a job looks stale.
    """
    cutoff = clock() - timedelta(seconds=lease_seconds)
    with session_scope(session_factory) as session:
        stale = _stale_queued_jobs(session, cutoff)
    if not stale or queue_depth() > 0:
        return 0
    with session_scope(session_factory) as session:
        # Locked only now, after the broker answered; a job claimed or republished meanwhile
        # is no longer stale and is left alone.
        locked = session.scalars(
            select(DraftingJob)
            .where(DraftingJob.id.in_(stale), DraftingJob.status == JobStatus.QUEUED)
            .with_for_update(skip_locked=True)
        ).all()
        still_stale = _stale_queued_jobs(session, cutoff, among=[job.id for job in locked])
        for job in locked:
            if job.id in still_stale:
                publish_draft_message(session, job, copy_suffix=f"unclaimed:{still_stale[job.id]}")
                log_event(
                    logger, "gateway.job_unclaimed_republished", logging.WARNING, job_id=job.id
                )
        return len(still_stale)


def _stale_queued_jobs(
    session: Session, cutoff: datetime, *, among: list[int] | None = None
) -> dict[int, int]:
    """Queued jobs created before ``cutoff`` whose every drafting message was handed to the
    broker before ``cutoff``, each with how many messages it has had."""
    query = (
        select(DraftingJob)
        .where(DraftingJob.status == JobStatus.QUEUED, DraftingJob.created_at < cutoff)
        .order_by(DraftingJob.id)
        .limit(UNCLAIMED_CHECK_LIMIT)
    )
    if among is not None:
        query = query.where(DraftingJob.id.in_(among))
    queued = session.scalars(query).all()
    if not queued:
        return {}
    messages = session.execute(
        select(
            OutboxMessage.idempotency_key, OutboxMessage.status, OutboxMessage.delivered_at
        ).where(
            OutboxMessage.channel == OutboxChannel.CELERY,
            OutboxMessage.study_id.in_({job.study_id for job in queued}),
        )
    ).all()
    stale: dict[int, int] = {}
    for job in queued:
        key = draft_message_key(job.study_id, job.content_version)
        own = [m for m in messages if m[0] == key or m[0].startswith(f"{key}:")]
        sent_long_ago = all(
            status == OutboxStatus.DONE and delivered is not None and delivered < cutoff
            for _, status, delivered in own
        )
        if own and sent_long_ago:
            stale[job.id] = len(own)
    return stale


def publish_draft_message(
    session: Session, job: DraftingJob, *, copy_suffix: str | None = None
) -> None:
    """Queue, through the outbox, the message that asks a worker to draft ``job``.

    The first message of a job has no ``copy_suffix``; each later copy names why it was sent, so
    its idempotency key differs from every earlier one while still starting with the job's key.
    """
    key = draft_message_key(job.study_id, job.content_version)
    add_message(
        session,
        channel=OutboxChannel.CELERY,
        idempotency_key=key if copy_suffix is None else f"{key}:{copy_suffix}",
        payload={"task": DRAFT_STUDY_TASK, "args": [job.id]},
        study_id=job.study_id,
    )
