"""Linux system calls Python's ``os`` lacks, taken from libc with ctypes.

The gateway uses them only to do the same work with less CPU or waiting (early write-out, blocks
reserved ahead); where they are missing (not Linux, an old libc) each caller carries on without.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any, cast

FileRangeCall = Callable[[int, int, int, int], int]
"""A call on a descriptor with three integer arguments, returning 0 or -1 (errno set)."""


def libc_call(name: str, argument_types: list[Any]) -> FileRangeCall | None:
    """libc's function ``name`` returning an int, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    function = getattr(ctypes.CDLL(None, use_errno=True), name, None)
    if function is not None:
        function.argtypes = argument_types
        function.restype = ctypes.c_int
    return cast(FileRangeCall | None, function)


sync_file_range = libc_call(
    "sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
)
"""(descriptor, offset, count, flags): start or wait for the write-out of a file's pages."""
fallocate = libc_call("fallocate", [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64])
"""(descriptor, mode, offset, length): allocate or free a file's blocks."""
