"""MLLP framing (HL7 over TCP): start block 0x0B, message, end block 0x1C 0x0D."""

from __future__ import annotations

import socket

from radraft.errors import RadraftError

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
MAX_MESSAGE_BYTES = 8 << 20


class MllpError(RadraftError):
    """The peer closed, timed out or sent something that is not an MLLP frame."""


def frame(message: str) -> bytes:
    """An MLLP frame around an ER7 message."""
    return START_BLOCK + message.encode("utf-8") + END_BLOCK


def read_frame(connection: socket.socket) -> str:
    """Read one MLLP frame; raises ``MllpError`` on EOF, garbage or an oversized frame."""
    buffer = b""
    while END_BLOCK not in buffer:
        chunk = connection.recv(65536)
        if not chunk:
            raise MllpError("connection closed before a whole MLLP frame arrived")
        buffer += chunk
        if len(buffer) > MAX_MESSAGE_BYTES:
            raise MllpError("MLLP frame too large")
    start = buffer.find(START_BLOCK)
    end = buffer.find(END_BLOCK)
    if start < 0 or start > end:
        raise MllpError("no MLLP start block")
    return buffer[start + 1 : end].decode("utf-8", "replace")


def send_message(host: str, port: int, message: str, *, timeout: float) -> str:
    """Send one message and return the peer's reply (its ACK)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            connection.sendall(frame(message))
            return read_frame(connection)
    except OSError as error:
        raise MllpError(f"MLLP {type(error).__name__}") from error
