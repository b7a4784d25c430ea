"""A gateway that is stopped (SIGTERM) lets the associations under way finish (``gateway.drain``).

Before, a stop cut every association at once: a modality half way through a study saw "peer
aborted" for the rest (nothing was lost, but many modalities mark such a job failed until it is
sent again). Real ``radraft gateway`` processes, dcmtk and pynetdicom senders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import func, select

from radraft.db import make_engine, make_sessionmaker, session_scope
from radraft.migrate import upgrade
from radraft.models import Instance
from radraft.settings import Settings
from tests.dicom_peers import store_statuses, synthetic_study_files
from tests.pausing_relay import PausingRelay
from tests.processes import radraft_process
from tests.raw_pdus import store_request_pdus
from tests.support import free_port, require_tool, wait_until

IMAGES = 60


def _settings(tmp_path: Path, drain_seconds: float) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "data",
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        stable_seconds=3600,
        dicom_drain_seconds=drain_seconds,
    )
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.effective_database_url)
    return settings


def _stored(settings: Settings) -> int:
    engine = make_engine(settings.effective_database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            return session.scalar(select(func.count()).select_from(Instance)) or 0
    finally:
        engine.dispose()


def test_a_study_being_sent_when_the_gateway_stops_is_received_whole(tmp_path: Path) -> None:
    settings = _settings(tmp_path, drain_seconds=20)
    files = [
        path
        for seed in range(IMAGES // 2)
        for path in synthetic_study_files(900 + seed, tmp_path / f"s{seed}", size=1024)
    ]
    # The sender goes through a relay that holds its bytes half way through the second image,
    # so the stop comes while the study is being sent however fast this machine receives.
    half_way_second_image = files[0].stat().st_size * 3 // 2
    log = tmp_path / "gateway.log"
    with radraft_process(
        settings, ["gateway", "--processes", "1"], log, ready_text="gateway.started"
    ) as gateway:
        relay = PausingRelay(settings.dicom_port, pause_after=half_way_second_image)
        transcript = tmp_path / "storescu.txt"
        try:
            with transcript.open("w") as sink:  # a file: a full pipe would stall the sender
                sender = subprocess.Popen(
                    [require_tool("storescu"), "-d", "-aet", "MODALITY", "-aec", "RADRAFT",
                     "127.0.0.1", str(relay.port), *map(str, files)],
                    stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "TCP_NODELAY": "1"},
                )  # fmt: skip
            assert relay.paused.wait(timeout=60), "the sender reached the second image"
            wait_until(lambda: "gateway.instance_stored" in log.read_text(errors="replace"),
                       timeout=30, what="the first image stored")  # fmt: skip
            gateway.send_signal(signal.SIGTERM)
            gateway.send_signal(signal.SIGTERM)  # twice, as systemd and a supervisor both do
            wait_until(lambda: "gateway.draining" in log.read_text(errors="replace"),
                       timeout=30, what="the gateway draining")  # fmt: skip
            relay.release()
            assert gateway.wait(timeout=40) == 0
            sender.wait(timeout=60)
        finally:
            relay.close()
    output = transcript.read_text(errors="replace")
    assert store_statuses(output) == [0] * IMAGES, output[-2000:]
    assert sender.returncode == 0
    text = log.read_text(errors="replace")
    assert "gateway.draining associations=1" in text
    assert "gateway.drained associations=1 idle_aborted=0 aborted_at_deadline=0" in text
    assert "gateway.stopped" in text
    assert _stored(settings) == IMAGES


def _associate(port: int, abstract_syntax: str, transfer_syntax: str) -> Association:
    ae = AE(ae_title="HOLDER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(abstract_syntax, transfer_syntax)
    association = ae.associate("127.0.0.1", port, ae_title="RADRAFT")
    assert association.is_established
    return association


def test_an_idle_association_goes_at_once_and_a_stalled_sender_at_the_deadline(
    tmp_path: Path,
) -> None:
    """A sender that keeps its association open between studies does not hold the stop back,
    and one stalled half way through an image is aborted when the drain's time is up."""
    drain = 8.0
    settings = _settings(tmp_path, drain_seconds=drain)
    path = synthetic_study_files(950, tmp_path / "stalled", size=512)[0]
    syntax = str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    log = tmp_path / "gateway.log"
    with radraft_process(
        settings, ["gateway", "--processes", "1"], log, ready_text="gateway.started"
    ) as gateway:
        idle = _associate(settings.dicom_port, Verification, "1.2.840.10008.1.2")
        stalled = _associate(settings.dicom_port, str(dcmread(path).SOPClassUID), syntax)
        context_id = stalled.accepted_contexts[0].context_id
        assert context_id is not None
        pdus = store_request_pdus(path, context_id, 16384)
        connection = stalled.dul.socket.socket  # type: ignore[union-attr]
        assert connection is not None
        connection.sendall(b"".join(pdus[:3]))  # the command and the data set's first part
        time.sleep(0.5)
        stopped_at = time.monotonic()
        gateway.send_signal(signal.SIGTERM)
        wait_until(lambda: idle.is_aborted, timeout=drain, what="the idle association aborted")
        idle_gone = time.monotonic() - stopped_at
        assert gateway.wait(timeout=30) == 0
        stop_took = time.monotonic() - stopped_at
        wait_until(lambda: stalled.is_aborted, timeout=10, what="the stalled one aborted")
    assert idle_gone < drain - 1, "the idle association was not waited for"
    assert drain - 0.5 <= stop_took < drain + 5, "the stalled sender had the drain's time"
    text = log.read_text(errors="replace")
    assert "gateway.drain_deadline associations=2 idle_aborted=1 aborted_at_deadline=1" in text
    assert _stored(settings) == 0, "the cut image was not acknowledged, nor kept"
