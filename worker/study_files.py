"""A drafting job's image files: this host's spool if it has them, else WADO-RS from the origin.

A worker on the gateway's host (or one sharing its volume) reads the spooled files directly. A
worker anywhere else has a data dir of its own; it fetches each instance from the DICOMweb
origin recorded with it (``RADRAFT_DICOMWEB_BASE_URL`` of the installation that received it),
with the service token, into a scratch folder that is removed when the job ends. A spooled file
counts only if its size is the recorded one; a fetched file must be whole and that size too.

An origin that cannot be reached, or answers 5xx, is a transient failure (the task is retried
with backoff); one that answers 4xx for an instance makes that image unusable, with the reason.
So is an origin that sends too slowly: httpx bounds each wait for data, but a byte now and then
resets that wait, and Celery's thread pool applies no task time limit, so such a fetch held a
worker thread, and its job running on its heartbeat, for good. A fetch must be whole within the
timeout plus the instance's recorded size at a minimum rate.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from radraft.dicomweb_paths import instance_url
from radraft.errors import RadraftError
from radraft.imaging import UnusableImageError
from radraft.multipart import MediaType, MultipartFileReader

INSTANCE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class OriginUnavailableError(RadraftError):
    """The DICOMweb origin holding a study's files cannot be reached now; retry later."""


class ScratchDiskError(RadraftError):
    """This worker's scratch disk did not take a fetched instance (full); retry later."""


@dataclass(frozen=True)
class InstanceLocation:
    """Where one instance's file is: its spool path, size, and the origin that serves it."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    spool_path: Path
    size_bytes: int
    origin: str | None
    purged: bool = False
    """Spool retention deleted the file (everywhere: the origin's spool is the spool)."""

    @property
    def url(self) -> str:
        return instance_url(
            self.origin or "",
            self.study_instance_uid,
            self.series_instance_uid,
            self.sop_instance_uid,
        )


class StudyFiles:
    """Resolves instances to local files for one job; use as a context manager."""

    def __init__(
        self,
        spool_dir: Path,
        scratch_root: Path,
        *,
        token: str | None,
        timeout_seconds: float,
        min_bytes_per_second: int,
    ) -> None:
        self._spool_dir = spool_dir
        self._scratch_root = scratch_root
        self._token = token
        self._timeout = timeout_seconds
        self._min_rate = min_bytes_per_second
        self._scratch: Path | None = None
        self.fetched = 0
        """How many files this job fetched over WADO-RS (read from the spool: none)."""

    def __enter__(self) -> StudyFiles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def path_of(self, location: InstanceLocation) -> Path:
        """A local file with the instance's bytes.

        Raises
        ------
        UnusableImageError
            Neither the spool nor the origin has a whole copy.
        OriginUnavailableError
            The origin cannot be reached, fails (5xx) or sends too slowly: worth retrying.
        ScratchDiskError
            The scratch disk is full: worth retrying.
        """
        if location.purged:
            raise UnusableImageError("deleted by spool retention; re-send it from the PACS")
        spooled = self._spool_dir / location.spool_path
        if spooled.is_file() and spooled.stat().st_size == location.size_bytes:
            return spooled
        if location.origin is None:
            raise UnusableImageError("not in this host's spool, and no DICOMweb origin recorded")
        return self._fetch(location)

    def _fetch(self, location: InstanceLocation) -> Path:
        if self._scratch is None:
            self._scratch_root.mkdir(parents=True, exist_ok=True)
            self._scratch = Path(tempfile.mkdtemp(prefix="job-", dir=self._scratch_root))
        headers = {"Accept": INSTANCE_ACCEPT}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        reader: MultipartFileReader | None = None
        allowed = self._timeout + location.size_bytes / self._min_rate
        deadline = time.monotonic() + allowed
        try:
            with httpx.stream(
                "GET", location.url, headers=headers, timeout=self._timeout
            ) as response:
                if response.status_code >= 500:
                    raise OriginUnavailableError(f"origin answered {response.status_code}")
                if response.status_code != 200:
                    raise UnusableImageError(f"origin answered {response.status_code}")
                boundary = MediaType.parse(response.headers.get("content-type", ""))
                reader = MultipartFileReader(
                    boundary.parameters.get("boundary", ""),
                    self._scratch,
                    max_part_bytes=location.size_bytes,
                    max_parts=1,
                )
                for chunk in response.iter_bytes():
                    reader.feed(chunk)
                    if time.monotonic() > deadline:
                        raise OriginUnavailableError(
                            f"origin too slow: {response.num_bytes_downloaded} bytes "
                            f"in {allowed:.0f} s"
                        )
                parts = reader.finish()
        except httpx.TransportError as error:
            raise OriginUnavailableError(f"origin unreachable ({type(error).__name__})") from error
        except RadraftError as error:
            if reader is not None:
                reader.close()
            if isinstance(error, UnusableImageError | OriginUnavailableError):
                raise
            raise UnusableImageError(f"origin sent an unreadable answer ({error})") from error
        if len(parts) == 1 and parts[0].unwritten:
            if reader is not None:
                reader.close()
            raise ScratchDiskError(f"fetched instance not kept: {parts[0].unwritten}")
        if len(parts) != 1 or not parts[0].complete or parts[0].size != location.size_bytes:
            if reader is not None:
                reader.close()
            raise UnusableImageError("origin sent an incomplete instance")
        self.fetched += 1
        return parts[0].path
