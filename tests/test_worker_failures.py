"""Worker failures: a killed worker, a killed model process, an undecodable study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import uid
from pydicom.encaps import encapsulate
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.broker import celery_publisher, drafting_queue_depth
from radraft.db import session_scope
from radraft.enums import JobStatus, StudyStatus
from radraft.model_options import Isolation
from radraft.models import DraftingJob, ReportRevision, Study
from radraft.settings import Settings, settings_to_environment
from radraft.synthetic import make_chest_study
from tests.dicom_peers import storescu, synthetic_study_files, write_study
from tests.processes import radraft_process
from tests.support import RedisServer, child_pids, wait_until

WORKER_READY = "ready."


def jobs(factory: sessionmaker[Session]) -> list[DraftingJob]:
    with session_scope(factory) as session:
        return list(session.scalars(select(DraftingJob).order_by(DraftingJob.id)))


def drafts_per_job(factory: sessionmaker[Session]) -> dict[int | None, int]:
    with session_scope(factory) as session:
        counts: dict[int | None, int] = {}
        for job_id in session.scalars(select(ReportRevision.drafting_job_id)):
            counts[job_id] = counts.get(job_id, 0) + 1
        return counts


def draft_the_one_job_with_a_new_worker(
    settings: Settings, factory: sessionmaker[Session], log: Path
) -> None:
    """Start a worker and wait until the test's only job has been drafted."""
    with radraft_process(settings, ["worker"], log, ready_text=WORKER_READY):
        wait_until(
            lambda: jobs(factory)[0].status == JobStatus.SUCCEEDED,
            timeout=90,
            what="the job to be drafted by the new worker",
        )


