"""Several gateway processes on one DICOM port (SO_REUSEPORT): every core ingests.

``radraft gateway --processes 2``: four storescu associations at once, twenty instances each,
every instance stored once and every study queued once; then one gateway process is SIGKILLed
while studies arrive, and no acknowledged instance is lost (its supervisor starts it again).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.models import DraftingJob, Instance
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from tests.dicom_peers import store_statuses, storescu, write_study
from tests.processes import radraft_process
from tests.support import child_pids, wait_until

ASSOCIATIONS = 4
STUDIES_PER_ASSOCIATION = 10  # two instances each: twenty per association


def batches(tmp_path: Path, first_seed: int) -> list[list[Path]]:
    out = []
    for association in range(ASSOCIATIONS):
        files: list[Path] = []
        for study in range(STUDIES_PER_ASSOCIATION):
            seed = first_seed + association * STUDIES_PER_ASSOCIATION + study
            files += write_study(make_chest_study(seed, rows=32, columns=32), tmp_path / f"{seed}")
        out.append(files)
    return out


def send_until_acknowledged(groups: list[list[Path]], port: int) -> set[str]:
    """Each group over its own association, all at once; re-send what was not acknowledged."""
    acknowledged: set[str] = set()
    lock = threading.Lock()

    def send(files: list[Path]) -> None:
        pending = list(files)
        while pending:
            statuses = store_statuses(storescu(pending, port=port, debug=True, halt=False).output)
            done = [path for path, status in zip(pending, statuses, strict=False) if status == 0]
            with lock:
                acknowledged.update(path.stem for path in done)
            pending = [path for path in pending if path not in done]
            if pending:
                time.sleep(0.5)

    threads = [threading.Thread(target=send, args=(files,)) for files in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return acknowledged


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_gateway_processes_share_the_port_and_lose_nothing_when_one_is_killed(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    # A study cut by the kill is completed by the sender's retry within this time, so it is
    # drafted once (a later instance would rightly ask for a second draft).
    settings = settings.model_copy(update={"stable_seconds": 5.0})
    log = tmp_path / "gateway.log"
    with radraft_process(settings, ["gateway", "--processes", "2"], log,
                         ready_text="gateway: 2 processes") as supervisor:  # fmt: skip
        wait_until(lambda: "role=full" in log.read_text() and "role=ingest" in log.read_text(),
                   what="both gateway processes listening")  # fmt: skip
        children = child_pids(supervisor.pid)
        assert len(children) == 2

        first = batches(tmp_path / "first", 3000)
        acknowledged = send_until_acknowledged(first, settings.dicom_port)
        assert len(acknowledged) == ASSOCIATIONS * STUDIES_PER_ASSOCIATION * 2

        second = batches(tmp_path / "second", 4000)
        killer = threading.Timer(1.0, os.kill, args=(children[1], signal.SIGKILL))
        killer.start()
        acknowledged |= send_until_acknowledged(second, settings.dicom_port)
        killer.join()
        wait_until(lambda: len(child_pids(supervisor.pid)) == 2, what="the killed one restarted")

        def all_queued() -> bool:
            with session_scope(session_factory) as session:
                studies = session.scalar(select(func.count(func.distinct(DraftingJob.study_id))))
            return studies == 2 * ASSOCIATIONS * STUDIES_PER_ASSOCIATION

        wait_until(all_queued, timeout=60, what="every study queued")
    with session_scope(session_factory) as session:
        stored = set(session.scalars(select(Instance.sop_instance_uid)))
        first_uids = {path.stem for files in first for path in files}
        first_counts = set(
            session.scalars(
                select(Instance.receive_count).where(Instance.sop_instance_uid.in_(first_uids))
            )
        )
        jobs = session.execute(
            select(DraftingJob.study_id, func.count()).group_by(DraftingJob.study_id)
        ).all()
    assert acknowledged <= stored, "no acknowledged instance lost"
    assert len(stored) == 2 * ASSOCIATIONS * STUDIES_PER_ASSOCIATION * 2
    assert first_counts == {1}, "without faults every instance arrives and is stored once"
    assert {count for _, count in jobs} == {1}, "one drafting job per study"
