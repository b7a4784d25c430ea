"""The header read while the pixels arrive: the finished file's header, or not used at all."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from pydicom import uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import gateway.intake
from gateway import early_header
from gateway.early_header import (
    EARLY_READ_AFTER_BYTES,
    EARLY_READ_LIMIT,
    FIRST_READ_BYTES,
    MAX_PENDING,
    EarlyHeader,
    confirmed_header,
    read_early_header,
    take_early_read,
)
from gateway.header import InstanceHeader, parse_instance_header
from gateway.integrity import pixel_data_offset_in, verify_part10_file
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.models import Study
from radraft.synthetic import SyntheticPatient, make_chest_study
from tests.dicom_peers import storescu, write_study
from tests.support import require_tool

CHARACTER_SETS = [
    ("ISO_IR 192", "Müller^José"),
    ("ISO_IR 100", "Buc^Jérôme"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ("GB18030", "Wang^XiaoDong=王^小东"),
]


def image(
    folder: Path,
    *,
    size: int = 256,
    transfer_syntax: str = uid.ExplicitVRLittleEndian,
    character_set: Any = None,
    name: str = "Doe^Jane",
    seed: int = 7,
) -> Path:
    """A chest image, by default big enough to be read early (256 x 256 x 2 bytes of pixels)."""
    patient = SyntheticPatient(patient_id=f"EARLY{seed}", name=name)
    (dataset,) = make_chest_study(
        seed,
        rows=size,
        columns=size,
        views=("PA",),
        patient=patient,
        transfer_syntax=transfer_syntax,
    )
    if character_set is not None:
        dataset.SpecificCharacterSet = character_set
    (path,) = write_study([dataset], folder)
    return path


def same(left: InstanceHeader, right: InstanceHeader) -> bool:
    return asdict(left) == asdict(right)


@pytest.mark.parametrize(("character_set", "name"), CHARACTER_SETS)
def test_the_early_header_is_the_finished_files_header(
    tmp_path: Path, character_set: Any, name: str
) -> None:
    path = image(tmp_path, character_set=character_set, name=name)
    early = read_early_header(path, EARLY_READ_AFTER_BYTES)
    assert early is not None
    verified = verify_part10_file(str(path))
    assert verified.pixel_data_offset == len(early.prefix)
    assert early.prefix == path.read_bytes()[: len(early.prefix)]
    assert same(early.header, parse_instance_header(path))
    assert early.header.study["patient_name"] == name


def test_a_prefix_that_ends_before_pixel_data_gives_no_header(tmp_path: Path) -> None:
    path = image(tmp_path)
    offset = verify_part10_file(str(path)).pixel_data_offset
    assert offset is not None
    assert read_early_header(path, offset) is None  # the element's own header is not there
    assert read_early_header(path, offset + 12) is not None
    assert pixel_data_offset_in(path.read_bytes()[: offset - 1]) is None


def test_a_header_longer_than_the_first_read_is_read_early_whole(tmp_path: Path) -> None:
    patient = SyntheticPatient(patient_id="LONGHEADER", name="Long^Header")
    (dataset,) = make_chest_study(11, rows=256, columns=256, views=("PA",), patient=patient)
    dataset.add_new(0x00091010, "LO", "private words " * 200)  # about 40 KiB of header
    dataset.add_new(0x00091001, "LO", "RADRAFT TEST")
    dataset.add_new(0x00091011, "UT", "x" * (3 * FIRST_READ_BYTES))
    (path,) = write_study([dataset], tmp_path)
    offset = verify_part10_file(str(path)).pixel_data_offset
    assert offset is not None
    assert FIRST_READ_BYTES < offset < EARLY_READ_LIMIT
    early = read_early_header(path, EARLY_READ_LIMIT)
    assert early is not None
    assert len(early.prefix) == offset
    assert same(early.header, parse_instance_header(path))
    assert read_early_header(path, FIRST_READ_BYTES) is None  # only what was written is read


def test_a_deflated_data_set_is_never_read_early(tmp_path: Path) -> None:
    path = image(tmp_path, transfer_syntax=uid.DeflatedExplicitVRLittleEndian, size=512)
    assert read_early_header(path, EARLY_READ_AFTER_BYTES) is None


def test_an_early_read_that_fails_gives_no_header_and_raises_nothing(tmp_path: Path) -> None:
    assert read_early_header(tmp_path / "gone.dcm", EARLY_READ_AFTER_BYTES) is None
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(bytes(128) + b"DICM" + bytes(range(256)) * 300)
    assert read_early_header(garbage, EARLY_READ_AFTER_BYTES) is None
    (dataset,) = make_chest_study(8, rows=256, columns=256, views=("PA",))
    dataset.StudyInstanceUID = "1.2.x"  # the parse refuses it; the finished file's read reports it
    (bad_uid,) = write_study([dataset], tmp_path / "bad")
    assert pixel_data_offset_in(bad_uid.read_bytes()) is not None
    assert read_early_header(bad_uid, EARLY_READ_AFTER_BYTES) is None


def begun_and_read(path: Path) -> Future[EarlyHeader | None]:
    """Begin the early read of ``path`` as a reception would, take it as the intake does, and
    let it finish."""
    early_header.begin(str(path), EARLY_READ_AFTER_BYTES)
    early_read = take_early_read(path)
    assert early_read is not None
    early_read.result(timeout=10)
    return early_read


def test_the_early_header_is_used_only_for_the_same_bytes(tmp_path: Path) -> None:
    path = image(tmp_path)
    offset = verify_part10_file(str(path)).pixel_data_offset
    header = confirmed_header(begun_and_read(path), path, offset)
    assert header is not None
    assert same(header, parse_instance_header(path))
    assert take_early_read(path) is None, "an early read is taken once"

    elsewhere = (offset or 0) + 2
    assert confirmed_header(begun_and_read(path), path, elsewhere) is None, "Pixel Data elsewhere"

    early_read = begun_and_read(path)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"EARLY7")
    raw[at : at + 6] = b"OTHER8"  # the file changed after the early read
    path.write_bytes(bytes(raw))
    assert confirmed_header(early_read, path, offset) is None


def test_early_reads_of_receptions_that_never_finish_are_bounded(tmp_path: Path) -> None:
    first = image(tmp_path / "first")
    early_header.begin(str(first), EARLY_READ_AFTER_BYTES)
    aborted = [tmp_path / f"aborted-{number}.dcm" for number in range(MAX_PENDING)]
    for path in aborted:
        early_header.begin(str(path), EARLY_READ_AFTER_BYTES)
    with early_header._pending_lock:
        assert len(early_header._pending) <= MAX_PENDING
    assert take_early_read(first) is None, "the oldest was forgotten"
    assert all(take_early_read(path) is not None for path in aborted)


def test_images_sent_by_storescu_are_recorded_from_their_early_headers(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_tool("storescu")
    used: list[bool] = []

    def watched(
        early_read: Future[EarlyHeader | None] | None, path: Path, offset: int | None
    ) -> InstanceHeader | None:
        header = confirmed_header(early_read, path, offset)
        used.append(header is not None)
        return header

    monkeypatch.setattr(gateway.intake, "confirmed_header", watched)
    files = [
        image(tmp_path / str(seed), character_set=character_set, name=name, seed=seed)
        for seed, (character_set, name) in enumerate(CHARACTER_SETS, start=10)
    ]
    files.append(image(tmp_path / "small", size=64, seed=20))  # 8 KiB of pixels: read late
    assert storescu(files, port=running_gateway.port).returncode == 0
    assert used == [True] * len(CHARACTER_SETS) + [False]
    with session_scope(session_factory) as session:
        rows = session.execute(select(Study.patient_id, Study.patient_name)).all()
    names = dict(rows)
    assert names == {
        **{f"EARLY{seed}": name for seed, (_, name) in enumerate(CHARACTER_SETS, start=10)},
        "EARLY20": "Doe^Jane",
    }
