"""Reading a multipart body into files: every part whole or, when it cannot be kept, dropped
with the reason, while the parts after it are still read."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from radraft.multipart import (
    MultipartFileReader,
    OutgoingPart,
    ReceivedPart,
    new_boundary,
    write_multipart,
)

MIB = 1 << 20


def payload(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def read_body(
    payloads: list[bytes], folder: Path, *, max_part_bytes: int = 1 << 30, min_free_bytes: int = 0
) -> list[ReceivedPart]:
    """Post ``payloads`` as one multipart body, fed in uneven chunks, and read it back."""
    boundary = new_boundary()
    body = b"".join(
        write_multipart([OutgoingPart("application/dicom", [p]) for p in payloads], boundary)
    )
    reader = MultipartFileReader(
        boundary, folder, max_part_bytes=max_part_bytes, max_parts=10,
        min_free_bytes=min_free_bytes,
    )  # fmt: skip
    for start in range(0, len(body), 777_777):
        reader.feed(body[start : start + 777_777])
    return reader.finish()


def test_every_part_goes_whole_to_a_file_of_its_own(tmp_path: Path) -> None:
    payloads = [payload(5 * MIB, seed=1), payload(1000, seed=2)]
    parts = read_body(payloads, tmp_path)
    assert [part.path.read_bytes() for part in parts] == payloads
    assert all(part.complete and not part.too_large and not part.unwritten for part in parts)


def test_a_part_over_the_size_limit_is_dropped_and_the_next_is_kept(tmp_path: Path) -> None:
    large, small = payload(3 * MIB, seed=3), payload(MIB, seed=4)
    parts = read_body([large, small], tmp_path, max_part_bytes=2 * MIB)
    assert parts[0].too_large
    assert parts[0].path.read_bytes() == b"", "what it had taken is freed"
    assert parts[1].path.read_bytes() == small


def test_a_part_that_would_take_the_disk_below_its_floor_is_dropped(tmp_path: Path) -> None:
    """The floor is looked at every 4 MiB of a part: a 6 MiB part is refused at its fourth MiB,
    a 1 MiB part after it is never looked at and is written."""
    floor = shutil.disk_usage(tmp_path).free + (1 << 30)
    large, small = payload(6 * MIB, seed=5), payload(MIB, seed=6)
    parts = read_body([large, small], tmp_path, min_free_bytes=floor)
    assert parts[0].unwritten is not None
    assert parts[0].unwritten.startswith("disk nearly full"), parts[0].unwritten
    assert parts[0].path.read_bytes() == b""
    assert parts[0].complete, "its closing boundary was read: the body went on"
    assert parts[1].unwritten is None
    assert parts[1].path.read_bytes() == small


def test_a_part_the_disk_cannot_hold_is_dropped_and_frees_its_space(small_disk: Path) -> None:
    """On a 40 MB disk a 50 MB part fails to write (ENOSPC); it is truncated at once, so the
    part after it fits."""
    large, small = payload(50 * MIB, seed=7), payload(5 * MIB, seed=8)
    parts = read_body([large, small], small_disk)
    assert parts[0].unwritten == "disk: ENOSPC"
    assert parts[0].path.read_bytes() == b""
    assert parts[1].path.read_bytes() == small
