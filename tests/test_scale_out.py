"""Scale-out on one machine, as several hosts would run it, and ingest under load.

Two gateway processes and two worker processes share one Postgres and one Redis; 40 studies
arrive over 8 concurrent associations, and one worker is SIGKILLed mid-run: every study gets
exactly one drafting job and one draft. Then 16 concurrent associations of 50 instances each
reach one gateway: no failure status, nothing lost, its peak memory bounded.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import JobStatus
from radraft.models import DraftingJob, Instance, ReportRevision, Study
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from tests.dicom_peers import store_statuses, storescu, write_study
from tests.processes import radraft_process
from tests.support import RedisServer, free_port, wait_until

ASSOCIATIONS = 8
STUDIES_PER_ASSOCIATION = 5


def send_in_parallel(batches: list[tuple[list[Path], int]]) -> list[list[int]]:
    """One storescu association per batch, all at once; the statuses of each."""
    results: list[list[int]] = [[] for _ in batches]

    def send(index: int, files: list[Path], port: int) -> None:
        output = storescu(files, port=port, debug=True, halt=False).output
        results[index] = store_statuses(output)

    threads = [threading.Thread(target=send, args=(n, files, port))
               for n, (files, port) in enumerate(batches)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return results


@pytest.mark.parametrize("backend", ["postgres"])
def test_two_gateways_and_two_workers_draft_each_study_once_despite_a_killed_worker(
    settings: Settings,
    session_factory: sessionmaker[Session],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    base = settings.model_copy(
        update={"broker_url": redis_server.url, "stable_seconds": 1.0, "job_lease_seconds": 6.0}
    )
    # Both gateways write one spool, as hosts sharing a spool volume would; the workers read it.
    gateways = [base.model_copy(update={"dicom_port": free_port()}) for _ in range(2)]
    batches = []
    for association in range(ASSOCIATIONS):
        files: list[Path] = []
        for study in range(STUDIES_PER_ASSOCIATION):
            seed = 1000 + association * STUDIES_PER_ASSOCIATION + study
            files += write_study(make_chest_study(seed, rows=48, columns=48), tmp_path / f"{seed}")
        batches.append((files, gateways[association % 2].dicom_port))
    studies = ASSOCIATIONS * STUDIES_PER_ASSOCIATION
    with (
        radraft_process(
            gateways[0], ["gateway", "--processes", "1"], tmp_path / "g0.log", ready_text="started"
        ),
        radraft_process(
            gateways[1], ["gateway", "--processes", "1"], tmp_path / "g1.log", ready_text="started"
        ),
        radraft_process(gateways[0], ["worker"], tmp_path / "w0.log", ready_text="ready."),
        radraft_process(
            gateways[1], ["worker"], tmp_path / "w1.log", ready_text="ready."
        ) as doomed,
    ):
        statuses = send_in_parallel(batches)
        assert all(s == [0] * len(files) for s, (files, _) in zip(statuses, batches, strict=True))

        def running() -> bool:
            with session_scope(session_factory) as session:
                return bool(session.scalar(
                    select(func.count()).select_from(DraftingJob)
                    .where(DraftingJob.status == JobStatus.RUNNING)
                ))  # fmt: skip

        wait_until(running, timeout=120, what="a worker drafting")
        os.kill(doomed.pid, signal.SIGKILL)

        def all_drafted() -> bool:
            with session_scope(session_factory) as session:
                done = session.scalar(
                    select(func.count()).select_from(DraftingJob)
                    .where(DraftingJob.status == JobStatus.SUCCEEDED)
                )  # fmt: skip
            return done == studies

        wait_until(all_drafted, timeout=200, what="every study drafted by the surviving worker")
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Study)) == studies
        jobs = session.execute(
            select(DraftingJob.study_id, func.count()).group_by(DraftingJob.study_id)
        ).all()
        drafts = session.execute(
            select(ReportRevision.report_id, func.count())
            .where(ReportRevision.drafting_job_id.is_not(None))
            .group_by(ReportRevision.report_id)
        ).all()
    assert len(jobs) == studies
    assert {count for _, count in jobs} == {1}, "one drafting job per study"
    assert len(drafts) == studies
    assert {count for _, count in drafts} == {1}, "one draft per study"


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sixteen_associations_of_fifty_instances_lose_nothing(
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    batches = []
    for association in range(16):
        files: list[Path] = []
        for study in range(25):  # 25 studies of two images: 50 instances per association
            seed = 2000 + association * 25 + study
            files += write_study(make_chest_study(seed, rows=32, columns=32), tmp_path / f"{seed}")
        batches.append((files, settings.dicom_port))
    with radraft_process(
        settings, ["gateway", "--processes", "1"], tmp_path / "g.log", ready_text="started"
    ) as gw:
        statuses = send_in_parallel(batches)
        peak = peak_rss_mib(gw.pid)
    record_property("gateway_peak_rss_mib", round(peak))
    assert all(s == [0] * 50 for s in statuses), "no failure status"
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 16 * 50
    assert peak < 600, f"the gateway's peak memory was {peak:.0f} MiB"
