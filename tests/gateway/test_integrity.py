"""The completeness check of received files, on every encoding shape it must walk."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gateway.integrity import (
    MAX_NESTING_DEPTH,
    ElementLimitError,
    IncompleteDatasetError,
    verify_part10_file,
)
from radraft.synthetic import make_chest_study
from tests.dicom_peers import dataset_bytes
from tests.support import CHEST_FILES, NON_CHEST_FILES, cxr_file

SYNTAXES = [
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.RLELossless,
    uid.JPEG2000Lossless,
]


def part10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_whole_files_pass_and_every_cut_fails(syntax: str, tmp_path: Path) -> None:
    raw = part10(make_chest_study(3, transfer_syntax=syntax, rows=64, columns=64)[0])
    path = tmp_path / "whole.dcm"
    path.write_bytes(raw)
    assert verify_part10_file(str(path)).transfer_syntax == syntax
    header = len(raw) - len(dataset_bytes(path))
    deflated = syntax == uid.DeflatedExplicitVRLittleEndian
    # The deflated stream is padded to an even length; without its pad byte it is still whole.
    end = len(raw) - 1 if deflated else len(raw)
    for cut in range(header + 1, end, 1 if deflated else 97):
        path.write_bytes(raw[:cut])
        with pytest.raises(IncompleteDatasetError):
            verify_part10_file(str(path))


def test_undefined_length_sequences_are_walked(tmp_path: Path) -> None:
    dataset = make_chest_study(4, rows=32, columns=32)[0]
    item = Dataset()
    item.CodeValue = "X"
    item.CodeMeaning = "nested"
    item.ReferencedSOPSequence = Sequence([Dataset()])
    dataset.RequestAttributesSequence = Sequence([item])
    dataset["RequestAttributesSequence"].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    item["ReferencedSOPSequence"].is_undefined_length = True
    path = tmp_path / "sq.dcm"
    dataset.save_as(path, enforce_file_format=True)
    assert b"\xfe\xff\xdd\xe0" in path.read_bytes()
    assert verify_part10_file(str(path)).transfer_syntax == uid.ExplicitVRLittleEndian
    raw = path.read_bytes()
    for marker in (b"\xfe\xff\xdd\xe0", b"\xfe\xff\x0d\xe0"):
        position = raw.index(marker)
        # Drop the delimiter (8 bytes): the sequence or item now swallows what follows.
        path.write_bytes(raw[:position] + raw[position + 8 :])
        with pytest.raises(IncompleteDatasetError):
            verify_part10_file(str(path))


PART10_FILES = [name for name in CHEST_FILES + NON_CHEST_FILES if "no-part10" not in name]


@pytest.mark.parametrize("name", PART10_FILES)
def test_real_files_with_a_part10_header_pass(name: str) -> None:
    path = cxr_file(name)
    assert path.read_bytes()[128:132] == b"DICM"
    syntax = verify_part10_file(str(path)).transfer_syntax
    assert syntax == dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID


def test_not_dicom_fails(tmp_path: Path) -> None:
    path = tmp_path / "text.dcm"
    path.write_bytes(b"hello" * 100)
    with pytest.raises(IncompleteDatasetError, match="preamble"):
        verify_part10_file(str(path))


def nested_content(depth: int) -> Sequence:
    """``depth`` Content Sequences, each item holding the next (defined lengths, as pydicom
    writes them unless told otherwise)."""
    innermost = Dataset()
    innermost.TextValue = "deepest"
    sequence = Sequence([innermost])
    for _ in range(depth - 1):
        item = Dataset()
        item.ContentSequence = sequence
        sequence = Sequence([item])
    return sequence


@pytest.mark.parametrize(
    "syntax",
    [
        uid.ExplicitVRLittleEndian,
        uid.ImplicitVRLittleEndian,
        uid.ExplicitVRBigEndian,
        uid.DeflatedExplicitVRLittleEndian,
    ],
)
def test_defined_length_sequences_are_bounded_by_the_same_depth(
    syntax: str, tmp_path: Path
) -> None:
    # Implicit VR says nothing of SQ: the walker knows Content Sequence from the dictionary.
    path = tmp_path / "deep.dcm"
    for depth, whole in ((MAX_NESTING_DEPTH, True), (MAX_NESTING_DEPTH + 1, False)):
        dataset = make_chest_study(5, transfer_syntax=syntax, rows=16, columns=16)[0]
        dataset.ContentSequence = nested_content(depth)
        dataset.save_as(path, enforce_file_format=True)
        assert b"\xfe\xff\xdd\xe0" not in path.read_bytes(), "no delimiters: defined lengths"
        if whole:
            assert verify_part10_file(str(path)).transfer_syntax == syntax
        else:
            with pytest.raises(IncompleteDatasetError, match="nested deeper"):
                verify_part10_file(str(path))


def test_an_element_running_past_its_defined_length_item_fails(tmp_path: Path) -> None:
    # A Code Meaning of 2 bytes in an item that claims 8: the item ends inside the element,
    # though the sequence's own length (and so the file) is consistent.
    element = struct.pack("<HH2sH", 0x0008, 0x0104, b"LO", 2) + b"AB"
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 8) + element
    sequence = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, len(item)) + item
    dataset = make_chest_study(6, rows=16, columns=16)[0]
    path = tmp_path / "overrun.dcm"
    dataset.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    pixel_data = raw.index(struct.pack("<HH", 0x7FE0, 0x0010) + b"OW")
    path.write_bytes(raw[:pixel_data] + sequence + raw[pixel_data:])
    with pytest.raises(IncompleteDatasetError, match="past the end of its sequence"):
        verify_part10_file(str(path))


def test_elements_and_items_are_counted_at_every_level_against_the_limit(
    tmp_path: Path,
) -> None:
    dataset = make_chest_study(7, rows=16, columns=16)[0]
    item = Dataset()
    for index in range(50):
        item.add_new((0x0009, 0x1000 + index), "LO", "x")
    dataset.ContentSequence = Sequence([item])
    path = tmp_path / "counted.dcm"
    dataset.save_as(path, enforce_file_format=True)
    # Every element at every level, and every sequence item (no delimiters: defined lengths).
    total = sum(
        1 + (len(element.value) if element.VR == "SQ" else 0) for element in dataset.iterall()
    )
    assert total > len(dataset) + 50
    assert verify_part10_file(str(path), max_elements=total).transfer_syntax
    with pytest.raises(ElementLimitError, match=f"more than {total - 1} elements"):
        verify_part10_file(str(path), max_elements=total - 1)
    assert len(dataset) < total - 1, "the top level alone is within the limit"


def test_a_delimited_sequence_inside_a_defined_length_item_is_walked(tmp_path: Path) -> None:
    # Encodings mix: an item of stated length may hold a sequence that ends with a delimiter.
    dataset = make_chest_study(8, rows=16, columns=16)[0]
    inner = Dataset()
    inner.CodeValue = "Y"
    item = Dataset()
    item.ReferencedSOPSequence = Sequence([inner])
    item["ReferencedSOPSequence"].is_undefined_length = True
    dataset.RequestAttributesSequence = Sequence([item])
    path = tmp_path / "mixed.dcm"
    dataset.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    assert raw.count(b"\xfe\xff\xdd\xe0") == 1, "only the inner sequence is delimited"
    assert verify_part10_file(str(path)).transfer_syntax == uid.ExplicitVRLittleEndian
    position = raw.index(b"\xfe\xff\xdd\xe0")
    path.write_bytes(raw[:position] + raw[position + 8 :])
    with pytest.raises(IncompleteDatasetError):
        verify_part10_file(str(path))
