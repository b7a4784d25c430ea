"""WADO-RS: instances byte for byte, metadata as DICOM JSON, frames, bulk data, rendered images.

Instances are the spooled files as they were received: radraft never transcodes them, so a
request may name the stored transfer syntax or ``*`` (the default). Frames of native images are
cut from Pixel Data as Explicit VR Little Endian bytes; frames of compressed images are passed
through as stored (``transfer-syntax=*`` or their own image media type) or decoded when the
caller asks for uncompressed bytes. Rendered images are made the way the case page's previews
are (``radraft.imaging``): JPEG or PNG, the header's window unless one is given.

A stored instance may be gigabytes (a tomosynthesis stack; a header with a large private blob),
so nothing here reads a whole file: headers are read with long values left in the file, frames
are read one at a time as the response is written, and long values are streamed a megabyte at
a time. Values inside sequences are the exception: pydicom reads a sequence whole, so they are
read with it (the intake's instance limit bounds them).
"""

from __future__ import annotations

import io
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread, uid
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.dicomweb.attributes import JsonDataset
from gateway.dicomweb.bulk_paths import BulkDataPath, element_paths
from gateway.integrity import IncompleteDatasetError, verify_part10_file
from radraft.dicom_errors import UNREADABLE_DICOM_ERRORS
from radraft.dicomweb_paths import instance_url
from radraft.errors import (
    GoneError,
    InvalidInputError,
    MalformedRequestError,
    NotAcceptableError,
    NotFoundError,
)
from radraft.imaging import DEFERRED_VALUE_BYTES, decode_pixels, load_for_model
from radraft.models import Instance, Series, Study
from radraft.multipart import READ_CHUNK, MediaType, OutgoingPart, file_chunks

STORED_FILE_READ_ERRORS: tuple[type[Exception], ...] = (*UNREADABLE_DICOM_ERRORS, EOFError)
"""What reading a spooled file may raise (a file cut short: ``EOFError``)."""
BULK_DATA_THRESHOLD = 1024
"""Binary values longer than this are left out of metadata and named by a BulkDataURI."""
MAX_RENDERED_SIDE = 4096
LITTLE_ENDIAN_NATIVE = frozenset(
    {uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian}
)

IMAGE_MEDIA_TYPES = {
    uid.JPEGBaseline8Bit: "image/jpeg",
    uid.JPEGExtended12Bit: "image/jpeg",
    uid.JPEGLossless: "image/jpeg",
    uid.JPEGLosslessSV1: "image/jpeg",
    uid.JPEGLSLossless: "image/jls",
    uid.JPEGLSNearLossless: "image/jls",
    uid.JPEG2000Lossless: "image/jp2",
    uid.JPEG2000: "image/jp2",
    uid.HTJ2KLossless: "image/jphc",
    uid.HTJ2KLosslessRPCL: "image/jphc",
    uid.HTJ2K: "image/jphc",
    uid.RLELossless: "image/dicom-rle",
}
"""PS3.18 table 8.7.3-2: the media type of each compressed frame."""
OCTET_STREAM = "application/octet-stream"
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_DATA_TAG = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
UNBOUNDED = sys.maxsize


