"""The header of a C-STORE data set, read while its pixels still arrive.

The sender waits for the C-STORE answer, so every millisecond of work after the last byte counts
once per image, while the same work done during the transfer costs nothing: a 15.7 MB image
takes some 20 ms to arrive and its header is in the first few KiB. ``ReceptionFile`` therefore
starts ``begin`` once the first ``EARLY_READ_AFTER_BYTES`` of a reception are written; a thread
reads what is on disk, finds the top-level Pixel Data element the way the final verification
walks, and parses the bytes before it as the intake would (``parse_instance_header``).

The intake takes the read first (``take_early_read``) and uses its header only when it is
provably the final file's (``confirmed_header``):
the final walk must find the top-level Pixel Data element at the same offset, and the file's
bytes up to there must equal the bytes that were parsed. pydicom reads a header only up to
Pixel Data, so the same bytes give the same header; anything else (a header longer than what
was read, a deflated data set, a parse that failed, a file rewritten meanwhile) falls back to
reading the header from the finished file, as before.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gateway.header import InstanceHeader, parse_instance_header
from gateway.integrity import pixel_data_offset_in

EARLY_READ_AFTER_BYTES = 64 << 10
"""Bytes of a reception written before its header is read (past the header of nearly every
image, well before the end of any image worth the trouble)."""
EARLY_READ_LIMIT = 256 << 10
"""Most bytes read for an early header; a longer header is read from the finished file."""
FIRST_READ_BYTES = 16 << 10
"""Bytes read first, enough for nearly every header; more, up to ``EARLY_READ_LIMIT``, only
when Pixel Data is not in them: reading up to 256 KiB each time made an early read of the
benchmark's header (1.4 KB) cost 1.5 ms of CPU instead of 0.9 (2026-12-01)."""
MAX_PENDING = 64
"""Early reads kept for receptions not yet handed to the intake: an older one (its association
aborted, say) is forgotten, and the intake would read that header again. With
``EARLY_READ_LIMIT`` this bounds what aborted receptions can leave in memory (16 MiB)."""

_threads = ThreadPoolExecutor(2, thread_name_prefix="radraft-early-header")
_pending_lock = threading.Lock()
_pending: OrderedDict[str, Future[EarlyHeader | None]] = OrderedDict()


@dataclass(frozen=True)
class EarlyHeader:
    """What was parsed, and the bytes it was parsed from (the file up to Pixel Data)."""

    prefix: bytes
    header: InstanceHeader


def begin(path: str, written: int) -> None:
    """Start reading the header of the reception at ``path``, of which ``written`` bytes are on
    disk; called once per reception, from the thread that writes it."""
    future = _threads.submit(read_early_header, Path(path), min(written, EARLY_READ_LIMIT))
    with _pending_lock:
        _pending[path] = future
        while len(_pending) > MAX_PENDING:
            _pending.popitem(last=False)


def read_early_header(path: Path, size: int) -> EarlyHeader | None:
    """Parse the header in the first ``size`` bytes of ``path``; None unless all of it is there.

    Never raises: an early read that fails only means the header is read again later.
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read(min(size, FIRST_READ_BYTES))
            offset = pixel_data_offset_in(data)
            if offset is None and size > len(data):
                data += stream.read(size - len(data))
                offset = pixel_data_offset_in(data)
        if offset is None:
            return None
        prefix = data[:offset]
        return EarlyHeader(prefix, parse_instance_header(io.BytesIO(prefix)))
    except Exception:  # whatever it was, the finished file's read reports it again
        return None


def take_early_read(path: Path) -> Future[EarlyHeader | None] | None:
    """The early read begun for the reception at ``path``, if any, forgotten here: the intake
    takes it first, so a reception it refuses before reading the header leaves nothing behind."""
    with _pending_lock:
        return _pending.pop(str(path), None)


def confirmed_header(
    early_read: Future[EarlyHeader | None] | None, path: Path, pixel_data_offset: int | None
) -> InstanceHeader | None:
    """The header of ``early_read`` if it is provably the finished file's, else None.

    ``pixel_data_offset`` is where the final walk of the finished file found the top-level
    Pixel Data element.
    """
    if early_read is None or pixel_data_offset is None:
        return None
    early = early_read.result()  # a read still running or queued is no slower than reading again
    if early is None or len(early.prefix) != pixel_data_offset:
        return None
    try:
        with open(path, "rb") as stream:
            if stream.read(pixel_data_offset) != early.prefix:
                return None
    except OSError:
        return None
    return early.header
