"""An accepted association's thread, woken when there is work for it, not every millisecond.

pynetdicom's acceptor loop (``Association._run_reactor``) sleeps a millisecond, waits on
``_reactor_checkpoint`` (where pynetdicom pauses it), then looks for a complete DIMSE message, a
release or abort from the peer, a DUL thread that died and an expired network timeout. On the
gateway's receive path the DUL thread stores and answers C-STOREs itself, so those thousand
turns a second find nothing, yet each one takes the GIL from the thread that is receiving: one
association's turns cost 1.3 ms of CPU per 15.7 MB image (live gateway, 2026-11-30), and each
further association as much again.

``wake_on_work`` gives one association a ``WakeGate`` as its checkpoint. Its ``wait`` still
blocks while pynetdicom has the reactor paused, and then returns as soon as something was put
on a queue the loop reads (the DIMSE message queue: a C-ECHO or a C-STORE on pynetdicom's path;
the DUL's queue to the user: a release or abort request, a lost connection) or the checkpoint
was set again (``kill``), and otherwise after ``POLL_SECONDS``, within which a network timeout
or a dead DUL thread is noticed.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from pynetdicom.association import Association

POLL_SECONDS = 0.1
"""Longest wait between two turns of the loop with nothing put on its queues."""


class WakeGate(threading.Event):
    """pynetdicom's reactor checkpoint (an Event it clears to pause the loop) that also holds
    the loop's turns back until there is work."""

    def __init__(self) -> None:
        super().__init__()
        self._work = threading.Event()
        super().set()  # the reactor runs, as pynetdicom's own checkpoint starts

    def wake(self) -> None:
        """Something was put where the loop looks: let its next turn run now."""
        self._work.set()

    def set(self) -> None:
        super().set()
        self._work.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait while paused, then until woken or ``POLL_SECONDS``; the wake is consumed before
        the loop looks, so anything put after that wakes the next turn."""
        if not super().wait(timeout):
            return False
        self._work.wait(POLL_SECONDS)
        self._work.clear()
        return True


class WakingQueue(queue.Queue[Any]):
    """A queue that wakes its association's loop whenever something is put on it."""

    def __init__(self, gate: WakeGate, items: queue.Queue[Any]) -> None:
        super().__init__()
        self._gate = gate
        while True:  # anything already queued moves over, in order
            try:
                self.put_nowait(items.get_nowait())
            except queue.Empty:
                break

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._gate.wake()


def wake_on_work(association: Association) -> None:
    """Give one accepted association's loop a ``WakeGate`` and the queues that ring it."""
    gate = WakeGate()
    if not association._reactor_checkpoint.is_set():
        gate.clear()  # paused, as it was
    association.dimse.msg_queue = WakingQueue(gate, association.dimse.msg_queue)
    association.dul.to_user_queue = WakingQueue(gate, association.dul.to_user_queue)
    association._reactor_checkpoint = gate