@dataclass(frozen=True)
class StoredInstance:
    """What WADO-RS needs of one stored instance, read while the database session is open."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    path: Path
    rows: int | None
    columns: int | None

    def url(self, root: str) -> str:
        return instance_url(
            root, self.study_instance_uid, self.series_instance_uid, self.sop_instance_uid
        )


def locate(
    session: Session,
    spool_dir: Path,
    study_instance_uid: str,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> list[StoredInstance]:
    """The stored instances a WADO-RS path names, in the order they arrived; 404 if none (also
    for a withdrawn study: radraft's copy of it is another patient's), 410 if spool retention
    deleted the files of all of them (the rows remain; the PACS holds the images)."""
    statement = (
        select(Instance, Series.series_instance_uid)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Instance.study_id)
        .where(
            Study.study_instance_uid == study_instance_uid,
            Study.withdrawn_at.is_(None),
            Instance.rejected_at.is_(None),  # an IOCM rejection note hid it
        )
        .order_by(Instance.id)
    )
    if series_instance_uid is not None:
        statement = statement.where(Series.series_instance_uid == series_instance_uid)
    if sop_instance_uid is not None:
        statement = statement.where(Instance.sop_instance_uid == sop_instance_uid)
    rows = session.execute(statement).all()
    found = [
        StoredInstance(
            study_instance_uid,
            series_uid,
            instance.sop_instance_uid,
            instance.transfer_syntax_uid,
            spool_dir / instance.spool_path,
            instance.rows,
            instance.columns,
        )
        for instance, series_uid in rows
        if instance.purged_at is None
    ]
    if not found and rows:
        raise GoneError("radraft no longer holds these instances (spool retention)")
    if not found:
        raise NotFoundError("no such study, series or instance")
    return found


def accepted(accept: str | None) -> list[MediaType]:
    """The entries of an Accept header; none (or ``*/*`` alone) means the default."""
    if not accept:
        return []
    return [MediaType.parse(entry) for entry in accept.split(",") if entry.strip()]


def check_instances_acceptable(accept: str | None, items: Sequence[StoredInstance]) -> None:
    """Instances go out as stored: refuse (406) an Accept that excludes a stored syntax."""
    entries = accepted(accept)
    if not entries:
        return
    for entry in entries:
        if entry.name == "*/*":
            return
        if entry.name != "multipart/related":
            continue
        if entry.parameters.get("type", "application/dicom") != "application/dicom":
            continue
        wanted = entry.parameters.get("transfer-syntax", "*")
        if wanted == "*" or all(item.transfer_syntax == wanted for item in items):
            return
    raise NotAcceptableError(
        'instances are sent as stored: accept multipart/related; type="application/dicom" '
        "with transfer-syntax=* or the stored syntax (radraft does not transcode)"
    )


def instance_parts(items: Sequence[StoredInstance], root: str) -> Iterator[OutgoingPart]:
    """Each instance's spooled file, unchanged."""
    for item in items:
        yield OutgoingPart(
            f"application/dicom; transfer-syntax={item.transfer_syntax}",
            file_chunks(item.path),
            location=item.url(root),
        )


def _read(path: Path, **options: Any) -> Dataset:
    """A stored file's data set, walked first as the intake walks what it receives.

    The intake walked the file when it arrived, but a file stored before the walk bounded
    nesting inside defined-length sequences too may nest thousands of levels deep, and pydicom
    recurses on it past Python's limit (or, turning it into JSON, logs an error per level). The
    walk only seeks, so it is repeated here; its size budgets were the intake's and stay off.
    """
    try:
        verify_part10_file(str(path), max_inflated_bytes=UNBOUNDED, max_elements=UNBOUNDED)
        return dcmread(path, **options)
    except IncompleteDatasetError as error:
        raise NotFoundError(f"the stored file cannot be read: {error.reason}") from error
    except STORED_FILE_READ_ERRORS as error:
        raise NotFoundError(f"the stored file cannot be read ({type(error).__name__})") from error


def metadata(items: Sequence[StoredInstance], root: str) -> list[JsonDataset]:
    """Each instance's header as DICOM JSON; Pixel Data left out (fetch it as frames), other
    long binary values as BulkDataURIs. Values of a megabyte or more are left in the file
    (the header may hold a large private blob), so a request costs the header's short values."""
    out = []
    for item in items:
        dataset = _read(item.path, stop_before_pixels=True, **_header_options(item))
        url = item.url(root)
        left_in_file = _deferred_binary_values(dataset)
        for tag in left_in_file:
            del dataset[tag]
        as_json = dataset.to_json_dict(
            bulk_data_threshold=BULK_DATA_THRESHOLD,
            bulk_data_element_handler=_bulk_data_uri(url, element_paths(dataset)),
            suppress_invalid_tags=True,
        )
        for tag, vr in left_in_file.items():
            as_json[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": f"{url}/bulkdata/{tag:08X}"}
        # DICOM JSON is UTF-8 whatever the source said: the values were decoded on reading.
        as_json["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
        out.append(dict(sorted(as_json.items())))
    return out


def _header_options(item: StoredInstance) -> dict[str, Any]:
    """How to read a stored header: long values left in the file, except in a deflated file,
    whose offsets are not the data set's (the intake's inflation limit bounds those)."""
    if item.transfer_syntax == uid.DeflatedExplicitVRLittleEndian:
        return {}
    return {"defer_size": DEFERRED_VALUE_BYTES}


def _deferred(dataset: Dataset, tag: int) -> RawDataElement | None:
    """The element if its value was left in the file when the header was read, else None."""
    element = dataset.get_item(tag, keep_deferred=True)
    if isinstance(element, RawDataElement) and element.value is None:
        return element
    return None


def _vr_of(element: RawDataElement) -> str:
    """An element's VR without reading its value (Implicit VR: the data dictionary's)."""
    if element.VR is not None:
        return str(element.VR)
    try:
        return str(dictionary_VR(element.tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def _deferred_binary_values(dataset: Dataset) -> dict[int, str]:
    """Top-level binary elements whose values were left in the file: tag -> VR."""
    found = {}
    for tag in dataset.keys():  # noqa: SIM118 (iterating a Dataset reads every value)
        element = _deferred(dataset, tag)
        vr = _vr_of(element) if element is not None else None
        if vr in BINARY_VRS:
            found[int(tag)] = str(vr)
    return found


def _bulk_data_uri(url: str, paths: dict[int, str]) -> Callable[[DataElement], str]:
    def uri(element: DataElement) -> str:
        return f"{url}/bulkdata/{paths[id(element)]}"

    return uri


def bulk_data(item: StoredInstance, path_text: str) -> Iterable[bytes]:
    """The binary value a BulkDataURI names (``gateway.dicomweb.bulk_paths``), or native Pixel
    Data; a long top-level one is read from the file a megabyte at a time as the response is
    written, one inside a sequence was read with its sequence."""
    path = BulkDataPath.parse(path_text)
    number = path.tag
    tag = f"{number:08X}"
    at_pixels = not path.levels and number == PIXEL_DATA_TAG
    dataset = path.holder(
        _read(item.path, stop_before_pixels=not at_pixels, **_header_options(item))
    )
    if number not in dataset:
        raise NotFoundError(f"no bulk data at {tag}")
    element = _deferred(dataset, number)
    if element is not None:
        if _vr_of(element) not in BINARY_VRS:
            raise NotFoundError(f"no bulk data at {tag}")
        if element.length == UNDEFINED_LENGTH:
            raise NotFoundError("encapsulated pixel data is retrieved as frames")
        return _file_span(item.path, int(element.value_tell), int(element.length))
    value = dataset[number].value
    if not isinstance(value, bytes):
        raise NotFoundError(f"no bulk data at {tag}")
    return [value]


def _file_span(path: Path, start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of a file from ``start``, a megabyte at a time (checked up front)."""
    if path.stat().st_size < start + length:
        raise NotFoundError("the stored value is cut short")

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as stream:
            stream.seek(start)
            left = length
            while left > 0 and (chunk := stream.read(min(left, READ_CHUNK))):
                left -= len(chunk)
                yield chunk

    return chunks()


def frame_numbers(frame_list: str) -> list[int]:
    """``1,3,5`` -> [1, 3, 5]."""
    try:
        numbers = [int(number) for number in frame_list.split(",")]
    except ValueError as error:
        raise MalformedRequestError(f"not a frame list: {frame_list!r}") from error
    if not numbers or min(numbers) < 1:
        raise MalformedRequestError("frames are numbered from 1")
    return numbers


def frames(item: StoredInstance, numbers: list[int], accept: str | None) -> list[OutgoingPart]:
    """The frames asked for, each a part: as stored if the caller takes that, else native.

    Only the header is read up front. Each part reads its frame from the file (and decodes it,
    if asked to) when the response is written, so a request costs one frame of memory whatever
    the instance's size or the number of frames asked for (at most the instance's frame count).
    The first frame is read (and decoded) here, so that a file or an image that cannot be read
    is refused before the response starts.
    """
    stored = uid.UID(item.transfer_syntax)
    passthrough_type = _passthrough_type(stored, accepted(accept))
    dataset = _read(item.path, **_header_options(item))
    if "PixelData" not in dataset:
        raise NotFoundError("the instance has no pixel data")
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    if max(numbers) > count:
        raise NotFoundError(f"the instance has {count} frame(s)")
    if len(numbers) > count:
        # Each entry may cost a decode: a list is not a way to multiply one request's work.
        raise MalformedRequestError(f"the frame list is longer than the instance's {count} frames")
    if passthrough_type is not None:
        frame = _encoded_frames(item.path, dataset, count)
        content_type = f"{passthrough_type}; transfer-syntax={stored}"
    else:
        frame = _native_frames(item.path, dataset, stored)
        content_type = f"{OCTET_STREAM}; transfer-syntax={uid.ExplicitVRLittleEndian}"
    first = frame(numbers[0])
    return [OutgoingPart(content_type, [first])] + [
        OutgoingPart(content_type, _later(frame, number)) for number in numbers[1:]
    ]


def _later(frame: Callable[[int], bytes], number: int) -> Iterator[bytes]:
    """Frame ``number``, read when the response gets to it."""
    yield frame(number)


def _pixel_data_location(dataset: Dataset) -> tuple[int, int]:
    """Where the Pixel Data value starts in the file and its length (undefined if encapsulated),
    read from the header alone."""
    element = dataset.get_item("PixelData", keep_deferred=True)
    if not isinstance(element, RawDataElement):
        raise NotFoundError("the stored pixel data cannot be located")
    return int(element.value_tell), int(element.length)


def _encoded_frames(path: Path, dataset: Dataset, count: int) -> Callable[[int], bytes]:
    """A function from frame number to that frame's encapsulated bytes, read from the file:
    through the offset tables when there are, else by walking the items' headers."""
    offset, _ = _pixel_data_location(dataset)
    extended = None
    if "ExtendedOffsetTable" in dataset and "ExtendedOffsetTableLengths" in dataset:
        extended = (dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths)

    def frame(number: int) -> bytes:
        with open(path, "rb") as stream:
            stream.seek(offset)
            try:
                return get_frame(
                    stream, number - 1, number_of_frames=count, extended_offsets=extended
                )
            except (ValueError, EOFError, OSError, struct.error) as error:
                raise NotFoundError(
                    f"frame {number} cannot be read from the stored file ({type(error).__name__})"
                ) from error

    return frame


def _passthrough_type(stored: uid.UID, entries: list[MediaType]) -> str | None:
    """The media type to send compressed frames in as they are, or None to send them decoded.

    Raises NotAcceptableError when the caller takes neither.
    """
    if not stored.is_compressed:
        _require_octet_stream(entries)
        return None
    media = IMAGE_MEDIA_TYPES.get(stored)
    for entry in entries or [MediaType("*/*", {})]:
        kind = entry.parameters.get("type", OCTET_STREAM) if entry.name != "*/*" else OCTET_STREAM
        syntax = entry.parameters.get("transfer-syntax")
        if entry.name not in ("multipart/related", "*/*"):
            continue
        if kind == OCTET_STREAM:
            return OCTET_STREAM if syntax == "*" or syntax == stored else None
        if media is not None and kind == media and syntax in (None, "*", stored):
            return media
    raise NotAcceptableError(f"frames of this instance are {media or stored} or octet-stream")


def _require_octet_stream(entries: list[MediaType]) -> None:
    for entry in entries or [MediaType("*/*", {})]:
        if entry.name == "*/*":
            return
        if entry.name == "multipart/related" and entry.parameters.get("type", OCTET_STREAM) in (
            OCTET_STREAM,
            "*/*",
        ):
            return
    raise NotAcceptableError("frames of this instance are application/octet-stream")


def _native_frames(path: Path, dataset: Dataset, stored: uid.UID) -> Callable[[int], bytes]:
    """A function from frame number to that frame's Explicit VR Little Endian bytes: read from
    the file where they are stored so, else decoded, alone and within the decoder's size
    bound. A deflated file's offsets are not the data set's, so its frames are cut from the
    whole Pixel Data (which the intake's inflation limit bounds)."""
    if stored in LITTLE_ENDIAN_NATIVE and int(dataset.BitsAllocated) % 8 == 0:
        length = (
            int(dataset.Rows)
            * int(dataset.Columns)
            * int(dataset.get("SamplesPerPixel", 1))
            * (int(dataset.BitsAllocated) // 8)
        )
        if stored == uid.DeflatedExplicitVRLittleEndian:
            raw: bytes = dataset.PixelData
            return lambda number: raw[(number - 1) * length : number * length]
        offset, stored_length = _pixel_data_location(dataset)
        count = int(dataset.get("NumberOfFrames", 1) or 1)
        if stored_length == UNDEFINED_LENGTH or stored_length < count * length:
            raise NotFoundError("the stored pixel data is shorter than its frames")
        return lambda number: b"".join(_file_span(path, offset + (number - 1) * length, length))

    def frame(number: int) -> bytes:
        pixels = decode_pixels(dataset, number - 1, path=path)
        little = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
        return np.ascontiguousarray(little).tobytes()

    return frame


def rendered(
    item: StoredInstance,
    accept: str | None,
    *,
    viewport: str | None,
    window: str | None,
) -> tuple[bytes, str]:
    """The first frame as a display image (JPEG unless the caller takes only PNG)."""
    media = _rendered_type(accepted(accept))
    size = min(max(item.rows or 512, item.columns or 512), MAX_RENDERED_SIDE)
    if viewport:
        width, height = _numbers("viewport", ",".join(viewport.split(",")[:2]), 2)
        size = min(int(max(width, height)), MAX_RENDERED_SIDE)
    chosen = _window(window) if window else None
    pixels = load_for_model(item.path, size=max(size, 1), window=chosen)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG" if media == "image/jpeg" else "PNG")
    return buffer.getvalue(), media


def _window(value: str) -> tuple[float, float]:
    """``center,width[,function]``; only the linear function is drawn."""
    parts = value.split(",")
    if len(parts) == 3 and parts[2].strip().lower() not in ("linear", "linear-exact"):
        raise MalformedRequestError("window: only the linear function is supported")
    center, width = _numbers("window", ",".join(parts[:2]), 2)
    if width <= 0:
        raise InvalidInputError("window width must be positive")
    return center, width


def _rendered_type(entries: list[MediaType]) -> str:
    for entry in entries or [MediaType("image/jpeg", {})]:
        if entry.name in ("*/*", "image/*", "image/jpeg"):
            return "image/jpeg"
        if entry.name == "image/png":
            return "image/png"
    raise NotAcceptableError("rendered images are image/jpeg or image/png")


def _numbers(name: str, value: str, count: int) -> list[float]:
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError as error:
        raise MalformedRequestError(f"{name}: not {count} numbers: {value!r}") from error
    if len(numbers) != count or any(not np.isfinite(number) for number in numbers):
        raise MalformedRequestError(f"{name}: not {count} numbers: {value!r}")
    return numbers
