"""Ingest benchmark: dcmtk's storescu sends large DX studies to dcmtk's storescp, then to
radraft's gateway (spool fsync and database record included), in the same run.

Prints images/s for both and the ratio gateway / storescp (goal >= 0.8). Usage:

    .venv/bin/python bench/ingest.py [--studies 40] [--size 2800] [--rounds 3]

A 2800 x 2800 16-bit image is about 15 MB, as a detector's DX image is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from radraft.synthetic import SyntheticPatient, chest_pixels, make_chest_instance, synthetic_uid

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def make_files(folder: Path, studies: int, size: int) -> list[Path]:
    """Write ``studies`` PA + lateral studies; pixels are made once per view to save time."""
    pixels = {
        view: chest_pixels(size, size, view=view, seed=1).tobytes() for view in ("PA", "LATERAL")
    }
    paths = []
    for study in range(studies):
        for view in ("PA", "LATERAL"):
            dataset = make_chest_instance(
                study_instance_uid=synthetic_uid(f"bench-study-{study}"),
                series_instance_uid=synthetic_uid(f"bench-series-{study}-{view}"),
                sop_instance_uid=synthetic_uid(f"bench-{study}-{view}"),
                view=view,
                accession_number=f"BENCH{study:05d}",
                patient=SyntheticPatient(patient_id=f"BENCH{study:05d}"),
                rows=8,
                columns=8,
            )
            dataset.Rows = dataset.Columns = size
            dataset.PixelData = pixels[view]
            path = folder / f"{study:03d}_{view}.dcm"
            dataset.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def send(paths: list[Path], port: int) -> float:
    """Seconds storescu needs to send every file over one association."""
    start = time.perf_counter()
    completed = subprocess.run(
        ["storescu", "-aet", "BENCH", "-aec", "RADRAFT", "127.0.0.1", str(port), *map(str, paths)],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"storescu failed: {completed.stderr[-2000:]}")
    return elapsed


def run_storescp(paths: list[Path], workdir: Path) -> float:
    out = workdir / "storescp"
    out.mkdir()
    port = free_port()
    process = subprocess.Popen(
        ["storescp", "-aet", "RADRAFT", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        return send(paths, port)
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(out)


def run_gateway(paths: list[Path], workdir: Path, database_url: str | None) -> float:
    data_dir = workdir / "radraft"
    port = free_port()
    environment = {
        **os.environ,
        "RADRAFT_DATA_DIR": str(data_dir),
        "RADRAFT_DICOM_PORT": str(port),
        "RADRAFT_LOG_LEVEL": "WARNING",
    }
    if database_url:
        environment["RADRAFT_DATABASE_URL"] = database_url
    subprocess.run(
        [sys.executable, "-m", "radraft_cli", "db", "upgrade"],
        env=environment,
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "radraft_cli", "gateway"], env=environment, cwd=REPO
    )
    try:
        wait_for_port(port)
        return send(paths, port)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()
        shutil.rmtree(data_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--size", type=int, default=2800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="default: embedded SQLite")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radraft-bench-") as temporary:
        workdir = Path(temporary)
        files_dir = workdir / "files"
        files_dir.mkdir()
        paths = make_files(files_dir, arguments.studies, arguments.size)
        megabytes = paths[0].stat().st_size / 1e6
        print(f"{len(paths)} images of {megabytes:.1f} MB, {arguments.rounds} rounds each")
        reference, gateway = [], []
        for round_number in range(arguments.rounds):
            reference.append(len(paths) / run_storescp(paths, workdir))
            gateway.append(len(paths) / run_gateway(paths, workdir, arguments.database_url))
            print(
                f"round {round_number + 1}: storescp {reference[-1]:.1f} images/s, "
                f"radraft gateway {gateway[-1]:.1f} images/s, "
                f"ratio {gateway[-1] / reference[-1]:.2f}"
            )
        ref, ours = statistics.median(reference), statistics.median(gateway)
        print(f"median: storescp {ref:.1f} images/s, radraft gateway {ours:.1f} images/s")
        print(f"ratio gateway/storescp = {ours / ref:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
