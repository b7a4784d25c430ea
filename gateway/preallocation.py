"""Disk space reserved ahead of a reception's writes, and given back when it ends.

Each page a reception writes into a file that has no blocks yet costs ext4 a delayed allocation
(space reserved, the extent status tree updated, quota charged), and its write-out then
allocates the blocks. Reserving the blocks a few MiB at a time with ``fallocate`` (Linux,
``FALLOC_FL_KEEP_SIZE``: the file's size stays what was written) leaves the writes little more
than the copy. Measured here (2026-12-01): writing 15.7 MB in 1 MiB writes with early write-out,
then fsync, took 3.3-4.4 ms of CPU instead of 4.9-6.1 ms (one thread, six rounds); a live
gateway receiving 80 such images over one association used 12.5-13.6 ms of CPU per image
instead of 14.0-14.8 (four alternating pairs; the rate did not move beyond noise, nor did four
parallel associations in eight pairs). Files under a MiB neither gained nor lost.

Blocks reserved past the last byte stay allocated until the file is truncated, so a finished
reception is cut back to its size (``trim``) on the early fsync's thread, before that fsync, and
the spool checks every file it keeps (``trim_if_reserved``, after its own fsync). Giving back
the reserve is not part of durability: a crash before it leaves at most a reserve's blocks
allocated past a file's end, never a byte of the file changed. Where ``fallocate`` is missing
or refuses (another filesystem, a full disk), nothing is reserved and the writes go on as
before: the write itself reports a real error.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway import linux_calls

STEP = 4 << 20
"""Bytes reserved at a time, past what the next write needs."""
FALLOC_FL_KEEP_SIZE = 0x01
"""linux/falloc.h: allocate blocks without changing the file's size."""
SLACK_BYTES = 64 << 10
"""Allocated bytes past a file's size that ``reserved_past_end`` tolerates: ext4 rounds to
blocks and may hold an extent block, never a reserve of ``STEP``'s size."""


_fallocate = linux_calls.fallocate


def reserve(descriptor: int, offset: int, length: int) -> bool:
    """Allocate ``length`` bytes of blocks from ``offset`` without changing the file's size;
    False where that is not possible here (the caller then stops reserving)."""
    if _fallocate is None:
        return False
    return _fallocate(descriptor, FALLOC_FL_KEEP_SIZE, offset, length) == 0


def trim(descriptor: int) -> None:
    """Give back the blocks reserved past the file's last byte (truncating a file to its own
    size frees them)."""
    os.ftruncate(descriptor, os.fstat(descriptor).st_size)


def trim_if_reserved(path: Path, status: os.stat_result) -> None:
    """Give back a reserve still held by the file at ``path`` (``status`` its fstat), for a
    reader that has it open read-only, as the spool has when it keeps a reception."""
    if reserved_past_end(status):
        os.truncate(path, status.st_size)


def reserved_past_end(status: os.stat_result) -> bool:
    """Whether a file holds more blocks past its size than a plain write leaves."""
    return status.st_blocks * 512 > status.st_size + SLACK_BYTES
