"""The real radiographs the tests use are in the repository, exactly as its README lists them."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.support import CHEST_FILES, NON_CHEST_FILES, TEST_CXR, cxr_file

LISTED = re.compile(r"^\| `(?P<name>[^`]+\.dcm)` \|.*\| `(?P<sha256>[0-9a-f]{64})` \|$", re.M)


def listed_files() -> dict[str, str]:
    """File name -> sha256 as the data folder's README lists them."""
    readme = (TEST_CXR / "README.md").read_text()
    return {match["name"]: match["sha256"] for match in LISTED.finditer(readme)}


def test_readme_lists_exactly_the_files_the_tests_use() -> None:
    assert sorted(listed_files()) == sorted(CHEST_FILES + NON_CHEST_FILES)
    on_disk = sorted(str(p.relative_to(TEST_CXR)) for p in TEST_CXR.rglob("*.dcm"))
    assert on_disk == sorted(CHEST_FILES + NON_CHEST_FILES)


@pytest.mark.parametrize(("name", "sha256"), sorted(listed_files().items()))
def test_each_file_is_byte_for_byte_the_published_one(name: str, sha256: str) -> None:
    assert hashlib.sha256(cxr_file(name).read_bytes()).hexdigest() == sha256


def test_a_missing_file_fails_with_its_path() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"tests/data/cxr/absent\.dcm"):
        cxr_file("absent.dcm")
