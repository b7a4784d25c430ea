"""SIGTERM and SIGINT as a ``threading.Event`` that every loop can wait on, without a deadlock.

The commands used to set their stop event inside the signal handler. Python runs a handler in
the main thread between two bytecodes, whatever that thread holds at the time: when it held the
event's own lock (inside ``Event.wait``, or inside a first handler's ``set`` when a second
signal came), ``set`` waited for a lock its own thread held, for good. Two signals close
together do that: systemd signals every process of the service, the ``--processes N``
supervisor signals its children too, and Ctrl-C reaches the whole process group. A gateway hung
so was killed at its supervisor's deadline, its associations cut instead of drained (seen in
about one stop in three of ``radraft gateway --processes 2``).

Here the handler only writes a byte to a pipe, and a thread of ours reads it and sets the
event: no lock is taken on the handler's path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def relay_stop_signals(stop: threading.Event) -> None:
    """Set ``stop`` when SIGTERM or SIGINT arrives (call from the main thread, once)."""
    readable, writable = os.pipe()
    os.set_blocking(writable, False)

    def note(_signal: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a byte already waits
            os.write(writable, b"\0")

    def relay() -> None:
        os.read(readable, 1)
        stop.set()

    threading.Thread(target=relay, name="radraft-stop-signals", daemon=True).start()
    for number in STOP_SIGNALS:
        signal.signal(number, note)
