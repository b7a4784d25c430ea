"""One deadline for a whole exchange with a peer (an SR's C-STORE, an ORU and its ACK).

A socket timeout bounds each wait: a peer that goes silent is noticed. It does not bound a
peer that sends a byte now and then, or whose reply stops half way while a library goes on
waiting without a timeout (pynetdicom clears the socket's timeout once connected). The
delivery relay sends on one thread, so one such PACS or RIS would hold every report of every
study back, pending forever. ``ExchangeDeadline`` shuts the connection down when the time
since the exchange began runs out: the blocked read returns, the library sees a closed
connection, and the sender reports ``expired`` as the reason.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

WAITS_PER_EXCHANGE = 2
"""An exchange may take this many per-wait timeouts in all (``RADRAFT_DELIVERY_TIMEOUT_SECONDS``
each): connecting and the answer each get one. The relay's claim on a row outlasts it."""


class ExchangeDeadline:
    """Shut a watched connection down ``seconds`` after this was created."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends_at = time.monotonic() + seconds
        self._timer: threading.Timer | None = None
        self._expired = threading.Event()

    @property
    def expired(self) -> bool:
        """Whether the deadline shut the connection down."""
        return self._expired.is_set()

    @property
    def reason(self) -> str:
        """What an exchange cut short by this deadline is recorded as."""
        return f"no whole answer within {self.seconds:g} s"

    def remaining(self) -> float:
        """Seconds left (never below zero)."""
        return max(0.0, self._ends_at - time.monotonic())

    def watch(self, connection: socket.socket) -> None:
        """Shut ``connection`` down (both ways) when the deadline comes, unless cancelled."""
        self.cancel()
        timer = threading.Timer(self.remaining(), self._shut_down, args=(connection,))
        timer.name = "radraft-exchange-deadline"
        timer.daemon = True
        self._timer = timer
        timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _shut_down(self, connection: socket.socket) -> None:
        self._expired.set()
        shut_down_under_reader(connection)

    def __enter__(self) -> ExchangeDeadline:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cancel()


def shut_down_under_reader(connection: socket.socket) -> None:
    """Shut ``connection`` down both ways so that a read blocked in another thread returns
    (closing the descriptor would not wake it). The plain socket's shutdown, also under TLS:
    an SSLSocket's own drops its TLS state under the thread that reads it. A connection the
    peer already reset is left as it is."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(connection, socket.SHUT_RDWR)
