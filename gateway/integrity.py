"""Checks that a received Part 10 file holds a whole data set, element by element.

pydicom reads truncated files without complaint (a short pixel value just comes back short), so
the gateway walks the encoding itself: every element must fit in the file, every undefined-length
sequence must end with its delimiter, every defined-length item must hold whole elements, and the
data set must end exactly at the end of the file. Sequences are walked into whatever their length
encoding, so their nesting is bounded before anything that reads every element (pydicom's JSON,
its ``str``) would recurse through it. Only headers are read; other values are skipped, so a
15 MB image costs well under a millisecond.

A Deflated Explicit VR Little Endian data set is inflated as a stream while it is walked, never
held whole in memory, and refused once it inflates past a limit: 1 MB on the wire can inflate to
1 GB, and the walk stops at the limit instead of reading on.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from pydicom.datadict import dictionary_VR, keyword_dict
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
DEFAULT_MAX_ELEMENTS = 250_000
"""Most elements and items in one data set (``RADRAFT_DICOM_MAX_ELEMENTS``): chest images and
reports hold hundreds; a large enhanced multi-frame CT some tens of thousands."""
DEFAULT_MAX_INFLATED_BYTES = 256 << 20
"""Largest inflated size of a deflated data set (``RADRAFT_DICOM_MAX_INFLATED_BYTES``)."""
INFLATE_CHUNK = 1 << 16
NATIVE_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)
"""Transfer syntaxes whose Pixel Data is stored uncompressed (its length is fixed by the header)."""
SEQUENCE_TAGS = frozenset(tag for tag in keyword_dict.values() if dictionary_VR(tag) == "SQ")
"""Tags the data dictionary knows as sequences: how an implicit VR (or UN) value is recognised
as one, the way pydicom recognises it when it reads the element."""


class IncompleteDatasetError(RadraftError):
    """The file is not a whole DICOM data set; ``reason`` says where it breaks."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InflationLimitError(IncompleteDatasetError):
    """A deflated data set inflates past the limit (a decompression bomb, or just too big)."""


class ElementLimitError(IncompleteDatasetError):
    """A data set holds more elements than the limit (an element flood, or just too big)."""


@dataclass(frozen=True)
class VerifiedFile:
    """What the walk learnt: the transfer syntax and, if present, the Pixel Data value length."""

    transfer_syntax: str
    pixel_data_length: int | None
    """Length of a top-level Pixel Data element with a defined length (native pixels)."""
    pixel_data_offset: int | None = None
    """Where the top-level Pixel Data element starts in the file (not for a deflated data set,
    whose file offsets are of compressed bytes)."""

    @property
    def is_native(self) -> bool:
        """Pixel Data, if any, is uncompressed, so its length must match the Image Pixel module."""
        return self.transfer_syntax in NATIVE_SYNTAXES


class Reader(Protocol):
    """Forward-only access to the encoded data set, with a little look-ahead."""

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end."""
        ...

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes without consuming them (fewer only at the end)."""
        ...

    def skip(self, size: int) -> None:
        """Consume ``size`` bytes; ``IncompleteDatasetError`` if the data ends first."""
        ...

    def at_end(self) -> bool:
        """True when every byte has been consumed."""
        ...

    def position(self) -> int | None:
        """The file offset of the next byte, or None where bytes are not the file's."""
        ...


class FileReader:
    """A reader over the rest of a file whose size is known: skipping is a seek."""

    def __init__(self, stream: BinaryIO, end: int) -> None:
        self._stream = stream
        self._end = end

    def read(self, size: int) -> bytes:
        return self._stream.read(max(0, min(size, self._end - self._stream.tell())))

    def peek(self, size: int) -> bytes:
        position = self._stream.tell()
        data = self.read(size)
        self._stream.seek(position)
        return data

    def skip(self, size: int) -> None:
        if self._stream.tell() + size > self._end:
            raise IncompleteDatasetError("an element's value runs past the end of the data")
        self._stream.seek(size, io.SEEK_CUR)

    def at_end(self) -> bool:
        return self._stream.tell() >= self._end

    def position(self) -> int | None:
        return self._stream.tell()


