"""DICOM to model input: LUTs, windowing, MONOCHROME1, resize, view order, unusable images."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread, uid
from pydicom.encaps import encapsulate

from radraft.imaging import (
    MAX_FRAME_SAMPLES,
    Candidate,
    UnusableImageError,
    choose_images,
    decode_pixels,
    load_for_model,
)
from radraft.synthetic import make_chest_study
from tests.dicom_peers import write_study
from tests.hostile_files import nested_sequences, pixel_bomb, rle_image
from tests.support import cxr_file, require_tool, traced_peak


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    (mono2,) = make_chest_study(1, rows=64, columns=96, views=("PA",))
    (mono1,) = make_chest_study(1, rows=64, columns=96, views=("PA",))
    mono1.PhotometricInterpretation = "MONOCHROME1"
    first, second = write_study([mono2], tmp_path / "a") + write_study([mono1], tmp_path / "b")
    normal = load_for_model(first, size=48).astype(int)
    inverted = load_for_model(second, size=48).astype(int)
    assert np.abs(normal + inverted - 255).max() <= 1


def test_window_and_aspect_ratio(tmp_path: Path) -> None:
    (dataset,) = make_chest_study(2, rows=100, columns=200, views=("PA",))
    dataset.WindowCenter = 1000
    dataset.WindowWidth = 200
    (path,) = write_study([dataset], tmp_path)
    assert load_for_model(path, size=64).shape == (32, 64)
    image = load_for_model(path, size=200)  # no resampling: compare with the window formula
    assert image.dtype == np.uint8
    raw = dataset.pixel_array.astype(float)
    # PS3.3 C.11.2.1.2.1: linear window, center 1000, width 200
    expected = np.clip(((raw - 999.5) / 199 + 0.5), 0, 1) * 255
    assert np.abs(image - expected).mean() < 2


@pytest.mark.parametrize("name", ["cr_chest_pa_philips_mono1_j2k-lossy.dcm",
                                  "cr_chest_pa_siim-nih_mono2_jpeg-baseline.dcm"])  # fmt: skip
def test_real_compressed_chest_films_decode(name: str) -> None:
    image = load_for_model(cxr_file(name), size=128)
    assert max(image.shape) == 128
    assert 40 < image.mean() < 215
    assert image.std() > 20


def test_missing_and_corrupt_pixel_data_are_unusable(tmp_path: Path) -> None:
    (no_pixels,) = make_chest_study(3, rows=32, columns=32, views=("PA",))
    del no_pixels.PixelData
    (corrupt,) = make_chest_study(3, rows=64, columns=64, views=("PA",),
                                  transfer_syntax=uid.JPEG2000Lossless)  # fmt: skip
    corrupt.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 2000])
    first, second = write_study([no_pixels], tmp_path / "a") + write_study(
        [corrupt], tmp_path / "b"
    )
    with pytest.raises(UnusableImageError, match="no pixel data"):
        load_for_model(first, size=32)
    with pytest.raises(UnusableImageError, match="cannot decode"):
        load_for_model(second, size=32)


def test_frontal_first_then_lateral() -> None:
    lateral = Candidate("1", Path("l"), "LATERAL")
    ap = Candidate("2", Path("a"), "AP")
    pa = Candidate("3", Path("p"), "PA")
    unknown = Candidate("4", Path("u"), None)
    assert choose_images([lateral, ap, unknown, pa])[:2] == [pa, lateral]
    assert choose_images([unknown, lateral])[:2] == [unknown, lateral]


def test_jpeg_ls_decodes_with_the_fast_plugin_to_the_original_pixels(tmp_path: Path) -> None:
    (dataset,) = make_chest_study(3, rows=256, columns=192, views=("PA",))
    (plain,) = write_study([dataset], tmp_path / "plain")
    encoded = tmp_path / "jpegls.dcm"
    subprocess.run([require_tool("dcmcjpls"), str(plain), str(encoded)], check=True)
    compressed = dcmread(encoded)
    assert compressed.file_meta.TransferSyntaxUID == uid.JPEGLSLossless
    pixels = decode_pixels(compressed)
    assert np.array_equal(pixels, dataset.pixel_array), "lossless: the very same values"
    assert compressed._pixel_array_opts["decoding_plugin"] == "pyjpegls"
    assert load_for_model(encoded, size=64).shape == (64, 48)


def test_a_frame_over_the_size_bound_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # The header's Rows and Columns, not the file, say what a decoder would allocate
    # (16384 x 16384 x 2 = 512 MiB).
    dataset = pixel_bomb(16384)
    assert dataset.Rows * dataset.Columns > MAX_FRAME_SAMPLES
    path = tmp_path / "bomb.dcm"
    dataset.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 64 << 10
    with pytest.raises(UnusableImageError, match="16384 x 16384 x 1 samples is too large"):
        load_for_model(path, size=64)
    with pytest.raises(UnusableImageError, match="too large"):
        decode_pixels(dcmread(path))


def test_a_multi_frame_image_is_decoded_one_frame_at_a_time(tmp_path: Path) -> None:
    frames = np.stack([np.full((32, 48), 100 * (index + 1), dtype=np.uint16) for index in range(3)])
    frames[:, :16, :] += np.arange(48, dtype=np.uint16) * 20  # not constant: it has a window
    dataset = rle_image(frames, seed=8)
    path = tmp_path / "frames.dcm"
    dataset.save_as(path, enforce_file_format=True)
    for index in range(3):
        decoded = decode_pixels(dcmread(path), index)
        assert decoded.shape == (32, 48), "one frame, not the stack"
        assert np.array_equal(decoded, frames[index])
    assert load_for_model(path, size=48).shape == (32, 48), "the model sees the first frame"


def test_a_file_nested_too_deep_for_pydicom_is_an_unusable_image(tmp_path: Path) -> None:
    # The gateway refuses such a file; one stored before it did, or fetched from another
    # origin, must still end as a named unusable image, not an exception out of the worker.
    deep = nested_sequences(tmp_path, depth=3000)
    with pytest.raises(UnusableImageError, match="nested too deep"):
        load_for_model(deep, size=64)


def test_a_multi_frame_file_is_read_one_frame_at_a_time(tmp_path: Path) -> None:
    # 64 native frames of 512 x 512 (32 MiB of Pixel Data): a preview or the model needs the
    # first, and reads only it from the file (tracemalloc sees numpy's buffers and pydicom's).
    frames = np.stack([np.full((512, 512), 40 * n, dtype=np.uint16) for n in range(64)])
    frames[:, :128, :] += np.arange(512, dtype=np.uint16)
    (dataset,) = make_chest_study(9, rows=512, columns=512, views=("PA",))
    dataset.NumberOfFrames = 64
    dataset.PixelData = frames.tobytes()
    path = tmp_path / "stack.dcm"
    dataset.save_as(path, enforce_file_format=True)
    image, peak = traced_peak(lambda: load_for_model(path, size=256))
    assert image.shape == (256, 256)
    assert peak < 8 << 20, f"peak {peak >> 20} MiB for a 0.5 MiB frame of a 32 MiB file"
