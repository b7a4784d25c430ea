"""SIGKILL of the gateway process mid-association never loses an acknowledged instance."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.models import Instance, Study
from radraft.settings import Settings, settings_to_environment
from radraft.synthetic import make_chest_study
from tests.dicom_peers import echoscu
from tests.support import wait_until

ACKS_BEFORE_KILL = 6


def start_gateway_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    environment = {**os.environ, **settings_to_environment(settings)}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "radraft_cli", "gateway", "--processes", "1"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    wait_until(
        lambda: process.poll() is not None or echoscu(port=settings.dicom_port).returncode == 0,
        what="gateway process to listen",
    )
    assert process.poll() is None, log.read_text()
    return process


def test_sigkill_mid_association_loses_no_acknowledged_instance(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    datasets = [
        instance
        for seed in range(20, 30)
        for instance in make_chest_study(seed, rows=1024, columns=1024)
    ]
    gateway = start_gateway_process(settings, tmp_path / "gateway.log")
    acknowledged: list[str] = []
    killer_done = threading.Event()

    def kill_after_some_acks() -> None:
        wait_until(lambda: len(acknowledged) >= ACKS_BEFORE_KILL, what="first acknowledgements")
        gateway.send_signal(signal.SIGKILL)
        killer_done.set()

    killer = threading.Thread(target=kill_after_some_acks)
    killer.start()
    ae = AE(ae_title="CRASHSCU")
    # pynetdicom's sender may not notice a killed peer until its DIMSE timeout; keep that short.
    ae.dimse_timeout = 3
    ae.network_timeout = 3
    ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", settings.dicom_port, ae_title="RADRAFT")
    assert association.is_established
    for dataset in datasets:
        if not association.is_established:
            break
        response = association.send_c_store(dataset)
        if "Status" in response and int(response.Status) == 0:
            acknowledged.append(str(dataset.SOPInstanceUID))
    killer.join()
    assert killer_done.is_set()
    gateway.wait()
    assert ACKS_BEFORE_KILL <= len(acknowledged) < len(datasets), "the kill came too late"

    restarted = start_gateway_process(settings, tmp_path / "gateway.log")
    try:
        with session_scope(session_factory) as session:
            rows = session.execute(select(Instance.sop_instance_uid, Instance.spool_path))
            stored = dict(rows.all())
        assert set(acknowledged) <= set(stored)
        by_uid = {str(dataset.SOPInstanceUID): dataset for dataset in datasets}
        for sop_uid in acknowledged:
            spooled = settings.spool_dir / stored[sop_uid]
            assert dcmread(spooled).PixelData == by_uid[sop_uid].PixelData
        # Completion runs from the database, so the restarted gateway decides the studies.
        study_uids = {str(by_uid[sop_uid].StudyInstanceUID) for sop_uid in acknowledged}

        def all_decided() -> bool:
            with session_scope(session_factory) as session:
                decided = session.scalars(
                    select(Study.study_instance_uid).where(Study.eligible.is_not(None))
                )
                return study_uids <= set(decided)

        wait_until(all_decided, what="studies decided after restart")
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=30) == 0
