"""Preprocessing benchmark: decode, window and resize a large DX image per transfer syntax.

Writes one 16-bit chest image (2800 x 2800, about 15 MB uncompressed), encodes it with dcmtk
(JPEG Lossless SV1, JPEG-LS lossless) and pydicom (RLE, JPEG 2000 lossless), and times
``radraft.imaging.load_for_model`` (what a drafting worker does per image) in one process,
against the uncompressed file in the same run. Also times JPEG-LS with pydicom's default plugin,
to show what choosing pyjpegls saves. Usage:

    .venv/bin/python bench/preprocess.py [--size 2800] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pydicom import dcmread, uid

from radraft.imaging import load_for_model
from radraft.synthetic import make_chest_study


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def encoded_files(folder: Path, size: int) -> dict[str, Path]:
    (dataset,) = make_chest_study(1, rows=size, columns=size, views=("PA",))
    plain = folder / "plain.dcm"
    dataset.save_as(plain, enforce_file_format=True)
    files = {"explicit VR little endian": plain}
    files["JPEG lossless SV1 (dcmcjpeg)"] = folder / "jpeg.dcm"
    subprocess.run(["dcmcjpeg", str(plain), str(files["JPEG lossless SV1 (dcmcjpeg)"])], check=True)
    files["JPEG-LS lossless (dcmcjpls)"] = folder / "jpegls.dcm"
    subprocess.run(["dcmcjpls", str(plain), str(files["JPEG-LS lossless (dcmcjpls)"])], check=True)
    for name, syntax in (("RLE lossless", uid.RLELossless),
                         ("JPEG 2000 lossless", uid.JPEG2000Lossless)):  # fmt: skip
        copy = dcmread(plain)
        copy.compress(syntax)
        files[name] = folder / f"{syntax}.dcm"
        copy.save_as(files[name], enforce_file_format=True)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2800)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radraft-preprocess-") as temporary:
        files = encoded_files(Path(temporary), arguments.size)
        plain = files["explicit VR little endian"]
        reference = median_seconds(partial(load_for_model, plain, size=512), arguments.repeats)
        megabytes = plain.stat().st_size / 1e6
        print(f"{arguments.size}^2 16-bit image, {megabytes:.1f} MB; decode + window + resize "
              f"to 512, median of {arguments.repeats}")  # fmt: skip
        for name, path in files.items():
            seconds = median_seconds(partial(load_for_model, path, size=512), arguments.repeats)
            print(f"{name:32s} {seconds * 1000:7.0f} ms  ({seconds / reference:.2f}x uncompressed)")
        jpegls = dcmread(files["JPEG-LS lossless (dcmcjpls)"])

        def default_plugin() -> object:
            jpegls.pixel_array_options(decoding_plugin="pylibjpeg")
            return jpegls.pixel_array

        seconds = median_seconds(default_plugin, arguments.repeats)
        print(f"{'JPEG-LS, decode only, pylibjpeg':32s} {seconds * 1000:7.0f} ms  "
              f"({seconds / reference:.2f}x uncompressed; pydicom's default plugin)")  # fmt: skip


if __name__ == "__main__":
    main()
