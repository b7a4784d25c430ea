"""Part 10 files an attacker (or a broken modality) sends: bombs, deep nesting."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

from radraft.synthetic import make_chest_study

MIB = 1 << 20


def _header_only(seed: int) -> Dataset:
    """A small chest DX header (no pixel data) that is otherwise a valid instance."""
    (dataset,) = make_chest_study(seed, rows=8, columns=8, views=("PA",))
    del dataset.PixelData
    return dataset


def _preamble_and_meta(dataset: Dataset, transfer_syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = uid.UID(transfer_syntax)
    meta.ImplementationClassUID = uid.PYDICOM_IMPLEMENTATION_UID
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta)
    return b"\x00" * 128 + b"DICM" + buffer.getvalue()


def _explicit_le(dataset: Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def deflate_bomb(folder: Path, *, inflated_bytes: int, seed: int = 900) -> Path:
    """A Deflated Explicit VR Little Endian file whose data set inflates to ``inflated_bytes``
    (Pixel Data of zeros), about a thousandth of that on disk."""
    dataset = _header_only(seed)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = [compressor.compress(_explicit_le(dataset))]
    zeros = inflated_bytes - len(_explicit_le(dataset)) - 12
    # (7FE0,0010) Pixel Data, OB: tag, "OB", two reserved bytes, a 32-bit length.
    body.append(compressor.compress(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, zeros)))
    chunk = b"\x00" * MIB
    remaining = zeros
    while remaining > 0:
        body.append(compressor.compress(chunk[: min(remaining, MIB)]))
        remaining -= MIB
    body.append(compressor.flush())
    path = folder / "bomb.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        stream.write(_preamble_and_meta(dataset, uid.DeflatedExplicitVRLittleEndian))
        for part in body:
            stream.write(part)
    return path


def nested_sequences(
    folder: Path, *, depth: int, defined_lengths: bool = False, seed: int = 901
) -> Path:
    """An Explicit VR Little Endian file with ``depth`` nested sequences, each of undefined
    length (closed by delimiters) or, with ``defined_lengths``, each of defined length."""
    dataset = _header_only(seed)
    path = folder / "nested.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    nested = _defined_nesting(depth) if defined_lengths else _undefined_nesting(depth)
    path.write_bytes(
        _preamble_and_meta(dataset, uid.ExplicitVRLittleEndian) + _explicit_le(dataset) + nested
    )
    return path


def _undefined_nesting(depth: int) -> bytes:
    # (0040,A730) Content Sequence, SQ, undefined length; each item holds the next sequence.
    sequence_start = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item_start = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    sequence_end = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return (sequence_start + item_start) * depth + (item_end + sequence_end) * depth


def _defined_nesting(depth: int) -> bytes:
    # The same Content Sequences, but every sequence and item states its length: no delimiters.
    body = b""
    for _ in range(depth):
        item = struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body
        body = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, len(item)) + item
    return body


def element_flood(folder: Path, *, elements: int, seed: int = 902) -> Path:
    """An Explicit VR Little Endian file with ``elements`` distinct 10-byte private elements
    (odd groups from 0009, 0xF000 per group) before the header: a memory bomb for any reader
    that holds every element (about 10 MB for a million)."""
    dataset = _header_only(seed)
    flood = b"".join(
        struct.pack("<HH2sH", 0x0009 + 2 * (index // 0xF000), 0x1000 + index % 0xF000, b"LO", 2)
        + b"A "
        for index in range(elements)
    )
    path = folder / "flood.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        _preamble_and_meta(dataset, uid.ExplicitVRLittleEndian) + flood + _explicit_le(dataset)
    )
    return path


def rle_image(frames: np.ndarray, seed: int) -> Dataset:
    """A chest DX data set holding ``frames`` (n, rows, columns uint16), RLE Lossless encoded."""
    count, rows, columns = frames.shape
    (dataset,) = make_chest_study(seed, rows=rows, columns=columns, views=("PA",))
    dataset.NumberOfFrames = count
    dataset.compress(uid.RLELossless, frames if count > 1 else frames[0])
    return dataset


def pixel_bomb(side: int, seed: int = 903) -> Dataset:
    """An RLE image whose header claims ``side`` x ``side`` pixels: a constant frame compresses
    to almost nothing whatever its size, so the file is a few KB while a decoder would allocate
    what Rows and Columns say."""
    dataset = rle_image(np.zeros((1, 16, 16), dtype=np.uint16), seed)
    dataset.Rows = dataset.Columns = side
    return dataset
