"""The reception file: written straight to its descriptor, bounded, and synced early on
another thread without disturbing the file itself."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from gateway import receiving
from gateway.receiving import ReceptionFile, ReceptionLimits
from tests.support import wait_until


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_an_early_sync_leaves_the_file_open_and_closes_its_own_descriptor(tmp_path: Path) -> None:
    before = open_descriptors()
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception.write(b"first part ")
        reception.write(b"and the rest")
        reception.start_sync()  # after the last write, as gateway.pdata calls it
        assert not inner.closed
        os.fstat(inner.fileno())  # still open for pynetdicom to close
        reception.close()
    assert Path(reception.name).read_bytes() == b"first part and the rest"
    wait_until(lambda: open_descriptors() == before, timeout=10,
               what="the early fsync to close its duplicate descriptor")  # fmt: skip


def test_the_intake_is_told_when_the_early_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux hands a failed write-out to the first fsync that looks and tells a descriptor
    opened later nothing, so the early fsync's error must reach the answer itself."""
    real_fsync = os.fsync
    failed: list[int] = []

    def fail_on_the_early_thread(descriptor: int) -> None:
        if threading.current_thread().name.startswith("radraft-early-sync"):
            failed.append(descriptor)
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fail_on_the_early_thread)
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception.write(b"a data set")
        reception.start_sync()
    # Asked while still queued, the early fsync would be dropped for the spool's (tested below).
    wait_until(lambda: bool(failed), timeout=10, what="the early fsync to run")
    path = Path(inner.name)
    assert receiving.early_sync(path) == receiving.EarlySync(failure="spool disk: EIO at fsync")
    assert receiving.early_sync(path) == receiving.EarlySync(), "told once, then forgotten"
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(failed[0])  # the failed fsync's descriptor is closed


def test_a_successful_early_fsync_makes_the_file_durable_and_none_at_all_does_not(
    tmp_path: Path,
) -> None:
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception.write(b"a data set")
        reception.start_sync()
    wait_until(lambda: receiving._syncing[inner.name][0].running()
               or receiving._syncing[inner.name][0].done(), timeout=10,
               what="the early fsync to start")  # fmt: skip
    assert receiving.early_sync(Path(inner.name)) == receiving.EarlySync(durable=True)
    assert receiving.early_sync(tmp_path / "never-received.dcm") == receiving.EarlySync()


def test_an_early_fsync_still_queued_is_dropped_for_the_spools_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every early-fsync thread busy, the intake does not wait in that queue: the job is
    cancelled, its descriptor closed, and the spool's fsync is the first to look."""
    release = threading.Event()
    busy = [receiving._early_sync.submit(release.wait) for _ in range(receiving.EARLY_SYNC_THREADS)]
    try:
        before = open_descriptors()
        with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
            reception = ReceptionFile(inner)
            reception.write(b"a data set")
            reception.start_sync()
        assert open_descriptors() == before + 1, "the queued fsync holds a descriptor"
        assert receiving.early_sync(Path(inner.name)) == receiving.EarlySync(), "not durable"
        assert open_descriptors() == before, "the cancelled fsync's descriptor was left open"
    finally:
        release.set()
        for job in busy:
            job.result(timeout=10)


def test_no_early_sync_for_a_file_whose_writing_failed(tmp_path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception._fail(OSError(28, "No space left on device"))
        before = open_descriptors()
        reception.start_sync()
        assert open_descriptors() == before, "a descriptor was duplicated for a failed file"
    assert receiving.reception_failure(Path(inner.name)) == "spool disk: ENOSPC while receiving"


def test_a_reception_of_exactly_the_instance_limit_is_written_whole(tmp_path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner, ReceptionLimits(max_file_bytes=1000))
        reception.write(bytes(600))
        reception.write(bytes(400))
        reception.close()
    assert receiving.reception_failure(Path(inner.name)) is None
    assert Path(inner.name).stat().st_size == 1000


def test_a_reception_past_the_instance_limit_stops_writing_and_frees_the_file(
    tmp_path: Path,
) -> None:
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner, ReceptionLimits(max_file_bytes=1000))
        assert reception.write(bytes(600)) == 600
        assert reception.write(bytes(401)) == 401, "taken and dropped: the sender goes on"
        assert reception.write(b"more") == 4
        reception.close()
    assert Path(inner.name).stat().st_size == 0, "what was written is freed at once"
    assert receiving.reception_failure(Path(inner.name)) == "instance larger than 1000 bytes"


