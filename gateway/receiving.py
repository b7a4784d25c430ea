"""The gateway's process-wide receiving settings, and a disk that fills up mid-reception.

pynetdicom writes each C-STORE data set to a temporary file as it arrives
(``STORE_RECV_CHUNKED_DATASET``), so a 15 MB image is never held in memory. It creates that file
with ``tempfile`` and offers no folder of its own, so ``tempfile.tempdir`` points at the spool's
``incoming`` folder, which makes the final move into the spool a rename on one filesystem.

When that disk fills up mid-reception, pynetdicom's write fails and it aborts the association,
leaving a partial file behind. Its temporary file is therefore wrapped: a write that fails
stops writing (the partial file is truncated at once, freeing the space), the rest of the data
set is read and dropped, and the C-STORE handler then answers 0xA700 (Out of Resources), so the
sender keeps its copy and retries later. These are the gateway's only process-wide changes, made
by ``receive_into`` and nowhere else, with two more: the file's File Meta Information is
written by ``gateway.file_meta`` instead of pydicom's writer (same bytes, less CPU), and
pynetdicom's DIMSE message decoding is guarded (``gateway.dimse_decoding``: a data set cut off
by a command is removed, a command set it cannot decode aborts the association).

The same wrapper reserves the file's disk blocks a few MiB ahead of its writes
(``gateway.preallocation``: less work per page for ext4) and gives the reserve past the last
byte back on the early fsync's thread, before that fsync; it asks the kernel to start writing
the file to disk every MiB while it arrives (``sync_file_range``, Linux), so the disk works
while the network does and the fsync before the answer waits only for the last MiB or so, not
for the whole image.
Once the last byte is in, ``start_sync`` begins that fsync on another thread, while the
C-STORE is handed over and the file is verified, and the intake waits for its outcome before
it stores the file (``early_sync``). Its error must reach the answer: Linux reports a
failed write-out once per open file to the first fsync that looks, and a descriptor opened after
that (the spool's own fsync) is told nothing, so a failure the early fsync swallowed would be
acknowledged. Once it has succeeded, the spool does not fsync the file again.
Once the first 64 KiB are written, the header is read on another thread too
(``gateway.early_header``).

Every reception has two bounds of its own, checked as it is written (``ReceptionLimits``): the
largest instance file, and the spool's free space floor (looked at every few MiB, so one huge
or endless data set cannot fill the disk the database may share). Either stops the writing as
a failing write does; the handler answers 0xA700 with the reason once the sender has finished.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynetdicom import _config as pynetdicom_config
from pynetdicom import dimse_messages

from gateway import early_header, linux_calls, preallocation, prepared_file
from gateway.dimse_decoding import guard_message_decoding
from gateway.file_meta import write_reception_file_meta
from gateway.splice_pipe import SplicePipe
from radraft.free_space import FreeSpaceWatch, disk_error

_failed_lock = threading.Lock()
_failed: dict[str, str] = {}
"""Temporary file path -> why writing it stopped (an Error Comment), until the handler has
answered."""
REMEMBERED_FAILURES = 1024
"""The oldest entries of ``_failed`` beyond this are forgotten: a sender that aborts after a
refused reception never has it asked for, and there are never this many receptions at once."""
_original_temporary_file = tempfile.NamedTemporaryFile
WRITEBACK_STEP = 1 << 20
"""Bytes received between two requests to start writing the file out. A 15.7 MB image arrives
in some 13 ms here, about as fast as the disk writes it: at 4 MiB the fsync before the answer
still waited 2.6-4.2 ms for the tail, at 1 MiB 0.3-0.8 ms (live gateway, 2026-11-30)."""
IOV_MAX = max(16, os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16)
"""The most buffers one ``writev`` takes (1024 on Linux; POSIX guarantees 16)."""
SYNC_FILE_RANGE_WRITE = 2
"""linux/fs.h: start write-out of dirty pages not yet submitted; does not wait for them."""
EARLY_SYNC_THREADS = 4
_early_sync = ThreadPoolExecutor(EARLY_SYNC_THREADS, thread_name_prefix="radraft-early-sync")
_syncing_lock = threading.Lock()
_syncing: OrderedDict[str, tuple[Future[str | None], int]] = OrderedDict()
"""Temporary file path -> its early fsync and the descriptor it syncs, until the intake has
waited for it (bounded as ``_failed`` is)."""


_sync_file_range = linux_calls.sync_file_range


def start_writeback(descriptor: int) -> None:
    """Ask the kernel to start writing a file's dirty pages out, without waiting for them.

    Only a head start: durability still comes from the fsync before the answer, which reports
    any error, so a failure here is ignored.
    """
    if _sync_file_range is not None:
        _sync_file_range(descriptor, 0, 0, SYNC_FILE_RANGE_WRITE)


@dataclass(frozen=True)
class ReceptionLimits:
    """What one reception may take of the spool's disk while it arrives (settings, documented
    there). The defaults bound nothing: tests and tools that write receptions opt in."""

    max_file_bytes: int | None = None
    """Largest instance file (File Meta header and data set); past it the writing stops."""
    min_free_bytes: int = 0
    """Free space the spool's filesystem keeps (``radraft.free_space``, every 4 MiB)."""


