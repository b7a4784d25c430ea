"""The unclaimed-job rule: a queued job is published again only when its message went out more
than a lease ago and the broker's drafting queue is empty."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.redelivery import draft_message_key, redeliver_unclaimed_jobs
from radraft.db import session_scope
from radraft.enums import JobStatus, OutboxChannel, OutboxStatus, StudyStatus
from radraft.models import DraftingJob, OutboxMessage, Study
from radraft.timeutil import utcnow

LEASE = 60.0


def queued_job(factory: sessionmaker[Session], *, sent_seconds_ago: float) -> int:
    """A study with a queued job whose one message the relay handed to the broker."""
    sent = utcnow() - timedelta(seconds=sent_seconds_ago)
    with session_scope(factory) as session:
        study = Study(study_instance_uid=f"1.2.826.0.1.{sent.timestamp():.0f}",
                      status=StudyStatus.QUEUED, content_version=1)  # fmt: skip
        session.add(study)
        session.flush()
        job = DraftingJob(study_id=study.id, content_version=1, created_at=sent)
        session.add(job)
        session.flush()
        session.add(OutboxMessage(
            channel=OutboxChannel.CELERY, idempotency_key=draft_message_key(study.id, 1),
            payload={"args": [job.id]}, study_id=study.id, status=OutboxStatus.DONE,
            created_at=sent, delivered_at=sent,
        ))  # fmt: skip
        return job.id


def republished(factory: sessionmaker[Session]) -> list[str]:
    with session_scope(factory) as session:
        keys = session.scalars(
            select(OutboxMessage.idempotency_key).where(
                OutboxMessage.status == OutboxStatus.PENDING
            )
        )
        return sorted(keys)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_only_a_stale_job_with_an_empty_queue_is_published_again(
    session_factory: sessionmaker[Session],
) -> None:
    stale = queued_job(session_factory, sent_seconds_ago=LEASE + 5)
    recent = queued_job(session_factory, sent_seconds_ago=LEASE / 2)
    questions: list[int] = []

    def depth(waiting: int) -> int:
        questions.append(waiting)
        return waiting

    assert redeliver_unclaimed_jobs(session_factory, lambda: depth(2), lease_seconds=LEASE) == 0
    assert republished(session_factory) == [], "messages wait in the queue: it may be behind them"
    assert redeliver_unclaimed_jobs(session_factory, lambda: depth(0), lease_seconds=LEASE) == 1
    with session_scope(session_factory) as session:
        job = session.get(DraftingJob, stale)
        assert job is not None
        assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)
        key = draft_message_key(job.study_id, job.content_version)
        payload = session.scalar(
            select(OutboxMessage.payload).where(OutboxMessage.status == OutboxStatus.PENDING)
        )
    assert republished(session_factory) == [f"{key}:unclaimed:1"]
    assert payload is not None
    assert payload["args"] == [stale]
    assert questions == [2, 0]

    # A pending copy is not yet out: no further copy until it has been out for a lease.
    assert redeliver_unclaimed_jobs(session_factory, lambda: depth(0), lease_seconds=LEASE) == 0
    with session_scope(session_factory) as session:
        session.get(DraftingJob, recent).status = JobStatus.RUNNING  # type: ignore[union-attr]
    later = utcnow() + timedelta(seconds=LEASE)
    assert (
        redeliver_unclaimed_jobs(
            session_factory, lambda: depth(0), lease_seconds=LEASE, clock=lambda: later
        )
        == 0
    ), "a running job is the lease check's business, and the stale one's copy is pending"
    assert questions == [2, 0], "no stale job, no question to the broker"
