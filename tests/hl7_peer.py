"""A test RIS: an MLLP listener that parses with the `hl7` package and answers a chosen ACK."""

from __future__ import annotations

import socket
import threading

import hl7


def read_until_end_block(connection: socket.socket) -> bytes:
    """Bytes up to and including the MLLP end block (or whatever came before EOF)."""
    data = b""
    while b"\x1c\x0d" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class RisPeer:
    """Accepts MLLP connections on 127.0.0.1; records every message; answers ``ack_code``."""

    def __init__(self, port: int, ack_code: str = "AA") -> None:
        self.port = port
        self.ack_code = ack_code
        self.messages: list[hl7.Message] = []
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", self.port))
        self._socket.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._socket is not None
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                data = read_until_end_block(connection)
                if b"\x1c\x0d" not in data:
                    continue
                text = data[data.index(b"\x0b") + 1 : data.index(b"\x1c\x0d")].decode()
                message = hl7.parse(text)
                self.messages.append(message)
                control_id = str(message.segment("MSH")[10])
                ack = (
                    f"MSH|^~\\&|RIS||||20260101000000||ACK|A{control_id}|P|2.5.1\r"
                    f"MSA|{self.ack_code}|{control_id}"
                )
                connection.sendall(b"\x0b" + ack.encode() + b"\x1c\x0d")

    def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
