"""dcmtk peers (storescu, echoscu, storescp, dcmcjpeg) and the test images they send."""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread, uid
from pydicom.dataset import Dataset

from radraft.synthetic import make_chest_study
from tests.support import require_tool

STORESCU_PROPOSE: dict[str, tuple[str, ...]] = {
    uid.JPEGBaseline8Bit: ("-xy",),
    uid.JPEGExtended12Bit: ("-xx",),
    uid.JPEGLossless: ("-xs",),
    uid.JPEGLosslessSV1: ("-xs",),
    uid.JPEGLSLossless: ("-xt",),
    uid.JPEGLSNearLossless: ("-xu",),
    uid.JPEG2000Lossless: ("-xv",),
    uid.JPEG2000: ("-xw",),
    uid.RLELossless: ("-xr",),
    uid.DeflatedExplicitVRLittleEndian: ("-xd",),
    uid.ImplicitVRLittleEndian: ("-xi",),
}
"""storescu proposes uncompressed syntaxes only, unless told which compressed one to offer."""


@dataclass(frozen=True)
class PeerResult:
    """What a dcmtk command did."""

    returncode: int
    output: str


def transfer_syntax_of(path: Path) -> str:
    """The transfer syntax a file is encoded in (implicit VR LE for files without meta)."""
    dataset = dcmread(path, stop_before_pixels=True, force=True)
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(syntax) if syntax else uid.ImplicitVRLittleEndian


def storescu(
    files: Iterable[Path],
    *,
    port: int,
    calling: str = "STORESCU",
    called: str = "RADRAFT",
    debug: bool = False,
    halt: bool = True,
) -> PeerResult:
    """Send files with dcmtk's storescu: one association per transfer syntax.

    ``debug`` dumps each C-STORE response (status in hex, Error Comment) into the output;
    ``halt=False`` goes on after an unsuccessful store (storescu stops by default).
    """
    binary = require_tool("storescu")
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        groups[transfer_syntax_of(path)].append(path)
    outputs = []
    returncode = 0
    for syntax, paths in groups.items():
        command = [binary, "-d" if debug else "-v", "-aet", calling, "-aec", called]
        command += [] if halt else ["--no-halt"]
        command += STORESCU_PROPOSE.get(syntax, ())
        command += ["127.0.0.1", str(port), *map(str, paths)]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
        outputs.append(completed.stdout + completed.stderr)
        returncode = returncode or completed.returncode
    return PeerResult(returncode, "\n".join(outputs))


def store_statuses(output: str) -> list[int]:
    """The C-STORE response statuses in ``storescu(..., debug=True)`` output, in order."""
    return [int(value, 16) for value in re.findall(r"DIMSE Status\s*: 0x([0-9A-Fa-f]{4})", output)]


def echoscu(
    *, port: int, calling: str = "ECHOSCU", called: str = "RADRAFT", options: Sequence[str] = ()
) -> PeerResult:
    """C-ECHO with dcmtk's echoscu (``options``: e.g. its TLS arguments)."""
    binary = require_tool("echoscu")
    completed = subprocess.run(
        [binary, "-v", "-aet", calling, "-aec", called, *options, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return PeerResult(completed.returncode, completed.stdout + completed.stderr)


def write_study(datasets: Sequence[Dataset], folder: Path) -> list[Path]:
    """Write datasets as Part 10 files; returns their paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in datasets:
        path = folder / f"{dataset.SOPInstanceUID}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def jpeg_lossless_copy(paths: Sequence[Path], folder: Path) -> list[Path]:
    """Re-encode files as JPEG Lossless SV1 with dcmtk's dcmcjpeg."""
    binary = require_tool("dcmcjpeg")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = folder / path.name
        subprocess.run([binary, "+e1", str(path), str(target)], check=True, timeout=120)
        out.append(target)
    return out


def synthetic_study_files(
    seed: int, folder: Path, *, transfer_syntax: str = uid.ExplicitVRLittleEndian, size: int = 256
) -> list[Path]:
    """A PA + lateral synthetic study written to ``folder``."""
    study = make_chest_study(seed, transfer_syntax=transfer_syntax, rows=size, columns=size)
    return write_study(study, folder)


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a file, without preamble and file meta (what went on the wire)."""
    raw = path.read_bytes()
    if raw[128:132] != b"DICM":
        return raw
    dataset = dcmread(path, stop_before_pixels=True)
    group_length = int(dataset.file_meta.FileMetaInformationGroupLength)
    return raw[132 + 12 + group_length :]


class ReferenceStoreSCP:
    """dcmtk's storescp, the reference receiver: what it writes is what went over the wire."""

    def __init__(
        self,
        folder: Path,
        port: int,
        ae_title: str = "RADRAFT",
        *,
        options: Sequence[str] = ("+xa",),
        echo_options: Sequence[str] = (),
    ) -> None:
        self.folder = folder
        self.port = port
        self.ae_title = ae_title
        self.options = list(options)
        self.echo_options = list(echo_options)
        """How to reach it with echoscu (its TLS arguments, for a TLS storescp)."""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start storescp with its options (default: accept every transfer syntax)."""
        from tests.support import wait_until

        binary = require_tool("storescp")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, *self.options, "-aet", self.ae_title, "-od", str(self.folder), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: echoscu(port=self.port, options=self.echo_options).returncode == 0,
            what="storescp to listen",
        )

    def received(self, sop_instance_uid: str) -> Path:
        """The file storescp wrote for an instance."""
        matches = [path for path in self.folder.iterdir() if path.name.endswith(sop_instance_uid)]
        assert len(matches) == 1, f"storescp holds {len(matches)} files for the instance"
        return matches[0]

    def stop(self) -> None:
        """Stop storescp."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
