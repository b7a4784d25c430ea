"""The paths that name binary values in BulkDataURIs, written and read back."""

from __future__ import annotations

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from gateway.dicomweb.bulk_paths import BulkDataPath, element_paths
from radraft.errors import MalformedRequestError, NotFoundError


def with_icons(count: int) -> Dataset:
    dataset = Dataset()
    dataset.Rows = 2
    items = []
    for number in range(count):
        icon = Dataset()
        icon.PixelData = bytes([number]) * 2000
        items.append(icon)
    dataset.IconImageSequence = items
    return dataset


def test_every_path_written_reads_back_to_the_same_value() -> None:
    dataset = with_icons(3)
    paths = element_paths(dataset)
    for number, icon in enumerate(dataset.IconImageSequence, start=1):
        path = paths[id(icon["PixelData"])]
        assert path == f"00880200/{number}/7FE00010"
        parsed = BulkDataPath.parse(path)
        assert parsed.holder(dataset)[parsed.tag].value == icon.PixelData
    assert paths[id(dataset["Rows"])] == "00280010"


def test_an_element_pydicom_cannot_convert_is_skipped_as_its_json_writer_skips_it() -> None:
    dataset = with_icons(1)
    # Columns (US) with three bytes: pydicom raises when it converts the value.
    dataset._dict[Tag(0x00280011)] = RawDataElement(
        Tag(0x00280011), "US", 3, b"\x01\x02\x03", 0, False, True
    )
    paths = element_paths(dataset)
    assert "00280011" not in paths.values()
    assert "00880200/1/7FE00010" in paths.values()


@pytest.mark.parametrize(
    "text",
    ["", "7FE0001", "7FE00010/1", "00880200/0/7FE00010", "00880200/+1/7FE00010",
     "00880200/\u0661/7FE00010", " 7FE0010", "0088020G/1/7FE00010",
     "/".join(["00880200/1"] * 33 + ["7FE00010"])],
)  # fmt: skip
def test_a_malformed_path_is_a_bad_request(text: str) -> None:
    with pytest.raises(MalformedRequestError):
        BulkDataPath.parse(text)


def test_a_path_past_what_the_data_set_holds_is_not_found() -> None:
    dataset = with_icons(2)
    for text in ("00880200/3/7FE00010", "00280010/1/7FE00010", "00091000/1/7FE00010"):
        with pytest.raises(NotFoundError):
            BulkDataPath.parse(text).holder(dataset)
