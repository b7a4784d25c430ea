"""``radraft serve`` and ``radraft demo``: the embedded all-in-one run, as a user starts it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from sqlalchemy import select

from radraft.db import make_engine, make_sessionmaker, session_scope
from radraft.enums import JobStatus
from radraft.models import DraftingJob, Study
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from reporting.users import authenticate
from tests.conftest import ReportDestinations
from tests.dicom_peers import storescu, synthetic_study_files
from tests.processes import radraft_process
from tests.support import REPO_ROOT, free_port, wait_until

TOKEN = {"Authorization": "Bearer test-service-token"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_serve_runs_gateway_worker_and_api_and_stops_on_sigterm(
    settings: Settings, tmp_path: Path, report_destinations: ReportDestinations
) -> None:
    settings = settings.model_copy(update=report_destinations.settings_update())
    run_serve_session(settings, tmp_path)
    # The draft went out as soon as it was stored: an unverified SR and an ORU with R.
    (sr_path,) = report_destinations.stored_srs()
    sr = dcmread(sr_path)
    assert (sr.PreliminaryFlag, sr.VerificationFlag) == ("PRELIMINARY", "UNVERIFIED")
    assert sr.StudyInstanceUID == make_chest_study(50)[0].StudyInstanceUID
    (oru,) = report_destinations.ris.messages
    assert str(oru.segment("OBR")[25]) == "R"
    assert str(oru.segment("OBX")[5]).startswith("[DEMO MODEL")


def run_serve_session(settings: Settings, tmp_path: Path) -> None:
    """Start serve, send a study, wait for its draft and its delivery, stop with SIGTERM."""
    base = f"http://127.0.0.1:{settings.http_port}"
    log = tmp_path / "serve.log"
    with radraft_process(settings, ["serve"], log, ready_text="celery@") as process:
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/api/studies", headers=TOKEN).json() == []
        files = synthetic_study_files(50, tmp_path / "s")
        assert storescu(files, port=settings.dicom_port).returncode == 0
        study_uid = make_chest_study(50)[0].StudyInstanceUID

        def drafted() -> dict[str, Any] | None:
            body: dict[str, Any] = httpx.get(
                f"{base}/api/studies/{study_uid}", headers=TOKEN
            ).json()
            statuses = [job["status"] for job in body["jobs"]]
            return body if statuses == [JobStatus.SUCCEEDED] else None

        study = wait_until(drafted, what="the embedded worker to draft the study")
        assert study["eligible"] is True
        assert study["status"] == "drafted"
        report = study["report"]
        assert report["status"] == "DRAFTED"
        assert report["demo"] is True
        assert report["model"]["name"]
        assert report["findings"].startswith("[DEMO MODEL")
        assert report["impression"]
        assert len(study["instances"]) == 2
        assert {i["view_position"] for i in study["instances"]} == {"PA", "LATERAL"}
        listing = httpx.get(f"{base}/api/studies", headers=TOKEN).json()
        assert [item["study_instance_uid"] for item in listing] == [study_uid]
        assert httpx.get(f"{base}/api/studies/1.2.3.4", headers=TOKEN).status_code == 404
        assert httpx.get(f"{base}/api/studies").status_code == 401
        wait_until(
            lambda: (
                [row["status"] for row in httpx.get(f"{base}/api/outbox", headers=TOKEN).json()]
                == ["done", "done", "done"]
            ),
            what="the draft's SR and ORU to be delivered",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert "serve.stopped" in log.read_text()


def test_serve_with_a_missing_checkpoint_stops_with_a_clear_error(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "RADRAFT_DATA_DIR": str(tmp_path / "data"),
        "RADRAFT_DICOM_PORT": str(free_port()),
        "RADRAFT_HTTP_PORT": str(free_port()),
        "RADRAFT_MODEL": "hf:/models/not-there",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "serve"],
        env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "cannot load image-text-to-text model '/models/not-there'" in completed.stderr


def test_the_embedded_recipe_of_the_operations_docs_drafts_a_study(tmp_path: Path) -> None:
    """docs/operations.md, as written: a fresh data dir, `radraft serve`, nothing else."""
    recipe = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert "RADRAFT_DATA_DIR=/var/lib/radraft .venv/bin/radraft serve" in recipe
    data_dir = tmp_path / "var-lib-radraft"
    port, http_port = free_port(), free_port()
    environment = {
        **os.environ,
        "RADRAFT_DATA_DIR": str(data_dir),
        "RADRAFT_DICOM_PORT": str(port),  # free ports instead of 11112 and 8000
        "RADRAFT_HTTP_PORT": str(http_port),
        "RADRAFT_STABLE_SECONDS": "1",  # the recipe's 10 s only makes the test slower
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "radraft"), "serve"],
            env=environment, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "celery@" in log.read_text(errors="replace"), timeout=120,
                   what="serve to start")  # fmt: skip
        assert "built the demo model" in log.read_text()
        files = synthetic_study_files(77, tmp_path / "s", size=128)
        assert storescu(files, port=port).returncode == 0
        engine = make_engine(f"sqlite:///{data_dir / 'radraft.db'}")
        factory = make_sessionmaker(engine)

        def drafted() -> bool:
            with session_scope(factory) as session:
                jobs = session.scalars(select(DraftingJob.status)).all()
            return jobs == [JobStatus.SUCCEEDED]

        wait_until(drafted, timeout=120, what="the study drafted")
        engine.dispose()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_demo_runs_end_to_end_on_a_fresh_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    environment = {
        **os.environ,
        "RADRAFT_DICOM_PORT": str(free_port()),
        "RADRAFT_HTTP_PORT": str(free_port()),
        "RADRAFT_MAX_NEW_TOKENS": "48",  # the 200-token default only makes the test slower
    }
    command = [
        sys.executable, "-m", "radraft_cli", "demo",
        "--data-dir", str(data_dir), "--studies", "3", "--stable-seconds", "0.5",
        "--exit-when-done", "--timeout", "120",
    ]  # fmt: skip
    completed = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "done: 3 studies stored and classified, 3 drafts written" in completed.stdout
    accounts = dict(re.findall(r"(resident|attending|admin) / (\S+?)[,)]", completed.stdout))
    assert set(accounts) == {"resident", "attending", "admin"}
    engine = make_engine(f"sqlite:///{data_dir / 'radraft.db'}")
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            studies = list(session.scalars(select(Study)))
            job_statuses = list(session.scalars(select(DraftingJob.status)))
            for name, password in accounts.items():
                user = authenticate(session, name, password)
                assert user is not None, f"the printed {name} account logs in"
                assert user.role == name
    finally:
        engine.dispose()
    assert len(studies) == 3
    assert all(study.eligible for study in studies)
    assert job_statuses == [JobStatus.SUCCEEDED] * 3
    spooled = list((data_dir / "spool").rglob("*.dcm"))
    assert len(spooled) == 6

    # A second run starts from a fresh data dir again.
    again = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list((data_dir / "spool").rglob("*.dcm"))) == 6
