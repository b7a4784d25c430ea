"""Claiming a job: a second copy of the message leaves a live job alone; Celery's retry and a
redelivery after the lease take it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import JobStatus, StudyStatus
from radraft.models import DraftingJob, Study
from radraft.timeutil import utcnow
from tests.reporting.factories import queued_job
from worker.drafting import take_job

LEASE = 60.0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_copy_of_the_message_leaves_a_running_job_to_its_worker(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        job_id = queued_job(session, "1.2.826.0.1.77")
    start = utcnow()

    def take(worker: str, seconds_later: float, *, is_retry: bool = False) -> bool:
        with session_scope(session_factory) as session:
            now = start + timedelta(seconds=seconds_later)
            inputs = take_job(session, job_id, worker=worker, now=now, lease_seconds=LEASE,
                              is_retry=is_retry)  # fmt: skip
            return inputs is not None

    def state() -> tuple[JobStatus, int, str | None]:
        with session_scope(session_factory) as session:
            row = session.get(DraftingJob, job_id)
            assert row is not None
            return row.status, row.attempts, row.worker

    assert take("a", 0)
    assert not take("b", 1), "the copy finds a live heartbeat"
    assert state() == (JobStatus.RUNNING, 1, "a")
    assert take("a", 2, is_retry=True), "Celery's retry of the same delivery"
    assert state() == (JobStatus.RUNNING, 2, "a")
    assert take("b", 2 + LEASE + 1), "no heartbeat for a lease: the worker is gone"
    assert state() == (JobStatus.RUNNING, 3, "b")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_worker_and_the_gateway_read_the_lease_alike(
    session_factory: sessionmaker[Session],
) -> None:
    """``DraftingJob.heard_from_since`` in SQL (the gateway's redelivery) and in Python (the
    worker's claim) give the same answer: heartbeat, else claim, and the same cutoff."""
    now = utcnow()
    cutoff = now - timedelta(seconds=LEASE)
    cases = {  # (started_at, heartbeat_at) -> lost?
        (now - timedelta(seconds=300), now - timedelta(seconds=10)): False,
        (now - timedelta(seconds=300), now - timedelta(seconds=100)): True,
        (now - timedelta(seconds=10), None): False,
        (now - timedelta(seconds=100), None): True,
        (now - timedelta(seconds=300), cutoff): False,  # exactly a lease old: not yet lost
    }
    with session_scope(session_factory) as session:
        ids = {}
        for number, (started, heartbeat) in enumerate(cases):
            study = Study(study_instance_uid=f"1.2.826.0.1.78.{number}",
                          status=StudyStatus.DRAFTING, content_version=1)  # fmt: skip
            session.add(study)
            session.flush()
            job = DraftingJob(study_id=study.id, content_version=1, status=JobStatus.RUNNING,
                              started_at=started, heartbeat_at=heartbeat)  # fmt: skip
            session.add(job)
            session.flush()
            ids[job.id] = (started, heartbeat)
    with session_scope(session_factory) as session:
        lost_in_sql = set(
            session.scalars(select(DraftingJob.id).where(~DraftingJob.heard_from_since(cutoff)))
        )
        jobs = session.scalars(select(DraftingJob).where(DraftingJob.id.in_(ids))).all()
        alive_in_python = {job.id for job in jobs if job.heard_from_since(cutoff)}
    assert lost_in_sql == {job_id for job_id, case in ids.items() if cases[case]}
    assert alive_in_python == set(ids) - lost_in_sql
