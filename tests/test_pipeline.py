"""Gateway -> outbox -> broker -> real Celery worker, on both run modes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.broker import celery_publisher
from radraft.db import session_scope
from radraft.enums import JobStatus, OutboxChannel, OutboxStatus, ReportState, StudyStatus
from radraft.models import DraftingJob, OutboxMessage, ReportRevision, Study
from radraft.settings import Settings
from tests.dicom_peers import storescu, synthetic_study_files
from tests.processes import radraft_process
from tests.support import RedisServer, wait_until

WORKER_READY = "ready."


def jobs(factory: sessionmaker[Session]) -> list[DraftingJob]:
    with session_scope(factory) as session:
        return list(session.scalars(select(DraftingJob)))


def outbox(factory: sessionmaker[Session]) -> list[OutboxMessage]:
    with session_scope(factory) as session:
        return list(session.scalars(select(OutboxMessage)))


def wait_for_drafted_jobs(factory: sessionmaker[Session]) -> list[DraftingJob]:
    """The succeeded jobs, once there is at least one."""
    return wait_until(
        lambda: [j for j in jobs(factory) if j.status == JobStatus.SUCCEEDED],
        what="the worker to draft the study",
    )


def assert_one_demo_draft(factory: sessionmaker[Session]) -> ReportRevision:
    """Exactly one stored draft, from the demo model, with prompt, model and timings."""
    with session_scope(factory) as session:
        revisions = list(session.scalars(select(ReportRevision)))
        study = session.scalar(select(Study))
    assert len(revisions) == 1
    (draft,) = revisions
    assert draft.state == ReportState.DRAFTED
    assert draft.demo_model is True
    assert draft.findings.startswith("[DEMO MODEL, RANDOM WEIGHTS, NOT FOR CLINICAL USE]")
    assert draft.model_name == "radraft-demo-llava-tiny", "named, never a checkpoint path"
    assert (draft.model_weights_hash or "").startswith("sha256:")
    assert "write a structured findings section for the CXR" in (draft.prompt or "")
    assert draft.generation is not None
    assert draft.generation["findings"]["generated_tokens"] > 0
    assert draft.generation["findings"]["seconds"] > 0
    assert draft.generation["decoding"] == {
        "do_sample": False,
        "num_beams": 1,
        "kv_cache": "dynamic",
        "compiled": False,
        "dtype": "float32",
        "device": "cpu",
    }
    assert len(draft.generation["images"]) == 2
    assert study is not None
    assert study.status == StudyStatus.DRAFTED
    with session_scope(factory) as session:
        outputs = {
            (row.channel, row.payload["output"], row.payload["report_revision_id"])
            for row in session.scalars(
                select(OutboxMessage).where(OutboxMessage.channel != OutboxChannel.CELERY)
            )
        }
    assert outputs == {
        (OutboxChannel.DICOM, "sr", draft.id),
        (OutboxChannel.HL7, "oru", draft.id),
    }
    return draft


@pytest.mark.parametrize("backend", ["sqlite"])
def test_embedded_broker_delivers_one_job_to_a_real_worker(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    gateway = Gateway(settings, session_factory, celery_publisher(settings))
    gateway.start()
    # A message torn by a full disk (kombu used to write in place) waits in the queue first.
    queue = settings.broker_dir / "queue"
    torn = queue / f"1_{'0' * 8}-0000-0000-0000-{'0' * 12}.drafting.msg"
    torn.write_bytes(b'{"body": "eyJ0YXNr')
    log = tmp_path / "w.log"
    try:
        with radraft_process(settings, ["worker"], log, ready_text=WORKER_READY):
            files = synthetic_study_files(40, tmp_path / "s")
            assert storescu(files, port=gateway.port).returncode == 0
            done = wait_for_drafted_jobs(session_factory)
    finally:
        gateway.stop()
    assert (settings.broker_dir / "broken" / torn.name).exists(), "set aside, not lost"
    assert "broker.message_set_aside" in log.read_text()
    assert "Unrecoverable error" not in log.read_text()
    assert len(jobs(session_factory)) == 1
    assert done[0].attempts == 1
    assert done[0].worker
    assert_one_demo_draft(session_factory)


@pytest.mark.parametrize("backend", ["postgres"])
def test_broker_down_accepts_instances_and_publishes_once_it_is_back(
    settings: Settings,
    session_factory: sessionmaker[Session],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    # The study must be decided once, after both images: a stable window of 0.5 s was shorter
    # than the gap between them on a loaded CI machine once (a job, superseded by a second).
    settings = settings.model_copy(update={"broker_url": redis_server.url, "stable_seconds": 3.0})
    gateway = Gateway(settings, session_factory, celery_publisher(settings))
    gateway.start()
    try:
        redis_server.stop()
        files = synthetic_study_files(41, tmp_path / "s")
        result = storescu(files, port=gateway.port)
        assert result.returncode == 0, result.output

        def failed_publish() -> list[OutboxMessage]:
            return [row for row in outbox(session_factory) if row.attempts >= 2]

        rows = wait_until(failed_publish, what="publish attempts against the dead broker")
        assert rows[0].status == OutboxStatus.PENDING
        assert rows[0].last_error
        with session_scope(session_factory) as session:
            assert session.scalar(select(Study.status)) == StudyStatus.QUEUED
        assert jobs(session_factory)[0].status == JobStatus.QUEUED

        redis_server.start()
        wait_until(
            lambda: all(row.status == OutboxStatus.DONE for row in outbox(session_factory)),
            what="the relay to publish after the broker came back",
        )
        with radraft_process(settings, ["worker"], tmp_path / "w.log", ready_text=WORKER_READY):
            done = wait_for_drafted_jobs(session_factory)
    finally:
        gateway.stop()
    assert len(jobs(session_factory)) == 1
    assert done[0].attempts == 1, "the job was delivered more than once"
    celery_rows = [r for r in outbox(session_factory) if r.channel == OutboxChannel.CELERY]
    assert len(celery_rows) == 1
    assert_one_demo_draft(session_factory)
