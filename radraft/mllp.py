"""MLLP framing (HL7 over TCP): start block 0x0B, message bytes, end block 0x1C 0x0D.

Frames are bytes: the message's character set (MSH-18) decides how they are decoded, after
framing. A reader keeps what arrives after a frame, so several messages in one TCP write
(pipelined) are each read and answered; anything that is not a frame closes the connection.
"""

from __future__ import annotations

import socket
import ssl
import time

from radraft.errors import RadraftError
from radraft.exchange_deadline import WAITS_PER_EXCHANGE, ExchangeDeadline

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
BETWEEN_FRAMES = b"\r\n\t "
"""Whitespace some senders put between frames; tolerated, anything else is not MLLP."""


class MllpError(RadraftError):
    """The peer closed, timed out or sent something that is not an MLLP frame."""


class FrameTooLargeError(MllpError):
    """A frame grew past the limit; ``head`` is its beginning (its MSH), for the answer."""

    def __init__(self, limit: int, head: bytes) -> None:
        super().__init__(f"MLLP frame larger than {limit} bytes")
        self.limit = limit
        self.head = head


def frame(message: bytes) -> bytes:
    """An MLLP frame around an encoded message."""
    return START_BLOCK + message + END_BLOCK


class FrameReader:
    """Reads successive frames from one connection, keeping bytes that arrive early."""

    def __init__(
        self,
        connection: socket.socket,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        frame_timeout: float | None = None,
    ) -> None:
        self._connection = connection
        self._max = max_message_bytes
        self._frame_timeout = frame_timeout
        """A frame must be whole within this long of the first byte after the previous one,
        whitespace between frames included (the socket's own timeout bounds each wait, not a
        peer sending a byte now and then)."""
        self._idle_timeout = connection.gettimeout()
        self._buffer = b""

    def next_frame(self) -> bytes | None:
        """The next message's bytes; None when the peer closed cleanly between frames.

        Raises
        ------
        MllpError
            On bytes outside a frame, a frame over the size limit, or a close inside a frame.
        OSError
            On a socket timeout or error.
        """
        begun = time.monotonic() if self._buffer else None  # any byte starts the clock
        while True:
            self._buffer = self._buffer.lstrip(BETWEEN_FRAMES)
            if self._buffer and not self._buffer.startswith(START_BLOCK):
                raise MllpError("bytes outside an MLLP frame")
            end = self._buffer.find(END_BLOCK)
            if end >= 0:
                message, self._buffer = self._buffer[1:end], self._buffer[end + 2 :]
                return message
            if len(self._buffer) > self._max + len(START_BLOCK):
                raise FrameTooLargeError(self._max, self._buffer[1:4097])
            self._bound_the_wait(begun)
            chunk = self._connection.recv(65536)
            if chunk and begun is None:
                begun = time.monotonic()
            if not chunk:
                if self._buffer:
                    raise MllpError("connection closed inside an MLLP frame")
                return None
            self._buffer += chunk

    def _bound_the_wait(self, begun: float | None) -> None:
        """The socket's timeout for the next read: the idle timeout between frames, at most
        what is left of the frame's time within one."""
        if self._frame_timeout is None:
            return
        if begun is None:
            self._connection.settimeout(self._idle_timeout)
            return
        left = self._frame_timeout - (time.monotonic() - begun)
        if left <= 0:
            raise MllpError(f"MLLP frame not whole within {self._frame_timeout:g} s")
        wait = left if self._idle_timeout is None else min(left, self._idle_timeout)
        self._connection.settimeout(wait)


def read_frame(
    connection: socket.socket, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> bytes:
    """Read exactly one frame (a peer's answer); raises ``MllpError`` on EOF or garbage."""
    message = FrameReader(connection, max_message_bytes=max_message_bytes).next_frame()
    if message is None:
        raise MllpError("connection closed before a whole MLLP frame arrived")
    return message


def send_message(
    host: str,
    port: int,
    message: bytes,
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> bytes:
    """Send one encoded message (over TLS with ``ssl_context``); return the peer's reply.

    Each wait is bounded by ``timeout``, the whole exchange by ``WAITS_PER_EXCHANGE`` times it
    (a peer that sends its reply a byte at a time does not hold the sender)."""
    with ExchangeDeadline(WAITS_PER_EXCHANGE * timeout) as deadline:
        try:
            with socket.create_connection((host, port), timeout=timeout) as raw:
                connection = (
                    ssl_context.wrap_socket(raw, server_hostname=host) if ssl_context else raw
                )
                deadline.watch(connection)
                connection.settimeout(timeout)
                connection.sendall(frame(message))
                return read_frame(connection)
        except (OSError, MllpError) as error:
            if deadline.expired:
                raise MllpError(f"MLLP {deadline.reason}") from error
            if isinstance(error, MllpError):
                raise
            raise MllpError(f"MLLP {type(error).__name__}") from error