def on_backend_broker(
    settings: Settings, backend: str, request: pytest.FixtureRequest, **update: object
) -> Settings:
    """``settings`` with ``update``; the Postgres variant also takes a real Redis broker."""
    if backend == "postgres":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        update["broker_url"] = redis_server.url
    return settings.model_copy(update=update)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_worker_killed_mid_task_is_redelivered_and_drafts_once(
    backend: str,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    settings = on_backend_broker(
        settings, backend, request, max_new_tokens=400, job_lease_seconds=4
    )
    gateway = Gateway(settings, session_factory, celery_publisher(settings))
    gateway.start()
    try:
        with radraft_process(
            settings, ["worker"], tmp_path / "w1.log", ready_text=WORKER_READY
        ) as doomed:
            assert storescu(synthetic_study_files(70, tmp_path / "s"), port=gateway.port)
            wait_until(
                lambda: [j for j in jobs(session_factory) if j.status == JobStatus.RUNNING],
                what="the worker to take the job",
            )
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        draft_the_one_job_with_a_new_worker(settings, session_factory, tmp_path / "w2.log")
    finally:
        gateway.stop()
    (job,) = jobs(session_factory)
    assert job.attempts == 2
    assert drafts_per_job(session_factory) == {job.id: 1}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_undecodable_study_fails_with_reason_and_the_next_study_is_drafted(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    broken = make_chest_study(71, rows=64, columns=64, transfer_syntax=uid.JPEG2000Lossless)
    for dataset in broken:
        # Valid encapsulation, broken codestream: the DICOM is fine, the pixels do not decode.
        dataset.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 2000])
    gateway = Gateway(settings, session_factory, celery_publisher(settings))
    gateway.start()
    try:
        with radraft_process(settings, ["worker"], tmp_path / "w.log", ready_text=WORKER_READY):
            assert storescu(write_study(broken, tmp_path / "b"), port=gateway.port).returncode == 0
            assert storescu(synthetic_study_files(72, tmp_path / "g"), port=gateway.port)
            wait_until(
                lambda: (
                    {j.status for j in jobs(session_factory)}
                    == {JobStatus.FAILED, JobStatus.SUCCEEDED}
                ),
                timeout=90,
                what="one failed and one drafted study",
            )
    finally:
        gateway.stop()
    with session_scope(session_factory) as session:
        failed_study = session.scalar(
            select(Study).where(Study.study_instance_uid == broken[0].StudyInstanceUID)
        )
        assert failed_study is not None
        assert failed_study.status == StudyStatus.FAILED
    failed = next(j for j in jobs(session_factory) if j.status == JobStatus.FAILED)
    assert failed.last_error is not None
    assert "no usable image: cannot decode 1.2.840.10008.1.2.4.90" in failed.last_error
    assert failed.attempts == 1, "a permanent failure is not retried"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_model_child_killed_mid_batch_every_study_drafts_once(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"model_isolation": Isolation.CHILD, "max_new_tokens": 300, "batch_wait_ms": 300}
    )
    gateway = Gateway(settings, session_factory, celery_publisher(settings))
    gateway.start()
    try:
        with radraft_process(
            settings, ["worker"], tmp_path / "w.log", ready_text=WORKER_READY
        ) as worker:
            (model_child,) = child_pids(worker.pid)
            for seed in (73, 74, 75):
                files = synthetic_study_files(seed, tmp_path / str(seed))
                assert storescu(files, port=gateway.port).returncode == 0
            wait_until(
                lambda: (
                    len([j for j in jobs(session_factory) if j.status == JobStatus.RUNNING]) == 3
                ),
                what="three studies in flight",
            )
            os.kill(model_child, signal.SIGKILL)
            wait_until(
                lambda: (
                    all(j.status == JobStatus.SUCCEEDED for j in jobs(session_factory))
                    and len(jobs(session_factory)) == 3
                ),
                timeout=120,
                what="all three drafts after the model process was killed",
            )
            assert child_pids(worker.pid) != [model_child], "the model process was restarted"
    finally:
        gateway.stop()
    assert "worker.model_child_failed" in (tmp_path / "w.log").read_text()
    counts = drafts_per_job(session_factory)
    assert sorted(counts.values()) == [1, 1, 1]
    assert all(job.attempts == 1 for job in jobs(session_factory))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_message_whose_worker_died_before_claiming_the_job_is_published_again(
    backend: str,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The job stays queued, its message is gone from the queue (Redis: unacknowledged until the
    visibility timeout, hours; the filesystem broker: deleted); the gateway publishes it again."""
    settings = on_backend_broker(settings, backend, request, job_lease_seconds=2.0)
    gateway = Gateway(settings, session_factory, celery_publisher(settings),
                      queue_depth=drafting_queue_depth(settings))  # fmt: skip
    gateway.start()
    log = tmp_path / "consumer.log"
    try:
        with log.open("wb") as output:
            consumer = subprocess.Popen(
                [sys.executable, "-m", "tests.vanishing_consumer"],
                env={**os.environ, **settings_to_environment(settings)},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            assert storescu(synthetic_study_files(73, tmp_path / "s"), port=gateway.port)
            wait_until(lambda: "taken job" in log.read_text(), what="the consumer to take it")
        finally:
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
        (job,) = jobs(session_factory)
        assert f"taken job {job.id}" in log.read_text()
        assert (job.status, job.attempts) == (JobStatus.QUEUED, 0), "taken, never claimed"
        wait_until(
            lambda: drafting_queue_depth(settings)() == 1,
            timeout=30,
            what="the gateway to publish the unclaimed job again",
        )
        draft_the_one_job_with_a_new_worker(settings, session_factory, tmp_path / "w.log")
    finally:
        gateway.stop()
    (job,) = jobs(session_factory)
    assert job.attempts == 1, "the lost message never reached the model"
    assert drafts_per_job(session_factory) == {job.id: 1}


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_redis_restart_while_drafting_leaves_the_worker_running(
    settings: Settings,
    session_factory: sessionmaker[Session],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """Redis goes away with a task unacknowledged: the worker reconnects, drafts the study it
    had and the next one, and never exits (kombu's close path used to end it)."""
    settings = settings.model_copy(
        update={"broker_url": redis_server.url, "max_new_tokens": 400, "job_lease_seconds": 4.0}
    )
    gateway = Gateway(settings, session_factory, celery_publisher(settings),
                      queue_depth=drafting_queue_depth(settings))  # fmt: skip
    gateway.start()
    log = tmp_path / "w.log"
    try:
        with radraft_process(settings, ["worker"], log, ready_text=WORKER_READY) as worker:
            assert storescu(synthetic_study_files(74, tmp_path / "a"), port=gateway.port)
            wait_until(
                lambda: [j for j in jobs(session_factory) if j.status == JobStatus.RUNNING],
                what="the worker to take the job",
            )
            redis_server.stop()
            time.sleep(1)
            redis_server.start()
            assert storescu(synthetic_study_files(75, tmp_path / "b"), port=gateway.port)
            wait_until(
                lambda: [j.status for j in jobs(session_factory)] == [JobStatus.SUCCEEDED] * 2,
                timeout=120,
                what="both studies drafted by the same worker",
            )
            assert worker.poll() is None, "the worker is still running"
    finally:
        gateway.stop()
    assert "Unrecoverable error" not in log.read_text()
    assert set(drafts_per_job(session_factory).values()) == {1}
