"""Blocks reserved ahead of a reception's writes: the file's bytes and size stay exactly what was
written, and no reserve outlives the reception, whichever path ends it."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest

from gateway import preallocation
from gateway.receiving import ReceptionFile
from gateway.spool import Spool
from tests.support import recorded_results, wait_until

MIB = 1 << 20


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


@pytest.fixture
def reserving_disk(tmp_path: Path) -> Path:
    """A folder on a filesystem where ``fallocate`` can reserve blocks past a file's end."""
    probe = tmp_path / "probe"
    with open(probe, "wb") as stream:
        if not preallocation.reserve(stream.fileno(), 0, MIB):
            pytest.skip("this filesystem cannot reserve blocks (fallocate KEEP_SIZE)")
    probe.unlink()
    return tmp_path


def pattern(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


def test_a_reception_reserves_ahead_and_gives_the_rest_back_when_it_ends(
    reserving_disk: Path,
) -> None:
    data = pattern(6 * MIB)
    with tempfile.NamedTemporaryFile(dir=reserving_disk, delete=False) as inner:
        reception = ReceptionFile(inner)
        path = Path(reception.name)
        reception.write_pieces([memoryview(data)[: 3 * MIB], memoryview(data)[3 * MIB :]])
        assert path.stat().st_size == len(data), "a reserve must not change the file's size"
        assert allocated(path) >= len(data) + preallocation.STEP - MIB, "nothing was reserved"
        reception.start_sync()
        wait_until(lambda: not preallocation.reserved_past_end(path.stat()), timeout=10,
                   what="the early fsync's thread to give the reserve back")  # fmt: skip
        reception.close()
    assert path.read_bytes() == data


def test_the_reserve_is_given_back_off_the_receiving_thread(
    reserving_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Truncating waits for the write-out of the file's last page: not on the connection's
    thread, which is about to answer."""
    trimmed_on = recorded_results(monkeypatch, preallocation, "trim",
                                  keep=lambda _: threading.current_thread())  # fmt: skip
    with tempfile.NamedTemporaryFile(dir=reserving_disk, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception.write(pattern(2 * MIB))
        reception.start_sync()
        wait_until(lambda: bool(trimmed_on), timeout=10, what="the reserve to be given back")
        reception.close()
    assert trimmed_on
    assert threading.current_thread() not in trimmed_on


def test_the_spool_gives_back_a_reserve_that_a_reception_left(reserving_disk: Path) -> None:
    spool = Spool(reserving_disk / "spool", reserving_disk / "incoming")
    received = spool.incoming / "reception.dcm"
    data = pattern(MIB)
    with open(received, "wb") as stream:
        stream.write(data)
        stream.flush()
        assert preallocation.reserve(stream.fileno(), 0, 8 * MIB)
    assert preallocation.reserved_past_end(received.stat())
    relative, size = spool.store(received, "an instance's identity")
    kept = spool.path_of(relative)
    assert size == len(data)
    assert kept.read_bytes() == data
    assert not preallocation.reserved_past_end(kept.stat())


def test_a_file_written_without_reserves_is_not_taken_for_one(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.write_bytes(pattern(5 * MIB + 123))
    assert not preallocation.reserved_past_end(path.stat())


def test_where_reserving_fails_the_reception_stops_trying_and_still_writes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[tuple[int, int]] = []

    def refuse(descriptor: int, offset: int, length: int) -> bool:
        attempts.append((offset, length))
        return False

    monkeypatch.setattr(preallocation, "reserve", refuse)
    data = pattern(3 * MIB)
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        for offset in range(0, len(data), 256 << 10):
            reception.write(data[offset : offset + (256 << 10)])
        reception.start_sync()
        reception.close()
    assert len(attempts) == 1, "a refused reserve must not be asked again for every write"
    assert Path(inner.name).read_bytes() == data


def test_without_fallocate_nothing_is_reserved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preallocation, "_fallocate", None)
    read_end, write_end = os.pipe()
    try:
        assert preallocation.reserve(write_end, 0, MIB) is False
    finally:
        os.close(read_end)
        os.close(write_end)
