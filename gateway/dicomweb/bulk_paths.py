"""Where a binary value sits in a header, written as the end of its BulkDataURI.

A top-level value is named by its tag (``.../bulkdata/7FE00010``); a value inside a sequence by
the way down to it, a sequence's tag and an item number (from 1) in turn:
``.../bulkdata/00880200/2/7FE00010`` is the Pixel Data of the second Icon Image Sequence item.
pydicom's JSON writer hands its bulk data callback the element alone, and naming it by its tag
had served an icon's Pixel Data as the image's own; so the paths are found first, by walking the
data set pydicom will write, and looked up by element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from radraft.errors import MalformedRequestError, NotFoundError

MAX_LEVELS = 32
"""As deep as the intake lets sequences nest (``gateway.integrity``); a path deeper than that
cannot name anything stored."""
TAG = re.compile(r"[0-9A-Fa-f]{8}")
ITEM_NUMBER = re.compile(r"[1-9][0-9]{0,8}")


@dataclass(frozen=True)
class BulkDataPath:
    """Sequence tag and item number for each level down, then the value's own tag."""

    levels: tuple[tuple[int, int], ...]
    tag: int

    @classmethod
    def parse(cls, text: str) -> BulkDataPath:
        """``00880200/2/7FE00010`` -> levels ((0x00880200, 2),), tag 0x7FE00010."""
        segments = text.split("/")
        if len(segments) % 2 == 0 or len(segments) > 2 * MAX_LEVELS + 1:
            raise MalformedRequestError(f"not a bulk data path: {text[:80]!r}")
        tags = [_tag(segment) for segment in segments[::2]]
        items = [_item_number(segment) for segment in segments[1::2]]
        return cls(tuple(zip(tags[:-1], items, strict=True)), tags[-1])

    def holder(self, dataset: Dataset) -> Dataset:
        """The data set (the top level or a sequence item) that holds the value."""
        for tag, number in self.levels:
            if tag not in dataset or dataset[tag].VR != "SQ":
                raise NotFoundError(f"no sequence at {tag:08X}")
            items = dataset[tag].value
            if number > len(items):
                raise NotFoundError(f"no item {number} in {tag:08X}")
            dataset = items[number - 1]
        return dataset


def _tag(segment: str) -> int:
    if TAG.fullmatch(segment) is None:
        raise MalformedRequestError(f"not a tag: {segment[:20]!r}")
    return int(segment, 16)


def _item_number(segment: str) -> int:
    if ITEM_NUMBER.fullmatch(segment) is None:
        raise MalformedRequestError(f"not an item number (they count from 1): {segment[:20]!r}")
    return int(segment)


def element_paths(dataset: Dataset) -> dict[int, str]:
    """``id(element)`` -> its path, for every element of ``dataset`` and of its sequences.

    Walking reads each element's value, as writing the JSON does next; the walk the intake
    made bounds the depth. A top-level element whose value pydicom cannot convert is skipped,
    as the JSON writer skips it (``suppress_invalid_tags``).
    """
    paths: dict[int, str] = {}
    for tag in dataset.keys():  # noqa: SIM118 (iterating a Dataset reads every value)
        try:
            _add_paths(dataset[tag], f"{int(tag):08X}", paths)
        except Exception:  # noqa: S112 (whatever pydicom raises, its writer skips too)
            continue
    return paths


def _add_paths(element: DataElement, path: str, paths: dict[int, str]) -> None:
    paths[id(element)] = path
    if element.VR == "SQ":
        for number, item in enumerate(element.value, start=1):
            for tag in item.keys():  # noqa: SIM118
                _add_paths(item[tag], f"{path}/{number}/{int(tag):08X}", paths)
