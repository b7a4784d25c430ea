"""End-to-end latency: every image of a study acknowledged -> its draft SR stored at a PACS.

Starts ``radraft serve`` (the embedded defaults unless the environment says otherwise: SQLite,
filesystem broker, demo model, the device ``RADRAFT_DEVICE`` picks) with dcmtk's storescp as
the PACS, sends studies one at a time with storescu and measures, per study, the seconds from
storescu's return to the SR file's completion at storescp, minus the stable wait (the
completeness rule, not work). The reference, from the same run, is the drafting time the worker
recorded for that study (preprocessing + findings + impression generation), so the ratio says
how much the pipeline adds around the model. Goal on a GPU: p95 <= 3 s. Usage:

    .venv/bin/python bench/end_to_end.py [--studies 10] [--stable-seconds 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import Engine, select

from radraft.db import make_engine
from radraft.models import Report, ReportRevision, Study
from radraft.settings import Settings
from radraft.synthetic import make_chest_study

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answering(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def write_study(seed: int, folder: Path) -> tuple[str, list[Path]]:
    folder.mkdir(parents=True)
    datasets = make_chest_study(seed)
    paths = []
    for index, dataset in enumerate(datasets):
        path = folder / f"{index}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return str(datasets[0].StudyInstanceUID), paths


def send(paths: list[Path], port: int) -> float:
    """Send with storescu; the wall-clock time at which every image was acknowledged."""
    completed = subprocess.run(
        ["storescu", "-aet", "MODALITY", "-aec", "RADRAFT", "127.0.0.1", str(port),
         *map(str, paths)],
        capture_output=True, text=True,
    )  # fmt: skip
    acknowledged = time.time()
    if completed.returncode != 0:
        raise SystemExit(f"storescu failed: {completed.stderr[-2000:]}")
    return acknowledged


def wait_for_sr(pacs: Path, study_uid: str, seen: set[Path], timeout: float = 600) -> float:
    """The modification time of the new SR of ``study_uid`` once storescp has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(set(pacs.iterdir()) - seen):
            dataset = read_complete(path)
            if dataset is None or "StudyInstanceUID" not in dataset:
                continue  # still being written
            seen.add(path)
            if str(dataset.StudyInstanceUID) == study_uid:
                return path.stat().st_mtime
        time.sleep(0.005)
    raise SystemExit(f"no SR arrived for study {study_uid[-12:]}")


def read_complete(path: Path) -> Dataset | None:
    """The file's dataset, or None while storescp is still writing it."""
    try:
        return dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError):
        return None


def model_seconds(engine: Engine, study_uid: str) -> float:
    """Preprocessing plus generation seconds the worker stored with the study's draft."""
    with engine.connect() as connection:
        generation = connection.execute(
            select(ReportRevision.generation)
            .join(Report, Report.id == ReportRevision.report_id)
            .join(Study, Study.id == Report.study_id)
            .where(Study.study_instance_uid == study_uid)
            .where(ReportRevision.drafting_job_id.is_not(None))
            .order_by(ReportRevision.id.desc())
        ).scalar()
    if not generation:
        raise SystemExit("the draft records no timings: nothing to compare against")
    return float(
        generation["preprocess_seconds"]
        + generation["findings"]["seconds"]
        + generation["impression"]["seconds"]
    )


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--stable-seconds", type=float, default=1.0)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radraft-e2e-") as temporary:
        workdir = Path(temporary)
        pacs_folder = workdir / "pacs"
        pacs_folder.mkdir()
        pacs_port, dicom_port, http_port = free_port(), free_port(), free_port()
        environment = {
            **os.environ,
            "RADRAFT_DATA_DIR": str(workdir / "radraft"),
            "RADRAFT_DICOM_PORT": str(dicom_port),
            "RADRAFT_HTTP_PORT": str(http_port),
            "RADRAFT_STABLE_SECONDS": str(arguments.stable_seconds),
            "RADRAFT_SR_DESTINATION": f"PACS@127.0.0.1:{pacs_port}",
            "RADRAFT_OUTBOX_POLL_SECONDS": "0.02",
            "RADRAFT_LOG_LEVEL": "WARNING",
        }
        engine = make_engine(Settings(data_dir=workdir / "radraft").effective_database_url)
        cli = [sys.executable, "-m", "radraft_cli"]
        subprocess.run([*cli, "model", "build-demo"], env=environment, check=True,
                       capture_output=True)  # fmt: skip
        pacs = subprocess.Popen(
            ["storescp", "-aet", "PACS", "-od", str(pacs_folder), str(pacs_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        serve = subprocess.Popen([*cli, "serve"], env=environment, cwd=REPO)
        try:
            wait_until_answering(f"http://127.0.0.1:{http_port}/healthz")
            seen: set[Path] = set()
            uid, paths = write_study(10_000, workdir / "warm-up")
            send(paths, dicom_port)  # the first study also waits for the worker to come up
            wait_for_sr(pacs_folder, uid, seen)
            latencies, references = [], []
            for index in range(arguments.studies):
                uid, paths = write_study(10_001 + index, workdir / f"study-{index}")
                acknowledged = send(paths, dicom_port)
                stored = wait_for_sr(pacs_folder, uid, seen)
                latencies.append(stored - acknowledged - arguments.stable_seconds)
                references.append(model_seconds(engine, uid))
                print(f"study {index + 1}: {latencies[-1]:.2f} s end to end "
                      f"(model {references[-1]:.2f} s)", flush=True)  # fmt: skip
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
            pacs.terminate()
            pacs.wait()
            engine.dispose()
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    model = statistics.median(references)
    print(f"end to end (stable wait of {arguments.stable_seconds} s excluded): "
          f"p50 {p50:.2f} s, p95 {p95:.2f} s over {len(latencies)} studies (goal p95 <= 3 s "
          "on a GPU)")  # fmt: skip
    print(f"drafting time recorded by the worker (reference): median {model:.2f} s; "
          f"end to end / drafting = {statistics.median(latencies) / model:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
