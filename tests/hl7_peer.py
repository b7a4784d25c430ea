"""A test RIS: an MLLP listener that decodes by MSH-18, parses with the `hl7` package and answers
a chosen ACK. It keeps its own small character-set table, independent of radraft's."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

import hl7

PEER_CHARSETS = {"": "utf-8", "UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii"}


def read_until_end_block(connection: socket.socket) -> bytes:
    """Bytes up to and including the MLLP end block (or whatever came before EOF)."""
    data = b""
    while b"\x1c\x0d" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def declared_charset(raw: bytes) -> str:
    """MSH-18 of a raw message (the MSH segment is ASCII)."""
    fields = raw.split(b"\r", 1)[0].split(b"|")
    return fields[17].decode("ascii").split("~")[0] if len(fields) > 17 else ""


class RisPeer:
    """Accepts MLLP connections on 127.0.0.1; records every message; answers ``ack_code``."""

    def __init__(
        self,
        port: int,
        ack_code: str = "AA",
        acknowledged_control_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.ssl_context = ssl_context
        """Set: the peer speaks MLLP over TLS."""
        self.ack_code = ack_code
        self.acknowledged_control_id = acknowledged_control_id
        """MSA-2 to answer with; None echoes the message's MSH-10, as a RIS should."""
        self.messages: list[hl7.Message] = []
        self.raw: list[bytes] = []
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
                if self.ssl_context is not None:
                    connection = self.ssl_context.wrap_socket(connection, server_side=True)
            except ssl.SSLError:
                continue
            except OSError:
                return
            with connection:
                data = read_until_end_block(connection)
                if b"\x1c\x0d" not in data:
                    continue
                raw = data[data.index(b"\x0b") + 1 : data.index(b"\x1c\x0d")]
                text = raw.decode(PEER_CHARSETS[declared_charset(raw)])
                message = hl7.parse(text)
                self.raw.append(raw)
                self.messages.append(message)
                control_id = str(message.segment("MSH")[10])
                answered = self.acknowledged_control_id or control_id
                ack = (
                    f"MSH|^~\\&|RIS||||20260101000000||ACK|A{control_id}|P|2.5.1\r"
                    f"MSA|{self.ack_code}|{answered}"
                )
                connection.sendall(b"\x0b" + ack.encode() + b"\x1c\x0d")

    def stop(self) -> None:
        if self._socket is not None:
            # close() alone does not wake a thread blocked in accept() on Linux (the join then
            # waited its whole timeout, 5 s a test); shutdown() does.
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
