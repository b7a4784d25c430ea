"""From a spooled DICOM image to an 8-bit picture: what the model sees and the web app shows.

Decode (pylibjpeg plugins for JPEG, JPEG 2000, RLE; pyjpegls for JPEG-LS), Modality LUT, VOI
LUT or window, MONOCHROME1 inversion, 8 bits, aspect-preserving resize. Shared by the worker
(model input, frontal first, lateral second) and reporting (image previews with a chosen window).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array

from radraft.dicom_errors import UNREADABLE_DICOM_ERRORS
from radraft.errors import RadraftError

DECODE_READ_ERRORS: tuple[type[Exception], ...] = (*UNREADABLE_DICOM_ERRORS, TypeError, EOFError)
"""What reading an image file for decoding may raise."""

PREFERRED_DECODERS = {
    uid.JPEGLSLossless: "pyjpegls",
    uid.JPEGLSNearLossless: "pyjpegls",
}
"""Plugins chosen per transfer syntax where pydicom's default is slower. JPEG-LS: CharLS through
pyjpegls decodes a 15 MB DX image in about 0.3 s, pylibjpeg (pydicom's first choice) in 1.5 s."""

MAX_FRAME_SAMPLES = 1 << 26
"""Largest frame decoded: Rows x Columns x Samples per Pixel (8192 x 8192 grey). The header's
size, not the compressed bytes, is what a decoder allocates: a constant 60000 x 60000 image
compresses to kilobytes and decodes to 7 GB. Chest radiographs are at most about 4300 x 4300."""

DEFERRED_VALUE_BYTES = 1 << 20
"""Values at least this long are left in the file when a header is read for decoding (Pixel
Data, which is then read a frame at a time; a long LUT is read if it is used)."""

FRONTAL_PREFERENCE = ("PA", "AP", "FRONTAL", None)
"""Which image goes first: PA, then AP, then a frontal of unknown direction, then unknown."""


class UnusableImageError(RadraftError):
    """An image cannot be given to the model; ``reason`` is stored with the draft."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Candidate:
    """A stored instance that may be shown to the model."""

    sop_instance_uid: str
    path: Path
    view: str | None


ViewedT = TypeVar("ViewedT")


def ordered_images(
    items: Sequence[ViewedT], view_of: Callable[[ViewedT], str | None]
) -> list[ViewedT]:
    """The reading order: the best frontal, then one lateral, then the rest as they came.

    One order for the model (which reads the first two) and for the case page (which shows all),
    so the images a radiologist sees first are the ones the draft was written from.
    """
    frontal = sorted(
        (item for item in items if view_of(item) != "LATERAL"),
        key=lambda item: FRONTAL_PREFERENCE.index(
            view_of(item) if view_of(item) in FRONTAL_PREFERENCE else None
        ),
    )
    lateral = [item for item in items if view_of(item) == "LATERAL"]
    first = frontal[:1] + lateral[:1]
    return first + [item for item in items if item not in first]


def choose_images(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Order candidates for the model (``ordered_images`` by their classified view)."""
    return ordered_images(candidates, lambda candidate: candidate.view)


def load_for_model(
    path: Path, *, size: int, window: tuple[float, float] | None = None
) -> np.ndarray:
    """Decode and display-process one image: an (H, W) uint8 array, longest side ``size``.

    Raises
    ------
    UnusableImageError
        No pixel data, an undecodable pixel encoding, or a constant image.
    """
    grey, dataset = _decode(path)
    display = _display_values(grey, dataset, window=window)
    return _resize(display, size)


def default_window(path: Path) -> tuple[float, float]:
    """The (center, width) a viewer starts from: the header's first window, else a robust range.

    Values are in Modality LUT output units, the units ``load_for_model``'s window uses, so a
    page can drag from here and ask for previews with the window it shows.
    """
    grey, dataset = _decode(path)
    header = _header_window(dataset)
    if header is not None:
        return header
    values = np.asarray(apply_modality_lut(grey, dataset), dtype=np.float32)
    low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    if high <= low:
        raise UnusableImageError("constant image")
    return (low + high) / 2, high - low


def _header_window(dataset: Dataset) -> tuple[float, float] | None:
    """The first Window Center/Width pair of the header, if it has a usable one."""
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is None or width is None:
        return None
    first_center = float(center[0] if isinstance(center, Sequence) else center)
    first_width = float(width[0] if isinstance(width, Sequence) else width)
    return (first_center, first_width) if first_width > 0 else None


def _decode(path: Path) -> tuple[np.ndarray, Dataset]:
    """The first frame and the header; of Pixel Data only that frame's bytes are read."""
    try:
        dataset = dcmread(path, defer_size=DEFERRED_VALUE_BYTES)
    except DECODE_READ_ERRORS as error:
        raise UnusableImageError(f"unreadable file ({type(error).__name__})") from error
    except RecursionError as error:
        # Sequences nested thousands deep: the gateway refuses them now, but a file stored
        # before it bounded defined-length nesting, or fetched from elsewhere, may have them.
        raise UnusableImageError("unreadable file (sequences nested too deep)") from error
    if "PixelData" not in dataset:
        raise UnusableImageError("no pixel data")
    try:
        pixels = decode_pixels(dataset, path=path)
    except UnusableImageError:
        raise
    except Exception as error:
        raise UnusableImageError(
            f"cannot decode {dataset.file_meta.get('TransferSyntaxUID', 'pixel data')}"
            f" ({type(error).__name__})"
        ) from error
    return _to_grey(pixels, dataset), dataset


def decode_pixels(
    dataset: Dataset, frame_index: int = 0, *, path: Path | None = None
) -> np.ndarray:
    """One frame's stored pixel values, decoded by the fastest plugin installed for the syntax.

    One frame only, and only if its header size is within ``MAX_FRAME_SAMPLES``: the model and
    a preview use the first frame, WADO-RS asks for frames one by one. Given the file's
    ``path``, only that frame's bytes are read from it (``dataset`` is then just its header),
    so a 60-frame tomosynthesis image costs one frame of memory, not a gigabyte.

    Raises
    ------
    UnusableImageError
        If the frame is larger than ``MAX_FRAME_SAMPLES`` (nothing is decoded then).
    """
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if rows * columns * samples > MAX_FRAME_SAMPLES:
        raise UnusableImageError(
            f"frame of {rows} x {columns} x {samples} samples is too large to decode"
        )
    syntax = dataset.file_meta.get("TransferSyntaxUID", "")
    plugin = PREFERRED_DECODERS.get(syntax)
    usable = plugin if plugin and plugin in get_decoder(syntax).available_plugins else ""
    if path is not None:
        return pixel_array(str(path), index=frame_index, decoding_plugin=usable)
    dataset.pixel_array_options(index=frame_index, decoding_plugin=usable)
    return dataset.pixel_array


def _to_grey(pixels: np.ndarray, dataset: Dataset) -> np.ndarray:
    """One decoded frame as grey values (colour by luminance weights)."""
    if int(dataset.get("SamplesPerPixel", 1)) == 3:
        return pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return pixels


def _display_values(
    pixels: np.ndarray, dataset: Dataset, *, window: tuple[float, float] | None = None
) -> np.ndarray:
    """Modality LUT, then the given window (center, width), else the header's VOI LUT or
    window, else a robust min-max; inversion for MONOCHROME1."""
    monochrome = int(dataset.get("SamplesPerPixel", 1)) == 1
    values = apply_modality_lut(pixels, dataset) if monochrome else pixels
    if window is None and "VOILUTSequence" not in dataset:
        window = _header_window(dataset)
    has_voi = "VOILUTSequence" in dataset
    if window is not None and monochrome:
        center, width = window
        values = np.asarray(values, dtype=np.float32)
        low, high = center - width / 2, center + width / 2
    elif has_voi and monochrome:
        values = np.asarray(apply_voi_lut(values, dataset, prefer_lut=True), dtype=np.float32)
        low, high = float(values.min()), float(values.max())
    else:
        values = np.asarray(values, dtype=np.float32)
        low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    if high <= low:
        raise UnusableImageError("constant image")
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    if str(dataset.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        scaled = 1.0 - scaled
    display: np.ndarray = (scaled * 255.0 + 0.5).astype(np.uint8)
    return display


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape
    scale = size / max(height, width)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized: np.ndarray = np.asarray(
        Image.fromarray(image).resize(target, Image.Resampling.BILINEAR)
    )
    return resized
