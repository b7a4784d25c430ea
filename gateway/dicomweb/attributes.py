"""DICOM JSON (PS3.18 F.2) for the attributes radraft answers queries with.

Tags and VRs come from pydicom's data dictionary, so a keyword is the only thing written here.
An attribute without a value is present with its VR only (type 2: known to be empty).
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from radraft.errors import MalformedRequestError

JsonDataset = dict[str, dict[str, Any]]
"""One data set in DICOM JSON: tag (8 hex digits) -> {"vr": ..., "Value": [...]}."""

PERSON_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def tag_of(keyword: str) -> str:
    """``PatientID`` -> ``00100020``."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def keyword_of(key: str) -> str:
    """A query key as a keyword: ``PatientID`` stays, ``00100020`` becomes ``PatientID``."""
    if len(key) == 8 and all(c in "0123456789abcdefABCDEF" for c in key):
        keyword = keyword_for_tag(int(key, 16))
        if not keyword:
            raise MalformedRequestError(f"unknown attribute tag {key}")
        return keyword
    return key


def person_name(value: str) -> dict[str, str]:
    """A PN value as DICOM JSON: its ``=``-separated groups by name."""
    groups = value.split("=")
    return {name: group for name, group in zip(PERSON_NAME_GROUPS, groups, strict=False) if group}


def attribute(keyword: str, *values: Any) -> tuple[str, dict[str, Any]]:
    """One element: its tag and ``{"vr", "Value"}``; None and empty values are left out."""
    vr = str(dictionary_VR(tag_of(keyword)))
    present = [value for value in values if value is not None and value != ""]
    if vr == "PN":
        present = [person_name(str(value)) for value in present]
    elif vr == "IS":
        present = [int(value) for value in present if str(value).strip().lstrip("-").isdigit()]
    element: dict[str, Any] = {"vr": vr}
    if present:
        element["Value"] = present
    return tag_of(keyword), element


def dataset(*elements: tuple[str, dict[str, Any]]) -> JsonDataset:
    """Elements in tag order, as PS3.18 F.2 writes them; of one tag given twice, the later
    wins (a series' RetrieveURL over its study's)."""
    merged = dict(elements)
    return {tag: merged[tag] for tag in sorted(merged)}


def sequence(keyword: str, items: list[JsonDataset]) -> tuple[str, dict[str, Any]]:
    """A sequence element of DICOM JSON items."""
    element: dict[str, Any] = {"vr": "SQ"}
    if items:
        element["Value"] = items
    return tag_of(keyword), element