class InflatingReader:
    """A reader that inflates a deflated data set as it is consumed, up to ``limit`` bytes."""

    def __init__(self, stream: BinaryIO, *, limit: int) -> None:
        self._stream = stream
        self._inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
        self._buffer = b""
        self._inflated = 0
        self._limit = limit

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size and not self._inflater.eof:
            chunk = self._inflater.unconsumed_tail or self._stream.read(INFLATE_CHUNK)
            if not chunk:
                raise IncompleteDatasetError("deflated data set is cut short")
            try:
                data = self._inflater.decompress(chunk, INFLATE_CHUNK)
            except zlib.error as error:
                raise IncompleteDatasetError("deflated data set does not inflate") from error
            self._inflated += len(data)
            if self._inflated > self._limit:
                raise InflationLimitError(f"deflated data set inflates past {self._limit} bytes")
            self._buffer += data

    def read(self, size: int) -> bytes:
        self._fill(size)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return self._buffer[:size]

    def skip(self, size: int) -> None:
        while size > 0:
            step = min(size, INFLATE_CHUNK)
            if len(self.read(step)) < step:
                raise IncompleteDatasetError("an element's value runs past the end of the data")
            size -= step

    def at_end(self) -> bool:
        self._fill(1)
        return not self._buffer and self._inflater.eof

    def position(self) -> int | None:
        return None

    def finish(self) -> None:
        """After the walk: the deflated stream must have ended (nothing cut, nothing after)."""
        if not self._inflater.eof:
            raise IncompleteDatasetError("deflated data set is cut short")


class BoundedReader:
    """The next ``length`` bytes of another reader: the value of a defined-length sequence or
    item, whose contents must end exactly at its last byte."""

    def __init__(self, reader: Reader, length: int) -> None:
        self._reader = reader
        self._left = length

    def read(self, size: int) -> bytes:
        data = self._reader.read(min(size, self._left))
        self._left -= len(data)
        return data

    def peek(self, size: int) -> bytes:
        return self._reader.peek(min(size, self._left))

    def skip(self, size: int) -> None:
        if size > self._left:
            raise IncompleteDatasetError("an element's value runs past the end of its sequence")
        self._reader.skip(size)
        self._left -= size

    def at_end(self) -> bool:
        return self._left == 0

    def position(self) -> int | None:
        return self._reader.position()


