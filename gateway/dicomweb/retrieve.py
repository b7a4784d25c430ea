"""WADO-RS: instances byte for byte, metadata as DICOM JSON, frames, bulk data, rendered images.

Instances are the spooled files as they were received: radraft never transcodes them, so a
request may name the stored transfer syntax or ``*`` (the default). Frames of native images are
cut from Pixel Data as Explicit VR Little Endian bytes; frames of compressed images are passed
through as stored (``transfer-syntax=*`` or their own image media type) or decoded when the
caller asks for uncompressed bytes. Rendered images are made the way the case page's previews
are (``radraft.imaging``): JPEG or PNG, the header's window unless one is given.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread, uid
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.dicomweb.attributes import JsonDataset
from radraft.dicomweb_paths import instance_url
from radraft.errors import (
    InvalidInputError,
    MalformedRequestError,
    NotAcceptableError,
    NotFoundError,
)
from radraft.imaging import decode_pixels, load_for_model
from radraft.models import Instance, Series, Study
from radraft.multipart import MediaType, OutgoingPart, file_chunks

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
    """The stored instances a WADO-RS path names, in the order they arrived; 404 if none."""
    statement = (
        select(Instance, Series.series_instance_uid)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Instance.study_id)
        .where(Study.study_instance_uid == study_instance_uid)
        .order_by(Instance.id)
    )
    if series_instance_uid is not None:
        statement = statement.where(Series.series_instance_uid == series_instance_uid)
    if sop_instance_uid is not None:
        statement = statement.where(Instance.sop_instance_uid == sop_instance_uid)
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
        for instance, series_uid in session.execute(statement).all()
    ]
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
    try:
        return dcmread(path, **options)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise NotFoundError(f"the stored file cannot be read ({type(error).__name__})") from error


def metadata(items: Sequence[StoredInstance], root: str) -> list[JsonDataset]:
    """Each instance's header as DICOM JSON; Pixel Data left out (fetch it as frames), other
    long binary values as BulkDataURIs."""
    out = []
    for item in items:
        dataset = _read(item.path, stop_before_pixels=True)
        as_json = dataset.to_json_dict(
            bulk_data_threshold=BULK_DATA_THRESHOLD,
            bulk_data_element_handler=_bulk_data_uri(item.url(root)),
            suppress_invalid_tags=True,
        )
        # DICOM JSON is UTF-8 whatever the source said: the values were decoded on reading.
        as_json["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
        out.append(dict(sorted(as_json.items())))
    return out


def _bulk_data_uri(url: str) -> Callable[[DataElement], str]:
    def uri(element: DataElement) -> str:
        return f"{url}/bulkdata/{element.tag:08X}"

    return uri


def bulk_data(item: StoredInstance, tag: str) -> bytes:
    """The value of one top-level binary element named by a BulkDataURI."""
    try:
        number = int(tag, 16)
    except ValueError as error:
        raise MalformedRequestError(f"not a tag: {tag!r}") from error
    dataset = _read(item.path, stop_before_pixels=number != 0x7FE00010)
    element = dataset.get(number)
    if element is None or not isinstance(element.value, bytes):
        raise NotFoundError(f"no bulk data at {tag}")
    return element.value


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
    """The frames asked for, each a part: as stored if the caller takes that, else native."""
    stored = uid.UID(item.transfer_syntax)
    passthrough_type = _passthrough_type(stored, accepted(accept))
    dataset = _read(item.path)
    if "PixelData" not in dataset:
        raise NotFoundError("the instance has no pixel data")
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    if max(numbers) > count:
        raise NotFoundError(f"the instance has {count} frame(s)")
    if passthrough_type is not None:
        encoded = list(generate_frames(dataset.PixelData, number_of_frames=count))
        content_type = f"{passthrough_type}; transfer-syntax={stored}"
        return [OutgoingPart(content_type, [encoded[n - 1]]) for n in numbers]
    native = _native_frames(dataset, stored)
    content_type = f"{OCTET_STREAM}; transfer-syntax={uid.ExplicitVRLittleEndian}"
    return [OutgoingPart(content_type, [native(n)]) for n in numbers]


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


def _native_frames(dataset: Dataset, stored: uid.UID) -> Callable[[int], bytes]:
    """A function from frame number to that frame's Explicit VR Little Endian bytes (a
    compressed frame is decoded when asked for, alone and within the decoder's size bound)."""
    if stored in LITTLE_ENDIAN_NATIVE and int(dataset.BitsAllocated) % 8 == 0:
        raw: bytes = dataset.PixelData
        length = (
            int(dataset.Rows)
            * int(dataset.Columns)
            * int(dataset.get("SamplesPerPixel", 1))
            * (int(dataset.BitsAllocated) // 8)
        )
        return lambda number: raw[(number - 1) * length : number * length]

    def frame(number: int) -> bytes:
        pixels = decode_pixels(dataset, number - 1)
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
