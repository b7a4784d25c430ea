"""The reception file: an early fsync on another thread that never disturbs the file itself."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gateway import receiving
from gateway.receiving import ReceptionFile
from tests.support import wait_until


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_an_early_sync_leaves_the_file_open_and_closes_its_own_descriptor(tmp_path: Path) -> None:
    before = open_descriptors()
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception.write(b"first part ")
        reception.start_sync()
        reception.write(b"and the rest")
        reception.close()
    assert Path(reception.name).read_bytes() == b"first part and the rest"
    wait_until(lambda: open_descriptors() == before, timeout=10,
               what="the early fsync to close its duplicate descriptor")  # fmt: skip


def test_no_early_sync_for_a_file_whose_writing_failed(tmp_path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        reception._fail(OSError(28, "No space left on device"))
        before = open_descriptors()
        reception.start_sync()
        assert open_descriptors() == before, "a descriptor was duplicated for a failed file"
    assert receiving.reception_failure(Path(inner.name)) == "ENOSPC"
