"""The gateway under attack and on a failing disk: bounded, refused with a status, recovered."""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.receiving import EarlySync, early_sync
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.models import Instance
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from tests.conftest import RecordingPublisher
from tests.dicom_peers import echoscu, store_statuses, storescu, write_study
from tests.hostile_files import deflate_bomb, element_flood, nested_sequences
from tests.processes import radraft_process
from tests.support import assert_no_reception_left, wait_until


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM, KiB)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1))


def send_chunked(path: Path, port: int) -> tuple[int, str]:
    """Send a file as it is on disk (pynetdicom's chunked sending: no decoding on our side)."""
    meta = read_file_meta_info(path)
    previous = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    try:
        ae = AE(ae_title="ATTACKER")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
        association = ae.associate("127.0.0.1", port, ae_title="RADRAFT")
        assert association.is_established
        response = association.send_c_store(path)
        association.release()
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = previous
    return int(response.Status), str(response.get("ErrorComment", ""))


@dataclass(frozen=True)
class HostileSend:
    """How a gateway process answered one hostile file, and what it cost."""

    status: int
    comment: str
    seconds: float
    peak_growth_mib: float


def send_to_gateway_process(settings: Settings, tmp_path: Path, hostile: Path) -> HostileSend:
    """Send ``hostile`` to a ``radraft gateway`` process after a normal instance (so the
    memory baseline includes everything a reception allocates); it must still answer C-ECHO."""
    with radraft_process(
        settings,
        ["gateway", "--processes", "1"],
        tmp_path / "gateway.log",
        ready_text="gateway.started",
    ) as process:
        normal = write_study(make_chest_study(1, rows=256, columns=256), tmp_path / "normal")
        assert storescu(normal, port=settings.dicom_port).returncode == 0
        before = peak_rss_kib(process.pid)
        started = time.monotonic()
        status, comment = send_chunked(hostile, settings.dicom_port)
        seconds = time.monotonic() - started
        growth_mib = (peak_rss_kib(process.pid) - before) / 1024
        assert echoscu(port=settings.dicom_port).returncode == 0, "still serving"
    return HostileSend(status, comment, seconds, growth_mib)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_deflate_bomb_is_refused_while_it_inflates_with_little_memory(
    settings: Settings, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    bomb = deflate_bomb(tmp_path / "bomb", inflated_bytes=1 << 30)
    assert bomb.stat().st_size < 2 << 20, "about 1 MB on the wire"
    sent = send_to_gateway_process(settings, tmp_path, bomb)
    assert sent.status == 0xC000
    assert "inflates past" in sent.comment
    assert sent.peak_growth_mib < 100, f"peak memory grew {sent.peak_growth_mib:.0f} MiB"
    assert sent.seconds < 20
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 2, "the bomb: no"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_element_flood_is_refused_before_its_header_is_parsed(
    settings: Settings, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    # A million distinct 10-byte elements: 10 MB on the wire, some 300 MB once pydicom holds
    # each one. The walk counts them and stops at the limit, so the header is never parsed.
    flood = element_flood(tmp_path / "flood", elements=1_000_000)
    assert flood.stat().st_size < 12 << 20
    sent = send_to_gateway_process(settings, tmp_path, flood)
    assert sent.status == 0xC000
    assert f"more than {settings.dicom_max_elements} elements" in sent.comment
    assert sent.peak_growth_mib < 100, f"peak memory grew {sent.peak_growth_mib:.0f} MiB"
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 2, "the flood: no"


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("defined_lengths", [False, True], ids=["delimited", "defined-length"])
def test_thousands_of_nested_sequences_are_refused_without_a_traceback(
    running_gateway: Gateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    defined_lengths: bool,
) -> None:
    # Defined-length sequences cost the gateway nothing when skipped whole, but any later
    # reader that walks every element (DICOMweb metadata as JSON) recurses 3000 levels deep.
    caplog.set_level(logging.DEBUG)
    status, comment = send_chunked(
        nested_sequences(tmp_path / "n", depth=3000, defined_lengths=defined_lengths),
        running_gateway.port,
    )
    assert status == 0xC000
    assert "nested deeper" in comment
    assert "Traceback" not in caplog.text
    assert "RecursionError" not in caplog.text


@pytest.fixture
def idle_sockets(running_gateway: Gateway) -> Iterator[list[socket.socket]]:
    """Two hundred connections to the DICOM port that never ask for an association."""
    sockets = [
        socket.create_connection(("127.0.0.1", running_gateway.port), timeout=10)
        for _ in range(200)
    ]
    yield sockets
    for connection in sockets:
        connection.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_idle_connections_never_keep_a_real_sender_out(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(update={"dicom_request_timeout_seconds": 2.0})
    gateway = Gateway(settings, session_factory, publisher)
    gateway.start()
    try:
        sockets = [
            socket.create_connection(("127.0.0.1", gateway.port), timeout=10) for _ in range(200)
        ]
        time.sleep(0.5)  # every one accepted and waiting for its A-ASSOCIATE-RQ
        started = time.monotonic()
        files = write_study(make_chest_study(2, rows=64, columns=64), tmp_path / "s")
        result = storescu(files, port=gateway.port, debug=True)
        waited = time.monotonic() - started
        assert store_statuses(result.output) == [0, 0], result.output
        assert waited < 5, f"the sender waited {waited:.1f} s"
        # Past the ARTIM timer the idle connections are closed by the gateway.
        closed = 0
        for connection in sockets:
            connection.settimeout(10)
            try:
                closed += connection.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            connection.close()
        assert closed == len(sockets)
    finally:
        gateway.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_spool_below_its_free_space_watermark_answers_out_of_resources(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(update={"spool_min_free_bytes": 1 << 60})
    gateway = Gateway(settings, session_factory, publisher)
    gateway.start()
    try:
        files = write_study(make_chest_study(3, rows=64, columns=64), tmp_path / "s")
        result = storescu(files, port=gateway.port, debug=True, halt=False)
    finally:
        gateway.stop()
    assert store_statuses(result.output) == [0xA700, 0xA700], result.output
    assert "spool disk nearly full" in result.output
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_instance_past_its_size_limit_is_refused_as_it_arrives_and_the_association_goes_on(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(update={"dicom_max_instance_bytes": 1 << 20})
    gateway = Gateway(settings, session_factory, publisher)
    gateway.start()
    try:
        (large,) = write_study(
            make_chest_study(21, rows=1024, columns=1024, views=("PA",)), tmp_path / "large"
        )
        (small,) = write_study(
            make_chest_study(22, rows=64, columns=64, views=("PA",)), tmp_path / "small"
        )
        assert large.stat().st_size > 2 << 20
        result = storescu([large, small], port=gateway.port, debug=True, halt=False)
        assert store_statuses(result.output) == [0xA700, 0], result.output
        assert "instance larger than 1048576 bytes" in result.output
        assert "Releasing Association" in result.output, "released, not aborted"
        assert "Abort" not in result.output, result.output
        assert_no_reception_left(gateway.spool.incoming)
        with session_scope(session_factory) as session:
            stored = session.scalars(select(Instance.sop_instance_uid)).all()
        assert stored == [str(dcmread(small).SOPInstanceUID)]

        # The site raises the limit: the sender's retry is stored.
        gateway.stop()
        gateway = Gateway(
            settings.model_copy(update={"dicom_max_instance_bytes": 16 << 20}),
            session_factory,
            publisher,
        )
        gateway.start()
        again = storescu([large], port=gateway.port, debug=True)
        assert store_statuses(again.output) == [0], again.output
    finally:
        gateway.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_disk_that_fills_up_mid_reception_answers_a700_and_recovers_losing_nothing(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    small_disk: Path,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(
        update={"data_dir": small_disk / "data", "spool_min_free_bytes": 0}
    )
    gateway = Gateway(settings, session_factory, publisher)
    gateway.start()
    try:
        # Eight images of 8 MB each: the 40 MB disk is full after about four.
        studies = [make_chest_study(10 + seed, rows=2048, columns=2048) for seed in range(4)]
        files = [path for n, study in enumerate(studies)
                 for path in write_study(study, tmp_path / f"s{n}")]  # fmt: skip
        result = storescu(files, port=gateway.port, debug=True, halt=False)
        statuses = store_statuses(result.output)
        assert len(statuses) == len(files), "every image answered, no abort"
        assert 0 in statuses, result.output
        assert 0xA700 in statuses, result.output
        assert set(statuses) <= {0, 0xA700}
        assert "while receiving" in result.output or "spool" in result.output
        assert_no_reception_left(gateway.spool.incoming)
        acknowledged = [str(path.stem) for path, status in zip(files, statuses, strict=True)
                        if status == 0]  # fmt: skip

        # More room: the refused images are sent again and everything is there, intact.
        subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
        again = storescu(files, port=gateway.port, debug=True)
        assert store_statuses(again.output) == [0] * len(files), again.output
        with session_scope(session_factory) as session:
            stored = dict(
                session.execute(select(Instance.sop_instance_uid, Instance.spool_path)).all()
            )
        assert set(acknowledged) <= set(stored)
        assert len(stored) == len(files)
        for path in files:
            spooled = gateway.spool.path_of(stored[path.stem])
            assert dcmread(spooled).PixelData == dcmread(path).PixelData
    finally:
        gateway.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_write_out_failure_that_the_early_fsync_saw_is_answered_a700_and_nothing_is_kept(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk error in the first image's write-out: Linux reports it to the first fsync that
    looks (the early one, on its own thread) and not to the spool's fsync on a descriptor opened
    later, which is what the patched fsync does here (an I/O error cannot be made on this disk).
    The image must be refused, never acknowledged; the next one and the retry are stored.

    An early fsync that has not started when the intake looks is dropped, and the spool's own
    fsync (not failed here) takes its place: about one run in three the first image's did not
    start in time and the second image met the failure. So the intake waits here until the first
    early fsync has run, as it usually has by then."""
    real_fsync = os.fsync
    failed: list[int] = []
    first_failed = threading.Event()

    def first_early_fsync_fails(descriptor: int) -> None:
        if threading.current_thread().name.startswith("radraft-early-sync") and not failed:
            failed.append(descriptor)
            first_failed.set()
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(descriptor)

    def early_sync_once_the_first_has_run(path: Path) -> EarlySync:
        first_failed.wait(timeout=30)  # if it never runs, the statuses below say so
        return early_sync(path)

    monkeypatch.setattr(os, "fsync", first_early_fsync_fails)
    monkeypatch.setattr("gateway.intake.early_sync", early_sync_once_the_first_has_run)
    first, second = write_study(make_chest_study(31, rows=256, columns=256), tmp_path / "s")
    result = storescu([first, second], port=running_gateway.port, debug=True, halt=False)
    assert store_statuses(result.output) == [0xA700, 0], result.output
    assert "spool disk: EIO at fsync" in result.output
    assert_no_reception_left(running_gateway.spool.incoming)
    with session_scope(session_factory) as session:
        stored = session.scalars(select(Instance.sop_instance_uid)).all()
    assert stored == [str(dcmread(second).SOPInstanceUID)]

    again = storescu([first], port=running_gateway.port, debug=True)
    assert store_statuses(again.output) == [0], again.output
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 2


@pytest.mark.parametrize("backend", ["sqlite"])
def test_each_stored_file_is_fsynced_once_by_the_early_fsync_or_else_by_the_spool(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_fsync = os.fsync
    fsynced: list[int] = []  # inodes of regular files

    def recording_fsync(descriptor: int) -> None:
        real_fsync(descriptor)
        status = os.fstat(descriptor)
        if stat.S_ISREG(status.st_mode):
            fsynced.append(status.st_ino)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    files = write_study(make_chest_study(32, rows=512, columns=512), tmp_path / "s")
    files += write_study(make_chest_study(33, rows=512, columns=512), tmp_path / "t")
    result = storescu(files, port=running_gateway.port, debug=True)
    assert store_statuses(result.output) == [0] * len(files), result.output
    with session_scope(session_factory) as session:
        spooled = session.scalars(select(Instance.spool_path)).all()
    inodes = [running_gateway.spool.path_of(relative).stat().st_ino for relative in spooled]
    assert len(inodes) == len(files)
    assert sorted(fsynced) == sorted(inodes), "each stored file fsynced once, no other file"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_idle_fixture_sockets_do_not_break_echo(
    running_gateway: Gateway, idle_sockets: list[socket.socket]
) -> None:
    """Even with two hundred idle sockets open, verification answers at once."""
    wait_until(lambda: echoscu(port=running_gateway.port).returncode == 0, timeout=5,
               what="C-ECHO through the idle crowd")  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_pdu_longer_than_the_limit_closes_the_connection_before_it_is_read(
    running_gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A PDU header announcing 2 GiB: closed at once, not read (pynetdicom alone would wait for
    the 2 GiB to arrive, growing a buffer as they came, until its network timeout)."""
    announced = 2 << 30
    with (
        caplog.at_level(logging.WARNING, logger="gateway.transport"),
        socket.create_connection(("127.0.0.1", running_gateway.port), timeout=10) as peer,
    ):
        peer.sendall(bytes([0x01, 0x00]) + announced.to_bytes(4, "big") + bytes(65536))
        started = time.monotonic()
        try:
            closed = peer.recv(1) == b""
        except ConnectionResetError:
            closed = True
        waited = time.monotonic() - started
    assert closed, "the connection stays open"
    assert waited < 5, f"closed after {waited:.1f} s"
    assert any(record.getMessage().startswith("gateway.pdu_too_long") for record in caplog.records)
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"
