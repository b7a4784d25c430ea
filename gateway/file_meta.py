"""The File Meta Information of a reception file, encoded straight to bytes.

pynetdicom starts every reception file with File Meta Information built from the C-STORE
request (its ``create_file_meta``) and written by pydicom's ``write_file_meta_info``, which
validates and encodes the group element by element: about 0.25 ms of CPU per image on the
development machine, on the thread that reads the data set. That group is always the same six
elements in Explicit VR Little Endian (PS3.10 7.1), so ``write_reception_file_meta`` writes
their bytes itself. Any other content (another element, an empty or non-ASCII value) goes to
pydicom's writer, which keeps its own checks and errors; the tests hold the two to the same
bytes.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info

from gateway.even_values import even_length_ascii

META_GROUP = 0x0002
SHORT_LENGTH_ELEMENTS = (
    (0x0002, b"UI", "MediaStorageSOPClassUID", b"\x00"),
    (0x0003, b"UI", "MediaStorageSOPInstanceUID", b"\x00"),
    (0x0010, b"UI", "TransferSyntaxUID", b"\x00"),
    (0x0012, b"UI", "ImplementationClassUID", b"\x00"),
    (0x0013, b"SH", "ImplementationVersionName", b" "),
)
"""The text elements pynetdicom's file meta holds, in tag order: element, VR, keyword, pad."""
EXPECTED_KEYWORDS = frozenset(
    {"FileMetaInformationGroupLength", "FileMetaInformationVersion"}
    | {keyword for _, _, keyword, _ in SHORT_LENGTH_ELEMENTS}
)


def _short_element(element: int, vr: bytes, value: bytes) -> bytes:
    """An Explicit VR element with a 2-byte length (UL, UI, SH)."""
    return struct.pack("<HH2sH", META_GROUP, element, vr, len(value)) + value


def encode_reception_file_meta(file_meta: FileMetaDataset) -> bytes | None:
    """The group 0002 bytes of pynetdicom's file meta, or None if pydicom must write it."""
    if {element.keyword for element in file_meta} != EXPECTED_KEYWORDS:
        return None
    version = file_meta.FileMetaInformationVersion
    if not isinstance(version, bytes) or len(version) % 2:
        return None
    parts = [struct.pack("<HH2s2xL", META_GROUP, 0x0001, b"OB", len(version)) + version]
    for element, vr, keyword, pad in SHORT_LENGTH_ELEMENTS:
        value = even_length_ascii(str(getattr(file_meta, keyword) or ""), pad)
        if not value:  # empty (pydicom refuses it) or not ASCII
            return None
        parts.append(_short_element(element, vr, value))
    body = b"".join(parts)
    return _short_element(0x0000, b"UL", struct.pack("<L", len(body))) + body


def write_reception_file_meta(stream: BinaryIO, file_meta: FileMetaDataset, *args: Any) -> None:
    """pydicom's ``write_file_meta_info`` for pynetdicom's reception files, without pydicom
    where the group is the usual one."""
    encoded = None if args else encode_reception_file_meta(file_meta)
    if encoded is None:
        write_file_meta_info(stream, file_meta, *args)  # type: ignore[arg-type]
        return
    stream.write(encoded)