_limits = ReceptionLimits()
"""The limits ``receive_into`` set for this process's receptions."""


class ReceptionFile:
    """pynetdicom's temporary file; a failing write ends the writing, not the association."""

    def __init__(self, inner: Any, limits: ReceptionLimits | None = None) -> None:
        self._inner = inner
        self.name: str = inner.name
        self._limits = limits or _limits
        self._free_space = FreeSpaceWatch(self._limits.min_free_bytes)
        self._failed = False
        self._unsubmitted = 0
        self._written = 0
        self._flushed = False
        # Bytes of the file's blocks reserved ahead (gateway.preallocation); -1 once reserving
        # has failed for this file, which is then not tried again.
        self._reserved_to = 0

    @property
    def file(self) -> ReceptionFile:
        """pynetdicom flushes through ``.file``; the flush is guarded too."""
        return self

    def _fail(self, error: OSError) -> None:
        self._stop(f"spool {disk_error(error)} while receiving")

    def _stop(self, reason: str) -> None:
        """Write nothing more (the rest is read and dropped) and free what was written."""
        self._failed = True
        with _failed_lock:
            _failed[self.name] = reason
            while len(_failed) > REMEMBERED_FAILURES:
                del _failed[next(iter(_failed))]
        try:
            self._inner.truncate(0)
        except OSError:
            return

    def _past_a_limit(self, incoming: int) -> str | None:
        """Why ``incoming`` more bytes may not be written, or None."""
        largest = self._limits.max_file_bytes
        if largest is not None and self._written + incoming > largest:
            return f"instance larger than {largest} bytes"
        shortfall = self._free_space.shortfall(self._inner.fileno(), incoming)
        return f"spool {shortfall} while receiving" if shortfall else None

    def write(self, data: bytes | memoryview) -> int:
        """Write ``data`` (taken whole, and dropped once the writing has stopped)."""
        self.write_pieces([data])
        return len(data)

    def write_pieces(self, pieces: Sequence[bytes | memoryview]) -> None:
        """Write ``pieces`` one after another with one system call (a batch of data set
        fragments), straight to the descriptor: no copy into Python's file buffer."""
        self._write(sum(len(piece) for piece in pieces), lambda fd: write_all(fd, pieces))

    def take_spliced(self, pipe: SplicePipe) -> None:
        """Write everything ``pipe`` holds (data set bytes spliced from the socket, in order
        after all written before); dropped once the writing has stopped."""
        if pipe.held:
            self._write(pipe.held, pipe.drain_into)
        pipe.discard()  # anything the writing did not take

    def _write(self, incoming: int, write: Callable[[int], None]) -> None:
        """Write ``incoming`` bytes with ``write(descriptor)`` within the limits, reserving
        blocks ahead, starting the write-out every ``WRITEBACK_STEP`` and the early header
        read once past its mark."""
        if self._failed:
            return
        try:
            refusal = self._past_a_limit(incoming)
            if refusal is not None:
                self._stop(refusal)
                return
            descriptor = self._inner.fileno()
            if not self._flushed:
                self._inner.flush()  # anything written through Python's buffer goes first
                self._flushed = True
            self._reserve_ahead(descriptor, incoming)
            write(descriptor)
        except OSError as error:
            self._fail(error)
            return
        before = self._written
        self._written += incoming
        self._unsubmitted += incoming
        if self._unsubmitted >= WRITEBACK_STEP:
            start_writeback(descriptor)
            self._unsubmitted = 0
        if before < early_header.EARLY_READ_AFTER_BYTES <= self._written:
            early_header.begin(self.name, self._written)  # this write crossed the mark

    def _reserve_ahead(self, descriptor: int, incoming: int) -> None:
        """Reserve blocks a step past the coming write (the few hundred bytes of File Meta
        Information written through Python's buffer are not counted: they fall in the first
        step's margin)."""
        needed = self._written + incoming
        if self._reserved_to < 0 or needed <= self._reserved_to:
            return
        target = needed + preallocation.STEP
        if preallocation.reserve(descriptor, self._reserved_to, target - self._reserved_to):
            self._reserved_to = target
        else:
            self._reserved_to = -1

    def flush(self) -> None:
        if self._failed:
            return
        try:
            self._inner.flush()
        except OSError as error:
            self._fail(error)

    def start_sync(self) -> None:
        """Begin the file's fsync on another thread, a head start whose outcome the intake
        waits for (``early_sync``). A duplicate descriptor keeps it valid after pynetdicom
        closes the file.

        The blocks reserved past the last byte are given back on that thread too, before its
        fsync: truncating waits for the write-out of the page the file ends in, which the
        early write-out has usually started, and on the connection's thread that wait held up
        the answer (four associations: 70.4-71.6 images/s with it there, 74.0-77.0 without,
        three alternating pairs, 2026-12-01). So this is called once the last byte is
        written (``gateway.pdata``): the give-back truncates the file to the size it has then,
        and a write racing with it could be cut off.
        """
        if self._failed:
            return
        try:
            self._inner.flush()
            descriptor = os.dup(self._inner.fileno())
        except OSError as error:
            self._fail(error)
            return
        reserved, self._reserved_to = self._reserved_to > 0, 0
        job = _early_sync.submit(_early_fsync, descriptor, trim=reserved)
        with _syncing_lock:
            _syncing[self.name] = (job, descriptor)
            while len(_syncing) > REMEMBERED_FAILURES:
                _syncing.popitem(last=False)

    def close(self) -> None:
        try:
            self._inner.close()
        except OSError as error:
            self._fail(error)

    def abandon(self) -> None:
        """Close and remove the file: its data set will never be finished. Its early fsync
        and failure, if any, are forgotten with it."""
        with contextlib.suppress(OSError):
            self._inner.close()
        path = Path(self.name)
        with contextlib.suppress(OSError):
            path.unlink()
        early_sync(path)
        reception_failure(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def write_all(descriptor: int, pieces: Sequence[bytes | memoryview]) -> None:
    """Write ``pieces`` in order with ``os.writev``, at most ``IOV_MAX`` of them per call (tiny
    PDUs can bring thousands), finishing any call that took fewer bytes than given (a regular
    file takes them all but may not, e.g. on a signal)."""
    for first in range(0, len(pieces), IOV_MAX):
        batch = pieces[first : first + IOV_MAX]
        written = os.writev(descriptor, batch)
        if written < sum(len(piece) for piece in batch):
            remaining = memoryview(b"".join(batch))[written:]
            while remaining:
                remaining = remaining[os.write(descriptor, remaining) :]


def _early_fsync(descriptor: int, *, trim: bool) -> str | None:
    """Give back the reserve past the file's end (where one was made), then fsync; why the
    fsync failed (an Error Comment), or None once the file is durable."""
    try:
        if trim:
            # A reserve left here is given back when the spool keeps the file.
            with contextlib.suppress(OSError):
                preallocation.trim(descriptor)
        _sync_and_close(descriptor)
    except OSError as error:
        return f"spool {disk_error(error)} at fsync"
    return None


def _sync_and_close(descriptor: int) -> None:
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


PYNETDICOM_FILE_ARGUMENTS: dict[str, Any] = {"delete": False, "mode": "wb", "suffix": ".dcm"}
"""How pynetdicom asks for a reception file; a prepared file is made the same way."""


def _reception_file(*args: Any, **kwargs: Any) -> ReceptionFile:
    """pynetdicom's reception file: the one prepared on this thread, or a new one."""
    prepared = prepared_file.take() if not args and kwargs == PYNETDICOM_FILE_ARGUMENTS else None
    if prepared is None:
        prepared = _original_temporary_file(*args, **kwargs)
    return ReceptionFile(prepared)


def prepare_next_reception() -> None:
    """Create this thread's next reception file now (``gateway.prepared_file``), while the
    sender prepares its next image; nothing unless ``receive_into`` has run."""
    if getattr(dimse_messages, "NamedTemporaryFile", None) is _reception_file:
        prepared_file.prepare(lambda: _original_temporary_file(**PYNETDICOM_FILE_ARGUMENTS))


def receive_into(incoming: Path, limits: ReceptionLimits | None = None) -> None:
    """Make pynetdicom write receptions into ``incoming`` through ``ReceptionFile``, within
    ``limits``."""
    global _limits
    _limits = limits or ReceptionLimits()
    pynetdicom_config.STORE_RECV_CHUNKED_DATASET = True
    tempfile.tempdir = str(incoming)
    # pynetdicom imports these by name into dimse_messages; those names are replaced.
    setattr(dimse_messages, "NamedTemporaryFile", _reception_file)  # noqa: B010
    setattr(dimse_messages, "write_file_meta_info", write_reception_file_meta)  # noqa: B010
    guard_message_decoding()


@dataclass(frozen=True)
class EarlySync:
    """What the early fsync of a reception came to."""

    durable: bool = False
    """It succeeded: everything written to the file is on disk, and the spool need not fsync
    the file again."""
    failure: str | None = None
    """Why it failed (an Error Comment, e.g. ``spool disk: EIO at fsync``)."""


def early_sync(path: Path) -> EarlySync:
    """Wait for the early fsync of the reception at ``path``, if one was started, and say what
    it came to.

    One that has not started yet (its threads busy with other receptions, or not yet given the
    GIL: about a third of them in a live run) is dropped instead, so the spool's own fsync is
    the first to look and reports any failure itself."""
    with _syncing_lock:
        started = _syncing.pop(str(path), None)
    if started is None:
        return EarlySync()
    job, descriptor = started
    if job.cancel():  # still queued behind other receptions' fsyncs: the spool's comes first
        os.close(descriptor)
        return EarlySync()
    failure = job.result()  # never raises: a failure is its reason
    return EarlySync(durable=failure is None, failure=failure)


def reception_failure(path: Path) -> str | None:
    """Why writing this reception stopped (an Error Comment, e.g. ``spool disk: ENOSPC while
    receiving``), or None; forgets it once asked."""
    with _failed_lock:
        return _failed.pop(str(path), None)
