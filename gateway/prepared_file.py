"""The next reception's file, created while the sender prepares its next image.

Creating a file costs about 0.4 ms on the development machine's ext4 (``os.open`` with
``O_CREAT``, measured alone), and pynetdicom creates the reception file only once a C-STORE
command has arrived, while the sender waits to send its data. Between the gateway's answer and
the sender's next command there is about as much time again, in which the connection's thread
only waits; so it creates the next file then (``prepare``), and pynetdicom's request for a file
on that thread takes it (``take``).

A prepared file belongs to its thread (one association's DUL thread). It is used only within
``FRESH_SECONDS`` of its creation (the clean-up of the incoming folder removes files an hour
old), and removed when that thread's association ends (``discard``) or when it went stale.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import IO, Any

FRESH_SECONDS = 60.0
"""How long a prepared file may wait for a C-STORE before it is removed and made again."""

_slot = threading.local()


def prepare(create: Callable[[], IO[Any]]) -> None:
    """Create this thread's next reception file with ``create``, unless one is waiting. A file
    that cannot be made now (a full disk, say) is not: pynetdicom's own attempt, when a C-STORE
    comes, then meets the error where it is answered."""
    if getattr(_slot, "file", None) is not None:
        return
    try:
        _slot.file = create()
    except OSError:
        return
    _slot.created = time.monotonic()


def take() -> IO[Any] | None:
    """This thread's prepared file, if one is waiting and fresh (a stale one is removed)."""
    prepared: IO[Any] | None = getattr(_slot, "file", None)
    if prepared is None:
        return None
    _slot.file = None
    if time.monotonic() - _slot.created > FRESH_SECONDS:
        _remove(prepared)
        return None
    return prepared


def discard() -> None:
    """Remove this thread's prepared file, if any (its association ended)."""
    prepared: IO[Any] | None = getattr(_slot, "file", None)
    _slot.file = None
    if prepared is not None:
        _remove(prepared)


def _remove(prepared: IO[Any]) -> None:
    prepared.close()
    try:
        os.unlink(prepared.name)
    except FileNotFoundError:
        return
