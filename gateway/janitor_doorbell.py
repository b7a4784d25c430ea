"""The janitor's doorbell: how the gateway's ingest-only processes wake its space check.

With ``radraft gateway --processes N`` only the first process runs the janitor; an instance
stored by another process that finds the free space below ``RADRAFT_SPOOL_TARGET_FREE_BYTES``
could not wake it, and a burst through those processes waited for the half-minute check while
the gap to the floor filled. The full process listens on a Unix datagram socket named after the
data folder (Linux's abstract namespace: no file to leave behind, no path length to exceed);
the others send it one byte. A ring nobody hears (the full process restarting, a full queue) is
dropped: the half-minute check still comes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from radraft.logs import log_event

logger = logging.getLogger(__name__)


def doorbell_address(data_dir: Path) -> str:
    """The abstract socket address of the janitor serving ``data_dir``."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    return f"\0radraft-janitor-{digest}"


def ring(address: str) -> None:
    """Wake the janitor listening at ``address``; nothing if none does or it is busy."""
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as bell,
    ):
        bell.setblocking(False)
        bell.sendto(b"!", address)


class Doorbell:
    """Listens at ``address`` and calls ``on_ring`` for each ring, until ``close``."""

    def __init__(self, address: str, on_ring: Callable[[], None]) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._on_ring = on_ring
        self._closed = threading.Event()
        try:
            self._socket.bind(address)
        except OSError as error:  # another full gateway on this data folder already listens
            self._socket.close()
            self._closed.set()
            log_event(logger, "gateway.doorbell_unavailable", logging.WARNING,
                      error=type(error).__name__)  # fmt: skip
            return
        self._socket.settimeout(1.0)
        threading.Thread(target=self._listen, name="radraft-janitor-doorbell", daemon=True).start()

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                self._socket.recv(16)
            except TimeoutError:
                continue
            except OSError:
                return
            self._on_ring()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._socket.close()
