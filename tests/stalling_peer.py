"""A peer that accepts, answers a few bytes, then stalls: silent, or one byte now and then.

It stands for a PACS or RIS that hung half way through its answer (or, silent from the start,
one that never finishes a TLS handshake: it reads the ClientHello and says nothing).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class StallingPeer:
    """Listens on 127.0.0.1:``port``; each connection gets ``opening``, then ``drip`` every
    ``interval`` seconds (or nothing, if ``drip`` is empty) until the peer or ``stop`` ends it."""

    def __init__(
        self, port: int, opening: bytes = b"", drip: bytes = b"", interval: float = 0.2
    ) -> None:
        self.port = port
        self.opening = opening
        self.drip = drip
        self.interval = interval
        self.connections = 0
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):
            while not self._stopped.is_set():
                connection, _ = self._listener.accept()
                self.connections += 1
                threading.Thread(target=self._stall, args=(connection,), daemon=True).start()

    def _stall(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.settimeout(self.interval)
            with contextlib.suppress(TimeoutError):
                connection.recv(65536)  # the request (or the ClientHello), never answered whole
            connection.sendall(self.opening)
            while not self._stopped.wait(self.interval):
                with contextlib.suppress(TimeoutError):
                    if connection.recv(65536) == b"":
                        return  # the sender gave up
                if self.drip:
                    connection.sendall(self.drip)
