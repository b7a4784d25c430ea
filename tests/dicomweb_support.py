"""A DICOMweb client's side of multipart/related, written here independently of radraft's."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx2

TOKEN_HEADERS = {"Authorization": "Bearer test-service-token"}


def stow_body(files: list[Path], *, cut_last_part_to: int | None = None) -> tuple[bytes, str]:
    """A STOW-RS body of Part 10 files and its Content-Type; optionally the last part cut short
    (the body itself still closes properly, as a proxy that lost bytes of one part would send)."""
    boundary = f"test-{secrets.token_hex(8)}"
    body = b""
    for index, path in enumerate(files):
        data = path.read_bytes()
        if cut_last_part_to is not None and index == len(files) - 1:
            data = data[:cut_last_part_to]
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def parts_of(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(Content-Type, bytes) of each part of a multipart response."""
    match = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    assert match, content_type
    delimiter = b"--" + match.group(1).encode()
    assert body.rstrip().endswith(delimiter + b"--"), "the body ends with its closing delimiter"
    parts = []
    for chunk in body.split(delimiter)[1:-1]:
        head, _, payload = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(
            line.split(": ", 1) for line in head.decode("latin-1").split("\r\n") if ": " in line
        )
        parts.append((headers.get("Content-Type", ""), payload.removesuffix(b"\r\n")))
    return parts


def payloads(response: httpx2.Response) -> list[bytes]:
    """The bytes of each part of a multipart response, in order."""
    return [payload for _, payload in parts_of(response.content, response.headers["content-type"])]


def dataset_bytes(part10: bytes) -> bytes:
    """A Part 10 file without its preamble and file meta: the data set as it went over DIMSE."""
    assert part10[128:132] == b"DICM"
    group_length = int.from_bytes(part10[140:144], "little")
    return part10[144 + group_length :]
