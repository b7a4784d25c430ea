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


class IncompleteDatasetError(RadraftError):
    """The file is not a whole DICOM data set; ``reason`` says where it breaks."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_part10_file(path: str) -> str:
    """Verify a Part 10 file is complete; returns its transfer syntax UID.

    Raises
    ------
    IncompleteDatasetError
        If the preamble, the file meta group or any element of the data set is cut short.
    """
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
            _walk(body, len(inflated), implicit=False, little=True)
        else:
            implicit = transfer_syntax == ImplicitVRLittleEndian
            little = transfer_syntax != ExplicitVRBigEndian
            _walk(stream, size, implicit=implicit, little=little)
        if stream.tell() == start and transfer_syntax != DeflatedExplicitVRLittleEndian:
            raise IncompleteDatasetError("empty data set")
    return transfer_syntax


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


def _walk(stream: BinaryIO, end: int, *, implicit: bool, little: bool) -> None:
    """Skip over elements up to ``end``; fail if any value or sequence runs past it."""
    while stream.tell() < end:
        tag, vr, length = _read_header(stream, end, implicit=implicit, little=little)
        if tag in (ITEM_DELIMITER, SEQUENCE_DELIMITER):
            raise IncompleteDatasetError("unexpected delimiter in a data set")
        if length == UNDEFINED_LENGTH:
            # Undefined-length UN is encoded implicit VR little endian (PS3.5 6.2.2).
            _walk_sequence(stream, end, implicit=implicit or vr == b"UN", little=little)
            continue
        _skip(stream, length, end)


def _walk_sequence(stream: BinaryIO, end: int, *, implicit: bool, little: bool) -> None:
    """Walk items (or pixel data fragments) until the sequence delimiter."""
    while True:
        tag, _vr, length = _read_header(stream, end, implicit=True, little=little)
        if tag == SEQUENCE_DELIMITER:
            return
        if tag != ITEM:
            raise IncompleteDatasetError("sequence holds something other than items")
        if length != UNDEFINED_LENGTH:
            _skip(stream, length, end)
            continue
        _walk_item(stream, end, implicit=implicit, little=little)


def _walk_item(stream: BinaryIO, end: int, *, implicit: bool, little: bool) -> None:
    """Walk the elements of an undefined-length item until its delimiter."""
    while True:
        position = stream.tell()
        tag, _vr, _length = _read_header(stream, end, implicit=True, little=little)
        if tag == ITEM_DELIMITER:
            return
        stream.seek(position)
        tag, vr, length = _read_header(stream, end, implicit=implicit, little=little)
        if length == UNDEFINED_LENGTH:
            _walk_sequence(stream, end, implicit=implicit or vr == b"UN", little=little)
        else:
            _skip(stream, length, end)


def _skip(stream: BinaryIO, length: int, end: int) -> None:
    if stream.tell() + length > end:
        raise IncompleteDatasetError("an element's value runs past the end of the data")
    stream.seek(length, io.SEEK_CUR)
