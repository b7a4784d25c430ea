"""Checks that a received Part 10 file holds a whole data set, element by element.

pydicom reads truncated files without complaint (a short pixel value just comes back short), so
the gateway walks the encoding itself: every element must fit in the file, every undefined-length
sequence must end with its delimiter, and the data set must end exactly at the end of the file.
Only headers are read; values are skipped with seeks, so a 15 MB image costs microseconds.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from radraft.errors import RadraftError

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = (0xFFFE, 0xE000)
ITEM_DELIMITER = (0xFFFE, 0xE00D)
SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)
LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
PREAMBLE_LENGTH = 128
PIXEL_DATA = (0x7FE0, 0x0010)
MAX_NESTING_DEPTH = 32
"""Sequences nested deeper than this are refused: real images and SRs stay far below, and an
attacker's thousands of levels would otherwise exhaust the parser's stack."""
NATIVE_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)
"""Transfer syntaxes whose Pixel Data is stored uncompressed (its length is fixed by the header)."""


class IncompleteDatasetError(RadraftError):
    """The file is not a whole DICOM data set; ``reason`` says where it breaks."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedFile:
    """What the walk learnt: the transfer syntax and, if present, the Pixel Data value length."""

    transfer_syntax: str
    pixel_data_length: int | None
    """Length of a top-level Pixel Data element with a defined length (native pixels)."""

    @property
    def is_native(self) -> bool:
        """Pixel Data, if any, is uncompressed, so its length must match the Image Pixel module."""
        return self.transfer_syntax in NATIVE_SYNTAXES


class _Walk:
    """State of one walk: the Pixel Data length found at the top level."""

    def __init__(self) -> None:
        self.pixel_data_length: int | None = None


def verify_part10_file(path: str) -> VerifiedFile:
    """Verify a Part 10 file is complete; returns its transfer syntax and Pixel Data length.

    Raises
    ------
    IncompleteDatasetError
        If the preamble, the file meta group or any element of the data set is cut short, or
        sequences nest deeper than ``MAX_NESTING_DEPTH``.
    """
    walk = _Walk()
    with open(path, "rb") as stream:
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        header = stream.read(PREAMBLE_LENGTH + 4)
        if len(header) < PREAMBLE_LENGTH + 4 or header[PREAMBLE_LENGTH:] != b"DICM":
            raise IncompleteDatasetError("no DICOM preamble")
        transfer_syntax = _read_file_meta(stream, size)
        start = stream.tell()
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
            try:
                inflated = inflater.decompress(stream.read()) + inflater.flush()
            except zlib.error as error:
                raise IncompleteDatasetError("deflated data set does not inflate") from error
            if not inflater.eof:
                raise IncompleteDatasetError("deflated data set is cut short")
            body: BinaryIO = io.BytesIO(inflated)
            _walk(body, len(inflated), implicit=False, little=True, state=walk)
        else:
            implicit = transfer_syntax == ImplicitVRLittleEndian
            little = transfer_syntax != ExplicitVRBigEndian
            _walk(stream, size, implicit=implicit, little=little, state=walk)
        if stream.tell() == start and transfer_syntax != DeflatedExplicitVRLittleEndian:
            raise IncompleteDatasetError("empty data set")
    return VerifiedFile(transfer_syntax, walk.pixel_data_length)


def _read_file_meta(stream: BinaryIO, size: int) -> str:
    """Walk group 0002 (always explicit VR little endian); return the transfer syntax UID."""
    transfer_syntax = ""
    while True:
        position = stream.tell()
        peek = stream.read(2)
        if len(peek) < 2:
            raise IncompleteDatasetError("file ends inside the file meta information")
        (group,) = struct.unpack("<H", peek)
        stream.seek(position)
        if group != 0x0002:
            break
        tag, _vr, length = _read_header(stream, size, implicit=False, little=True)
        if length == UNDEFINED_LENGTH or stream.tell() + length > size:
            raise IncompleteDatasetError("file meta element runs past the end of the file")
        value = stream.read(length)
        if tag == (0x0002, 0x0010):
            transfer_syntax = value.rstrip(b"\x00 ").decode("ascii", "replace")
    if not transfer_syntax:
        raise IncompleteDatasetError("file meta information has no transfer syntax")
    return transfer_syntax


def _read_header(
    stream: BinaryIO, end: int, *, implicit: bool, little: bool
) -> tuple[tuple[int, int], bytes | None, int]:
    order = "<" if little else ">"
    raw = stream.read(8)
    if len(raw) < 8 or stream.tell() > end:
        raise IncompleteDatasetError("file ends inside an element header")
    group, element = struct.unpack(order + "HH", raw[:4])
    tag = (group, element)
    if group == 0xFFFE or implicit:
        (length,) = struct.unpack(order + "L", raw[4:])
        return tag, None, length
    vr = raw[4:6]
    if vr in LONG_LENGTH_VRS:
        more = stream.read(4)
        if len(more) < 4:
            raise IncompleteDatasetError("file ends inside an element header")
        (length,) = struct.unpack(order + "L", more)
        return tag, vr, length
    (length,) = struct.unpack(order + "H", raw[6:])
    return tag, vr, length


def _walk(stream: BinaryIO, end: int, *, implicit: bool, little: bool, state: _Walk) -> None:
    """Skip over elements up to ``end``; fail if any value or sequence runs past it."""
    while stream.tell() < end:
        tag, vr, length = _read_header(stream, end, implicit=implicit, little=little)
        if tag in (ITEM_DELIMITER, SEQUENCE_DELIMITER):
            raise IncompleteDatasetError("unexpected delimiter in a data set")
        if length == UNDEFINED_LENGTH:
            # Undefined-length UN is encoded implicit VR little endian (PS3.5 6.2.2).
            _walk_sequence(stream, end, implicit=implicit or vr == b"UN", little=little, depth=1)
            continue
        if tag == PIXEL_DATA:
            state.pixel_data_length = length
        _skip(stream, length, end)


def _walk_sequence(stream: BinaryIO, end: int, *, implicit: bool, little: bool, depth: int) -> None:
    """Walk items (or pixel data fragments) until the sequence delimiter."""
    if depth > MAX_NESTING_DEPTH:
        raise IncompleteDatasetError(f"sequences nested deeper than {MAX_NESTING_DEPTH} levels")
    while True:
        tag, _vr, length = _read_header(stream, end, implicit=True, little=little)
        if tag == SEQUENCE_DELIMITER:
            return
        if tag != ITEM:
            raise IncompleteDatasetError("sequence holds something other than items")
        if length != UNDEFINED_LENGTH:
            _skip(stream, length, end)
            continue
        _walk_item(stream, end, implicit=implicit, little=little, depth=depth)


def _walk_item(stream: BinaryIO, end: int, *, implicit: bool, little: bool, depth: int) -> None:
    """Walk the elements of an undefined-length item until its delimiter."""
    while True:
        position = stream.tell()
        tag, _vr, _length = _read_header(stream, end, implicit=True, little=little)
        if tag == ITEM_DELIMITER:
            return
        stream.seek(position)
        tag, vr, length = _read_header(stream, end, implicit=implicit, little=little)
        if length == UNDEFINED_LENGTH:
            _walk_sequence(
                stream, end, implicit=implicit or vr == b"UN", little=little, depth=depth + 1
            )
        else:
            _skip(stream, length, end)


def _skip(stream: BinaryIO, length: int, end: int) -> None:
    if stream.tell() + length > end:
        raise IncompleteDatasetError("an element's value runs past the end of the data")
    stream.seek(length, io.SEEK_CUR)