class _Walk:
    """One walk over a data set's encoding: the limits it holds the data set to, what it found.

    The walk recurses once per nesting level (at most ``MAX_NESTING_DEPTH``) and reads each
    element header once, counting it against ``max_elements``: pydicom holds every element of
    a header in memory, about 300 bytes each, so a 200 MB file of 10-byte elements would
    otherwise take gigabytes before its first attribute was looked at.
    """

    def __init__(
        self,
        *,
        little: bool = True,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        stop_at_pixel_data: bool = False,
    ) -> None:
        self.little = little
        self.max_elements = max_elements
        self.elements = 0
        self.pixel_data_length: int | None = None
        self.pixel_data_offset: int | None = None
        self.stop_at_pixel_data = stop_at_pixel_data

    def data_set(self, reader: Reader, *, implicit: bool) -> None:
        """Walk the top-level elements to the end; fail if any value or sequence runs past it."""
        while not reader.at_end():
            start = reader.position()
            tag, vr, length = self._header(reader, implicit=implicit)
            if tag in (ITEM_DELIMITER, SEQUENCE_DELIMITER):
                raise IncompleteDatasetError("unexpected delimiter in a data set")
            if tag == PIXEL_DATA:
                self.pixel_data_offset = start
                if length != UNDEFINED_LENGTH:
                    self.pixel_data_length = length
                if self.stop_at_pixel_data:
                    return
            self._value(reader, tag, vr, length, implicit=implicit, depth=0)

    def _header(
        self, reader: Reader, *, implicit: bool
    ) -> tuple[tuple[int, int], bytes | None, int]:
        self.elements += 1
        if self.elements > self.max_elements:
            raise ElementLimitError(f"data set has more than {self.max_elements} elements")
        return _read_header(reader, implicit=implicit, little=self.little)

    def _value(
        self,
        reader: Reader,
        tag: tuple[int, int],
        vr: bytes | None,
        length: int,
        *,
        implicit: bool,
        depth: int,
    ) -> None:
        """Consume one element's value: a sequence is walked item by item, whether its length is
        defined or not (pydicom parses both, so both must be bounded); anything else is
        skipped."""
        # An undefined length, or a UN that the dictionary knows as a sequence, is encoded
        # implicit VR little endian inside (PS3.5 6.2.2).
        inner_implicit = implicit or vr == b"UN"
        if length == UNDEFINED_LENGTH:
            self._sequence(
                reader,
                implicit=inner_implicit,
                depth=depth + 1,
                delimited=True,
                items_are_data_sets=not _holds_fragments(tag, vr),
            )
        elif _is_sequence(tag, vr):
            self._sequence(
                BoundedReader(reader, length),
                implicit=inner_implicit,
                depth=depth + 1,
                delimited=False,
                items_are_data_sets=True,
            )
        else:
            reader.skip(length)

    def _sequence(
        self,
        reader: Reader,
        *,
        implicit: bool,
        depth: int,
        delimited: bool,
        items_are_data_sets: bool,
    ) -> None:
        """Walk items (or pixel data fragments) until the sequence delimiter, or, for a
        defined-length sequence (``reader`` bounded to its value), until its last byte.

        ``delimited`` is the sequence's own encoding: its reader may be bounded by an enclosing
        defined-length item even when the sequence itself ends with a delimiter."""
        if depth > MAX_NESTING_DEPTH:
            raise IncompleteDatasetError(f"sequences nested deeper than {MAX_NESTING_DEPTH} levels")
        while delimited or not reader.at_end():
            tag, _vr, length = self._header(reader, implicit=True)
            if tag == SEQUENCE_DELIMITER:
                if not delimited:
                    raise IncompleteDatasetError("sequence delimiter in a defined-length sequence")
                return
            if tag != ITEM:
                raise IncompleteDatasetError("sequence holds something other than items")
            if length == UNDEFINED_LENGTH:
                self._delimited_item(reader, implicit=implicit, depth=depth)
            elif items_are_data_sets:
                self._defined_length_item(
                    BoundedReader(reader, length), implicit=implicit, depth=depth
                )
            else:
                reader.skip(length)

    def _defined_length_item(self, reader: Reader, *, implicit: bool, depth: int) -> None:
        """Walk the elements of a defined-length item to its last byte."""
        while not reader.at_end():
            tag, vr, length = self._header(reader, implicit=implicit)
            if tag[0] == 0xFFFE:
                raise IncompleteDatasetError("delimiter or item inside a sequence item")
            self._value(reader, tag, vr, length, implicit=implicit, depth=depth)

    def _delimited_item(self, reader: Reader, *, implicit: bool, depth: int) -> None:
        """Walk the elements of an undefined-length item until its delimiter."""
        order = "<" if self.little else ">"
        while True:
            peek = reader.peek(4)
            if len(peek) < 4:
                raise IncompleteDatasetError("file ends inside an element header")
            if struct.unpack(order + "HH", peek) == ITEM_DELIMITER:
                self._header(reader, implicit=True)
                return
            tag, vr, length = self._header(reader, implicit=implicit)
            self._value(reader, tag, vr, length, implicit=implicit, depth=depth)


