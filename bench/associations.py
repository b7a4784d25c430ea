"""Short associations: one small study per association, as most PACS and modalities send.

Where ``bench/ingest.py`` measures the data path (large images over long associations), this
measures what each association costs: negotiation, the C-STORE of two small images, the release.
Several streams (dcmtk's storescu, Nagle off), each sending its studies one association after
another, into dcmtk's ``storescp --fork`` and into ``radraft gateway --processes N`` (which fsyncs
every file and records every instance before it answers). Prints associations/s, each
receiver's CPU time per association while it received (its processes' user + system time), and
the ratio gateway / storescp per round and of the medians. Usage:

    .venv/bin/python bench/associations.py [--studies 120] [--size 512] [--streams 4]
        [--rounds 3] [--processes N] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from ingest import (
    Run,
    gateway_rate,
    make_files,
    run_senders,
    split,
    storescp_rate,
    storescu_command,
)

IMAGES_PER_STUDY = 2


def send_study_per_association(groups: list[list[Path]], port: int, *receivers: int) -> Run:
    """Each group a stream of its own, all at once; each stream sends its studies one storescu
    (one association) after another. The run as the receiver's processes saw it."""
    streams = [
        [storescu_command(port, group[first : first + IMAGES_PER_STUDY])
         for first in range(0, len(group), IMAGES_PER_STUDY)]
        for group in groups
    ]  # fmt: skip
    return run_senders(streams, sum(map(len, groups)), receivers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=120)
    parser.add_argument("--size", type=int, default=512, help="rows and columns of each image")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--database-url", default=None, help="a Postgres server; default SQLite")
    parser.add_argument("--workdir", default=None, help="a folder on the disk to measure")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radraft-bench-", dir=arguments.workdir) as temporary:
        workdir = Path(temporary)
        files_dir = workdir / "files"
        files_dir.mkdir()
        paths = make_files(files_dir, arguments.studies, arguments.size)
        groups = split(paths, arguments.streams)
        print(
            f"{arguments.studies} studies of {IMAGES_PER_STUDY} images of "
            f"{paths[0].stat().st_size / 1e6:.2f} MB, one association each, "
            f"{arguments.streams} streams, {arguments.rounds} rounds; "
            f"gateway --processes {arguments.processes}"
        )
        runs: dict[str, list[Run]] = {"storescp --fork": [], "gateway": []}
        for round_number in range(arguments.rounds):
            order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
            for name in order:
                if name == "gateway":
                    run = gateway_rate(groups, workdir, arguments.database_url,
                                       arguments.processes, send_study_per_association)  # fmt: skip
                else:
                    run = storescp_rate(groups, workdir, sender=send_study_per_association)
                runs[name].append(run)
            print(f"round {round_number + 1} (associations/s): " + ", ".join(
                f"{name} {values[-1].rate / IMAGES_PER_STUDY:.1f}" for name, values in runs.items()
            ))  # fmt: skip
        for name, values in runs.items():
            rate = statistics.median(run.rate for run in values) / IMAGES_PER_STUDY
            cpu = statistics.median(run.cpu_ms_per_image for run in values) * IMAGES_PER_STUDY
            print(f"  {name:<16} {rate:6.1f} associations/s, {cpu:5.1f} CPU ms per association")
        paired = [
            ours.rate / reference.rate
            for ours, reference in zip(runs["gateway"], runs["storescp --fork"], strict=True)
        ]
        median = {name: statistics.median(run.rate for run in values)
                  for name, values in runs.items()}  # fmt: skip
        print(
            f"ratio gateway / storescp --fork, one study per association = "
            f"{median['gateway'] / median['storescp --fork']:.2f}; "
            f"per round {min(paired):.2f}-{max(paired):.2f}"
        )


if __name__ == "__main__":
    main()
