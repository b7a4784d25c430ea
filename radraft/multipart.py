"""multipart/related bodies (RFC 2387), as DICOMweb sends and receives whole instances.

Both directions stream: a response is written part by part from files, never assembled in
memory, and a request (STOW-RS) or a response (a worker's WADO-RS fetch) is read part by part
into files, each part bounded, so a 2 GB upload costs disk, not memory. Parsing is
python-multipart's (the parser Starlette uses for forms); this module adds the files, the limits
and what counts as a whole part: one closed by its boundary.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from radraft.errors import MalformedRequestError, PayloadTooLargeError
from radraft.free_space import FreeSpaceWatch, disk_error

READ_CHUNK = 1 << 20


def new_boundary() -> str:
    """A boundary no DICOM file will contain by chance."""
    return f"radraft-{secrets.token_hex(16)}"


@dataclass(frozen=True)
class MediaType:
    """A parsed Content-Type or Accept entry: ``type/subtype`` and its parameters."""

    name: str
    parameters: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> MediaType:
        """Parse one media type with its parameters (quoted values allowed)."""
        message = Message()
        message["Content-Type"] = value
        parameters = {str(key).lower(): str(val) for key, val in message.get_params(failobj=[])[1:]}
        return cls(message.get_content_type(), parameters)


@dataclass(frozen=True)
class OutgoingPart:
    """One part of a response: its media type and where its bytes come from."""

    content_type: str
    chunks: Iterable[bytes]
    location: str | None = None


def file_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes, a megabyte at a time."""
    with open(path, "rb") as stream:
        while chunk := stream.read(READ_CHUNK):
            yield chunk


def write_multipart(parts: Iterable[OutgoingPart], boundary: str) -> Iterator[bytes]:
    """The body of a multipart/related response, as it is produced."""
    for part in parts:
        head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
        if part.location is not None:
            head += f"Content-Location: {part.location}\r\n"
        yield (head + "\r\n").encode("ascii")
        yield from part.chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


@dataclass
class ReceivedPart:
    """One part read into a file; ``complete`` only when its closing boundary arrived whole."""

    path: Path
    content_type: str
    size: int = 0
    complete: bool = False
    too_large: bool = False
    unwritten: str | None = None
    """Why the disk did not take it (e.g. ``disk: ENOSPC``, ``disk nearly full (...)``); its
    file is then empty. Worth trying again later, unlike a part that is too large."""


@dataclass
class _Headers:
    name: bytes = b""
    value: bytes = b""
    found: dict[str, str] = field(default_factory=dict)


class MultipartFileReader:
    """Reads a multipart body fed in chunks; every part goes to a file of its own in ``folder``.

    A part over ``max_part_bytes`` stops being written (it is kept as a too-large failure, its
    file truncated), and so does one the disk does not take: a write that fails, or one that
    would leave less than ``min_free_bytes`` free (``unwritten``); the rest of the body is read
    on. More than ``max_parts`` parts, or bytes that are not multipart, end the whole request.
    ``close`` removes every file not taken.
    """

    def __init__(
        self,
        boundary: str,
        folder: Path,
        *,
        max_part_bytes: int,
        max_parts: int,
        min_free_bytes: int = 0,
    ) -> None:
        if not boundary:
            raise MalformedRequestError("multipart body without a boundary")
        self._folder = folder
        self._max_part_bytes = max_part_bytes
        self._max_parts = max_parts
        self._min_free_bytes = min_free_bytes
        self.parts: list[ReceivedPart] = []
        self.ended = False
        self._headers = _Headers()
        self._stream: BinaryIO | None = None
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, data: bytes) -> None:
        """Parse the next bytes of the body."""
        try:
            self._parser.write(data)
        except MultipartParseError as error:
            self._close_stream()
            raise MalformedRequestError(f"not a multipart body: {error}") from error

    def finish(self) -> list[ReceivedPart]:
        """The parts, in order; a part the body ended in the middle of is not complete."""
        self._close_stream()
        return self.parts

    def close(self) -> None:
        """Remove the files of every part still here (stored ones were moved away)."""
        self._close_stream()
        for part in self.parts:
            part.path.unlink(missing_ok=True)

    def _part_begin(self) -> None:
        if len(self.parts) >= self._max_parts:
            raise PayloadTooLargeError(f"more than {self._max_parts} parts in one request")
        self._headers = _Headers()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._headers.name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._headers.value += data[start:end]

    def _header_end(self) -> None:
        name = self._headers.name.decode("latin-1").strip().lower()
        self._headers.found[name] = self._headers.value.decode("latin-1").strip()
        self._headers.name = self._headers.value = b""

    def _headers_finished(self) -> None:
        descriptor, name = tempfile.mkstemp(prefix="part-", suffix=".dcm", dir=self._folder)
        # Unbuffered: a part the disk refuses is then truncated without a buffer to flush first.
        self._stream = os.fdopen(descriptor, "wb", buffering=0)
        self._free_space = FreeSpaceWatch(self._min_free_bytes)  # each part is its own file
        content_type = self._headers.found.get("content-type", "")
        self.parts.append(ReceivedPart(Path(name), content_type))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.too_large or part.unwritten or self._stream is None:
            return
        if part.size > self._max_part_bytes:
            part.too_large = True
            self._drop(part)
            return
        try:
            part.unwritten = self._free_space.shortfall(self._stream.fileno(), end - start)
            if part.unwritten is None:
                _write_all(self._stream, memoryview(data)[start:end])
        except OSError as error:
            part.unwritten = disk_error(error)
        if part.unwritten:
            self._drop(part)

    def _drop(self, part: ReceivedPart) -> None:
        """Write no more of this part and free what it had taken (truncating needs no space)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.truncate(0)
            stream.close()

    def _part_end(self) -> None:
        self._close_stream()
        self.parts[-1].complete = True

    def _end(self) -> None:
        self.ended = True

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


def _write_all(stream: BinaryIO, data: memoryview) -> None:
    """An unbuffered write may take fewer bytes than it was given."""
    while data:
        data = data[stream.write(data) :]