def verify_part10_file(
    path: str,
    *,
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> VerifiedFile:
    """Verify a Part 10 file is complete; returns its transfer syntax and Pixel Data length.

    Raises
    ------
    IncompleteDatasetError
        If the preamble, the file meta group or any element of the data set is cut short, or
        sequences nest deeper than ``MAX_NESTING_DEPTH``, or (``InflationLimitError``) a
        deflated data set inflates past ``max_inflated_bytes``, or (``ElementLimitError``) the
        data set holds more than ``max_elements`` elements and items.
    """
    with open(path, "rb") as stream:
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        transfer_syntax = _read_preamble_and_file_meta(stream, size)
        walk = _walk_for(transfer_syntax, max_elements=max_elements)
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            inflating = InflatingReader(stream, limit=max_inflated_bytes)
            walk.data_set(inflating, implicit=False)
            inflating.finish()
        else:
            reader = FileReader(stream, size)
            if reader.at_end():
                raise IncompleteDatasetError("empty data set")
            walk.data_set(reader, implicit=transfer_syntax == ImplicitVRLittleEndian)
    return VerifiedFile(transfer_syntax, walk.pixel_data_length, walk.pixel_data_offset)


def pixel_data_offset_in(prefix: bytes) -> int | None:
    """Where the top-level Pixel Data element starts in a Part 10 file that begins with
    ``prefix``, walking the same way as ``verify_part10_file``; None if the prefix ends, or
    breaks, before it, or the data set is deflated."""
    stream = io.BytesIO(prefix)
    try:
        transfer_syntax = _read_preamble_and_file_meta(stream, len(prefix))
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            return None
        walk = _walk_for(transfer_syntax, stop_at_pixel_data=True)
        walk.data_set(
            FileReader(stream, len(prefix)), implicit=transfer_syntax == ImplicitVRLittleEndian
        )
    except IncompleteDatasetError:
        return None
    return walk.pixel_data_offset


def _walk_for(
    transfer_syntax: str,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    stop_at_pixel_data: bool = False,
) -> _Walk:
    """A walk in the transfer syntax's byte order (only Explicit VR Big Endian is big)."""
    return _Walk(
        little=transfer_syntax != ExplicitVRBigEndian,
        max_elements=max_elements,
        stop_at_pixel_data=stop_at_pixel_data,
    )


def _read_preamble_and_file_meta(stream: BinaryIO, size: int) -> str:
    """Check the preamble's ``DICM`` and walk the file meta group; returns the transfer syntax
    and leaves ``stream`` at the data set."""
    preamble = stream.read(PREAMBLE_LENGTH + 4)
    if len(preamble) < PREAMBLE_LENGTH + 4 or preamble[PREAMBLE_LENGTH:] != b"DICM":
        raise IncompleteDatasetError("no DICOM preamble")
    return _read_file_meta(FileReader(stream, size))


def _read_file_meta(reader: Reader) -> str:
    """Walk group 0002 (always explicit VR little endian); return the transfer syntax UID."""
    transfer_syntax = ""
    while True:
        peek = reader.peek(2)
        if len(peek) < 2:
            raise IncompleteDatasetError("file ends inside the file meta information")
        (group,) = struct.unpack("<H", peek)
        if group != 0x0002:
            break
        tag, _vr, length = _read_header(reader, implicit=False, little=True)
        if length == UNDEFINED_LENGTH:
            raise IncompleteDatasetError("file meta element has an undefined length")
        value = reader.read(length)
        if len(value) < length:
            raise IncompleteDatasetError("file meta element runs past the end of the file")
        if tag == (0x0002, 0x0010):
            transfer_syntax = value.rstrip(b"\x00 ").decode("ascii", "replace")
    if not transfer_syntax:
        raise IncompleteDatasetError("file meta information has no transfer syntax")
    return transfer_syntax


def _read_header(
    reader: Reader, *, implicit: bool, little: bool
) -> tuple[tuple[int, int], bytes | None, int]:
    order = "<" if little else ">"
    raw = reader.read(8)
    if len(raw) < 8:
        raise IncompleteDatasetError("file ends inside an element header")
    group, element = struct.unpack(order + "HH", raw[:4])
    tag = (group, element)
    if group == 0xFFFE or implicit:
        (length,) = struct.unpack(order + "L", raw[4:])
        return tag, None, length
    vr = raw[4:6]
    if vr in LONG_LENGTH_VRS:
        more = reader.read(4)
        if len(more) < 4:
            raise IncompleteDatasetError("file ends inside an element header")
        (length,) = struct.unpack(order + "L", more)
        return tag, vr, length
    (length,) = struct.unpack(order + "H", raw[6:])
    return tag, vr, length


def _is_sequence(tag: tuple[int, int], vr: bytes | None) -> bool:
    """Whether a defined-length value holds items: SQ by its explicit VR, or, where the VR is
    implicit or UN, by the data dictionary (as pydicom decides when it reads it)."""
    if vr == b"SQ":
        return True
    return vr in (None, b"UN") and (tag[0] << 16 | tag[1]) in SEQUENCE_TAGS


def _holds_fragments(tag: tuple[int, int], vr: bytes | None) -> bool:
    """Undefined-length Pixel Data (or OB/OW) holds encapsulated fragments, not data sets."""
    return tag == PIXEL_DATA or vr in (b"OB", b"OW")
