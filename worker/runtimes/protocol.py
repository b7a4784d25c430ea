"""The batch protocol between a worker and its model child process, over stdin/stdout.

A frame is a 4-byte big-endian header length, a JSON header, an 8-byte payload length and the
payload (the images' raw uint8 bytes, concatenated in request order). JSON and raw bytes keep
the two sides independent of each other's Python packages: the CheXagent child runs
transformers 4.40.0 in its own virtual environment.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

from worker.runtimes.base import GenerationRequest, GenerationResult

MAX_HEADER_BYTES = 16 << 20


class ProtocolError(EOFError):
    """The other side closed the pipe or sent a malformed frame."""


def write_frame(stream: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    """Write one frame and flush."""
    encoded = json.dumps(header).encode()
    stream.write(struct.pack(">I", len(encoded)) + encoded + struct.pack(">Q", len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """Read one frame; raises ``ProtocolError`` on EOF or a malformed frame."""
    raw = _read_exactly(stream, 4)
    (length,) = struct.unpack(">I", raw)
    if length > MAX_HEADER_BYTES:
        raise ProtocolError("frame header too large")
    header = json.loads(_read_exactly(stream, length))
    (payload_length,) = struct.unpack(">Q", _read_exactly(stream, 8))
    return header, _read_exactly(stream, payload_length)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise ProtocolError("pipe closed")
        data += chunk
    return data


def encode_requests(requests: Sequence[GenerationRequest]) -> tuple[dict[str, Any], bytes]:
    """Header and payload of a ``generate`` frame."""
    items = []
    payload = bytearray()
    for request in requests:
        shapes = []
        for image in request.images:
            array = np.ascontiguousarray(image, dtype=np.uint8)
            shapes.append(list(array.shape))
            payload += array.tobytes()
        items.append(
            {
                "instruction": request.instruction,
                "max_new_tokens": request.max_new_tokens,
                "min_new_tokens": request.min_new_tokens,
                "shapes": shapes,
            }
        )
    return {"op": "generate", "requests": items}, bytes(payload)


def decode_requests(header: dict[str, Any], payload: bytes) -> list[GenerationRequest]:
    """The requests of a ``generate`` frame."""
    requests = []
    offset = 0
    for item in header["requests"]:
        images = []
        for shape in item["shapes"]:
            size = int(np.prod(shape))
            images.append(
                np.frombuffer(payload, dtype=np.uint8, count=size, offset=offset).reshape(shape)
            )
            offset += size
        requests.append(
            GenerationRequest(
                tuple(images),
                item["instruction"],
                int(item["max_new_tokens"]),
                int(item.get("min_new_tokens", 0)),
            )
        )
    return requests


def encode_results(results: Sequence[GenerationResult]) -> dict[str, Any]:
    """Header of a successful reply."""
    return {
        "ok": True,
        "results": [
            {
                "text": r.text,
                "prompt_tokens": r.prompt_tokens,
                "generated_tokens": r.generated_tokens,
                "seconds": r.seconds,
                "batch_size": r.batch_size,
                "prompt": r.prompt,
            }
            for r in results
        ],
    }


def decode_results(header: dict[str, Any]) -> list[GenerationResult]:
    """Results of a successful reply."""
    return [GenerationResult(**item) for item in header["results"]]
