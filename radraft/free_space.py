"""A free-space floor kept while a file is written, looked at every few MiB.

Receptions (a C-STORE data set, a STOW-RS part, a worker's fetched instance) are written as
they arrive, and the free space is otherwise only checked before or after. Several large ones at
once could fill a disk that the database may share; each writer therefore asks this, per file,
before writing more, and stops below the floor. ``fstatvfs`` costs microseconds; once per
``CHECK_EVERY_BYTES`` it is nothing beside the writing.
"""

from __future__ import annotations

import os

CHECK_EVERY_BYTES = 4 << 20


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
        disk = os.fstatvfs(descriptor)
        free = disk.f_bavail * disk.f_frsize
        if free - incoming < self._floor:
            return f"disk nearly full ({free >> 20} MiB free)"
        return None
