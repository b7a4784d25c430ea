"""``radraft serve`` and ``radraft demo``: the embedded all-in-one run, as a user starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from radraft.db import make_engine, make_sessionmaker, session_scope
from radraft.enums import JobStatus
from radraft.models import DraftingJob, Study
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from tests.dicom_peers import storescu, synthetic_study_files
from tests.processes import radraft_process
from tests.support import free_port, wait_until


@pytest.mark.parametrize("backend", ["sqlite"])
def test_serve_runs_gateway_worker_and_api_and_stops_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{settings.http_port}"
    log = tmp_path / "serve.log"
    with radraft_process(settings, ["serve"], log, ready_text="celery@") as process:
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/api/studies").json() == []
        files = synthetic_study_files(50, tmp_path / "s")
        assert storescu(files, port=settings.dicom_port).returncode == 0
        study_uid = make_chest_study(50)[0].StudyInstanceUID

        def acknowledged() -> dict[str, object] | None:
            body = httpx.get(f"{base}/api/studies/{study_uid}").json()
            statuses = [job["status"] for job in body["jobs"]]
            return body if statuses == [JobStatus.ACKNOWLEDGED] else None

        study = wait_until(acknowledged, what="the embedded worker to run the job")
        assert study["eligible"] is True
        assert study["status"] == "queued"
        assert len(study["instances"]) == 2
        assert {i["view_position"] for i in study["instances"]} == {"PA", "LATERAL"}
        listing = httpx.get(f"{base}/api/studies").json()
        assert [item["study_instance_uid"] for item in listing] == [study_uid]
        assert httpx.get(f"{base}/api/studies/1.2.3.4").status_code == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert "serve.stopped" in log.read_text()


def test_demo_runs_end_to_end_on_a_fresh_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    environment = {
        **os.environ,
        "RADRAFT_DICOM_PORT": str(free_port()),
        "RADRAFT_HTTP_PORT": str(free_port()),
    }
    command = [
        sys.executable, "-m", "radraft.cli", "demo",
        "--data-dir", str(data_dir), "--studies", "3", "--stable-seconds", "0.5",
        "--exit-when-done", "--timeout", "120",
    ]  # fmt: skip
    completed = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "done: 3 studies stored and classified, 3 drafting jobs run" in completed.stdout
    engine = make_engine(f"sqlite:///{data_dir / 'radraft.db'}")
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            studies = list(session.scalars(select(Study)))
            job_statuses = list(session.scalars(select(DraftingJob.status)))
    finally:
        engine.dispose()
    assert len(studies) == 3
    assert all(study.eligible for study in studies)
    assert job_statuses == [JobStatus.ACKNOWLEDGED] * 3
    spooled = list((data_dir / "spool").rglob("*.dcm"))
    assert len(spooled) == 6

    # A second run starts from a fresh data dir again.
    again = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list((data_dir / "spool").rglob("*.dcm"))) == 6
