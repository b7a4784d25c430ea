"""A TCP relay that holds a sender's bytes after a given count until the test lets them go.

Tests that stop a service "while a study is being sent" raced the sender: on a fast machine
the whole study could arrive between the first image and the signal. Behind this relay the
sender is half way through a known byte when the test acts, on any machine.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class PausingRelay:
    """Listens on 127.0.0.1 (``port``); relays one connection to ``upstream_port`` both ways,
    but stops passing the client's bytes after ``pause_after`` of them until ``release``."""

    def __init__(self, upstream_port: int, pause_after: int) -> None:
        self.upstream_port = upstream_port
        self.pause_after = pause_after
        self.paused = threading.Event()
        """Set once ``pause_after`` bytes went upstream and the rest is held."""
        self._released = threading.Event()
        self._connections: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._serve_one, daemon=True).start()

    def release(self) -> None:
        """Let the held bytes and everything after them through."""
        self._released.set()

    def close(self) -> None:
        self._released.set()
        for connection in (self._listener, *self._connections):
            connection.close()

    def _serve_one(self) -> None:
        with contextlib.suppress(OSError):
            client, _ = self._listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._connections += [client, upstream]
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()
            self._pump(client, upstream, self.pause_after)

    def _pump(self, source: socket.socket, sink: socket.socket, pause_after: int | None) -> None:
        """Copy ``source`` to ``sink`` until ``source`` ends; hold at ``pause_after`` bytes."""
        passed = 0
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                if pause_after is not None and passed < pause_after <= passed + len(data):
                    head, data = data[: pause_after - passed], data[pause_after - passed :]
                    sink.sendall(head)
                    passed += len(head)
                    self.paused.set()
                    self._released.wait()
                sink.sendall(data)
                passed += len(data)
            sink.shutdown(socket.SHUT_WR)