def test_a_reception_stops_before_taking_the_disk_below_its_free_space_floor(
    tmp_path: Path,
) -> None:
    free = shutil.disk_usage(tmp_path).free
    megabyte = bytes(1 << 20)
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as roomy:
        reception = ReceptionFile(roomy, ReceptionLimits(min_free_bytes=free // 2))
        for _ in range(6):
            reception.write(megabyte)
        reception.close()
    assert receiving.reception_failure(Path(roomy.name)) is None
    assert Path(roomy.name).stat().st_size == 6 << 20

    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as cramped:
        reception = ReceptionFile(cramped, ReceptionLimits(min_free_bytes=free + (1 << 30)))
        for _ in range(6):
            assert reception.write(megabyte) == len(megabyte)
        reception.close()
    failure = receiving.reception_failure(Path(cramped.name))
    assert failure is not None
    assert failure.startswith("spool disk nearly full"), failure
    assert Path(cramped.name).stat().st_size == 0


def test_failures_never_asked_for_are_forgotten_oldest_first(tmp_path: Path) -> None:
    """A sender that aborts after a refused reception never has its failure asked for; the
    record of such failures stays bounded and keeps the newest."""
    names = []
    for number in range(receiving.REMEMBERED_FAILURES + 10):
        with open(tmp_path / f"{number}.dcm", "wb") as inner:
            ReceptionFile(inner, ReceptionLimits(max_file_bytes=1_000_000)).write(bytes(1_000_001))
        names.append(tmp_path / f"{number}.dcm")
    assert receiving.reception_failure(names[0]) is None, "the oldest was forgotten"
    assert receiving.reception_failure(names[-1]) == "instance larger than 1000000 bytes"
    assert len(receiving._failed) <= receiving.REMEMBERED_FAILURES


def test_pieces_follow_what_went_through_pythons_buffer_in_order(tmp_path: Path) -> None:
    """pynetdicom writes the File Meta through the file object; batches of fragments go
    straight to the descriptor after it, each batch in one call, views of a buffer included."""
    buffer = bytearray(b"0123456789")
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        inner.write(b"meta:")  # still in Python's buffer
        reception = ReceptionFile(inner)
        reception.write_pieces([memoryview(buffer)[2:5], b"-", memoryview(buffer)[7:]])
        reception.write(b"|end")
        reception.close()
    assert Path(inner.name).read_bytes() == b"meta:234-789|end"


def test_a_batch_that_crosses_the_instance_limit_is_refused_whole(tmp_path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner, ReceptionLimits(max_file_bytes=1000))
        reception.write_pieces([bytes(500), bytes(500)])
        reception.write_pieces([bytes(1), bytes(10)])
        reception.write_pieces([b"after"])
        reception.close()
    assert Path(inner.name).stat().st_size == 0
    assert receiving.reception_failure(Path(inner.name)) == "instance larger than 1000 bytes"


def test_a_short_write_is_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``writev`` may take fewer bytes than given (a signal, a quota); the rest follows."""
    real_writev = os.writev

    def writes_three_bytes(descriptor: int, pieces: list[bytes]) -> int:
        return real_writev(descriptor, [bytes(pieces[0])[:3]])

    monkeypatch.setattr(os, "writev", writes_three_bytes)
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception.write_pieces([b"abcdef", b"ghij"])
        reception.close()
    assert Path(inner.name).read_bytes() == b"abcdefghij"


def test_more_pieces_than_one_system_call_takes_are_all_written(tmp_path: Path) -> None:
    """A peer sending tiny PDUs can bring thousands of fragments in one read."""
    pieces = [bytes([n % 251]) for n in range(3 * receiving.IOV_MAX + 7)]
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception.write_pieces(pieces)
        reception.close()
    assert receiving.reception_failure(Path(inner.name)) is None
    assert Path(inner.name).read_bytes() == b"".join(pieces)
