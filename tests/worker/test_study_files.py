"""Where a worker finds a study's files: the spool first, else the origin over HTTP.

The origin here is a plain HTTP server on a real socket answering as a DICOMweb origin would
(a multipart instance, a 404, a 503, a cut body); the end-to-end path against radraft's own
origin is tests/test_remote_worker.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from radraft.imaging import UnusableImageError
from tests.support import returns_within
from worker.study_files import (
    InstanceLocation,
    OriginUnavailableError,
    ScratchDiskError,
    StudyFiles,
)

PAYLOAD = b"DICM-ish bytes " * 1000
LARGE_PAYLOAD = bytes(50 << 20)
BOUNDARY = "origin-boundary"
RATE = 256 << 10


class Origin(BaseHTTPRequestHandler):
    """Answers by the last path segment: ok, large (50 MiB), missing, failing, cut, trickle (a
    byte every 50 ms)."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        Origin.seen.append(dict(self.headers))
        kind = self.path.rsplit("/", 1)[-1]
        if kind in ("missing", "failing"):
            self.send_response(404 if kind == "missing" else 503)
            self.end_headers()
            return
        body = (
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + (LARGE_PAYLOAD if kind == "large" else PAYLOAD)
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        if kind == "cut":
            body = body[: len(body) // 2]
        self.send_response(200)
        self.send_header("Content-Type", f'multipart/related; type="application/dicom"; '
                         f"boundary={BOUNDARY}")  # fmt: skip
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind != "trickle":
            self.wfile.write(body)
            return
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.05)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicomweb"
    server.shutdown()


def location(origin: str | None, sop: str, size: int = len(PAYLOAD)) -> InstanceLocation:
    return InstanceLocation("1.2", "1.2.3", sop, Path("ab/instance.dcm"), size, origin)


def test_the_spool_is_read_when_it_has_the_whole_file(tmp_path: Path, origin: str) -> None:
    spooled = tmp_path / "spool" / "ab" / "instance.dcm"
    spooled.parent.mkdir(parents=True)
    spooled.write_bytes(PAYLOAD)
    Origin.seen.clear()
    with StudyFiles(
        tmp_path / "spool",
        tmp_path / "scratch",
        token="t",
        timeout_seconds=5,
        min_bytes_per_second=RATE,
    ) as files:
        assert files.path_of(location(origin, "ok")) == spooled
        assert files.fetched == 0
    assert Origin.seen == [], "no request when the spool has it"


def test_an_instance_spool_retention_deleted_is_unusable_with_its_reason_and_never_fetched(
    tmp_path: Path, origin: str
) -> None:
    """The origin's spool is the spool the purge emptied: asking it would only get 410."""
    Origin.seen.clear()
    purged = replace(location(origin, "ok"), purged=True)
    files = StudyFiles(tmp_path / "spool", tmp_path / "scratch", token="t", timeout_seconds=5,
                       min_bytes_per_second=RATE)  # fmt: skip
    with files, pytest.raises(UnusableImageError, match="deleted by spool retention"):
        files.path_of(purged)
    assert Origin.seen == []


def test_a_missing_or_short_spool_file_is_fetched_with_the_token_and_removed_after(
    tmp_path: Path, origin: str
) -> None:
    spooled = tmp_path / "spool" / "ab" / "instance.dcm"
    spooled.parent.mkdir(parents=True)
    spooled.write_bytes(PAYLOAD[:10])  # a partial copy on a shared volume does not count
    Origin.seen.clear()
    with StudyFiles(
        tmp_path / "spool",
        tmp_path / "scratch",
        token="t",
        timeout_seconds=5,
        min_bytes_per_second=RATE,
    ) as files:
        path = files.path_of(location(origin, "ok"))
        assert path.read_bytes() == PAYLOAD
        assert files.fetched == 1
    assert not path.exists(), "the scratch copy is gone when the job ends"
    assert Origin.seen[0]["Authorization"] == "Bearer t"
    assert "application/dicom" in Origin.seen[0]["Accept"]


def test_fetch_failures_are_transient_or_permanent_as_the_origin_says(
    tmp_path: Path, origin: str
) -> None:
    with StudyFiles(
        tmp_path / "spool",
        tmp_path / "scratch",
        token="t",
        timeout_seconds=5,
        min_bytes_per_second=RATE,
    ) as files:
        with pytest.raises(UnusableImageError, match="404"):
            files.path_of(location(origin, "missing"))
        with pytest.raises(OriginUnavailableError, match="503"):
            files.path_of(location(origin, "failing"))
        with pytest.raises(UnusableImageError, match="incomplete"):
            files.path_of(location(origin, "cut"))
        with pytest.raises(UnusableImageError, match="incomplete"):
            files.path_of(location(origin, "ok", size=len(PAYLOAD) - 1))
        with pytest.raises(UnusableImageError, match="no DICOMweb origin"):
            files.path_of(location(None, "ok"))
        with pytest.raises(OriginUnavailableError, match="unreachable"):
            files.path_of(location("http://127.0.0.1:9/dicomweb", "ok"))


def test_a_full_scratch_disk_is_a_retryable_error_and_leaves_nothing_behind(
    tmp_path: Path, origin: str, small_disk: Path
) -> None:
    """50 MiB fetched onto a 40 MB scratch disk: the write fails; the worker says so with an
    error it retries (it used to be an OSError that failed the job), and nothing is left."""
    scratch = small_disk / "scratch"
    with StudyFiles(
        tmp_path / "spool", scratch, token="t", timeout_seconds=30, min_bytes_per_second=RATE
    ) as files:
        with pytest.raises(ScratchDiskError, match="ENOSPC"):
            files.path_of(location(origin, "large", size=len(LARGE_PAYLOAD)))
        assert not any(scratch.rglob("*.dcm")), "the partial copy is gone at once"
        assert files.path_of(location(origin, "ok")).read_bytes() == PAYLOAD, "room again"


def test_an_origin_that_sends_a_byte_now_and_then_is_given_up_as_too_slow(
    tmp_path: Path, origin: str
) -> None:
    """Each byte came well within the wait for data, so the fetch went on for good (15,000
    bytes at 20 a second: over 12 minutes), holding a worker thread: Celery's thread pool
    applies no task time limit. Now the fetch has the timeout plus the size at the rate."""

    def fetch() -> Path:
        with StudyFiles(
            tmp_path / "spool", tmp_path / "scratch", token="t", timeout_seconds=1,
            min_bytes_per_second=RATE,
        ) as files:  # fmt: skip
            return files.path_of(location(origin, "trickle"))

    # 1 s + 15,000 bytes at 256 KiB/s allowed
    error = returns_within(15, fetch, what="the fetch")
    assert isinstance(error, OriginUnavailableError), "retried later, not a failed image"
    assert "origin too slow" in str(error)
    assert not any((tmp_path / "scratch").rglob("*.dcm")), "the partial copy is removed"
