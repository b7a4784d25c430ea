"""Free space on a disk that receptions are written to: how much, what to call its errors,
and a floor kept while a file is written, looked at every few MiB.

Receptions (a C-STORE data set, a STOW-RS part) are written as they arrive, and the free space is
otherwise only checked before or after. Several large ones at once could fill a disk that the
database may share; each writer therefore asks ``FreeSpaceWatch``, per file, before writing
more, and stops below the floor. ``fstatvfs`` costs microseconds; once per
``CHECK_EVERY_BYTES`` it is nothing beside the writing. A worker's fetch keeps no floor but
names a full scratch disk with ``disk_error`` too.
"""

from __future__ import annotations

import errno
import os

CHECK_EVERY_BYTES = 4 << 20


def free_bytes(where: int | str | os.PathLike[str]) -> int:
    """Bytes free to unprivileged writers on the filesystem of a path or open descriptor."""
    stats = os.statvfs(where)
    return stats.f_bavail * stats.f_frsize


def nearly_full(free: int) -> str:
    """Why a disk with ``free`` bytes left takes no more (an Error Comment's words)."""
    return f"disk nearly full ({free >> 20} MiB free)"


def disk_error(error: OSError) -> str:
    """A failed write, named by its errno (``disk: ENOSPC``): no path, no message text."""
    return f"disk: {errno.errorcode.get(error.errno or 0, type(error).__name__)}"


class FreeSpaceWatch:
    """Says, for one file being written, when writing more would leave less than ``floor``."""

    def __init__(self, floor: int) -> None:
        self._floor = floor
        self._unchecked = 0

    def shortfall(self, descriptor: int, incoming: int) -> str | None:
        """Why ``incoming`` more bytes may not be written to ``descriptor``'s file, or None."""
        if not self._floor:
            return None
        self._unchecked += incoming
        if self._unchecked < CHECK_EVERY_BYTES:
            return None
        self._unchecked = 0
        free = free_bytes(descriptor)
        return nearly_full(free) if free - incoming < self._floor else None
