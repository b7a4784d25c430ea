"""A connection's pipe, through which data set bytes go from the socket to the file unread.

Reading a data set into Python's memory and writing it out copies every byte twice; splicing
(``splice(2)``: socket -> pipe moves page references, pipe -> file is the one copy) leaves one
copy and no Python per byte. Measured on loopback (2026-12-01): a bare receiver of 15.7 MB
images with fsync took 6.0-7.4 ms of CPU per image spliced against 7.4-10.8 copied; a live
gateway over one association 11.8-14.0 ms against 12.8-16.8, lower in each of seven
alternating pairs. Draining the pipe into the file after every 128 KiB PDU instead of every
MiB cost 2-3 ms of that per image, hence the large pipe and ``room``.

``gateway.pdata`` uses it for the payload of each data set PDU; headers are still read into
Python. Linux only: ``open_pipe`` answers None where there is no ``os.splice`` or no pipe, and
the copying path is used.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from radraft.readiness import wait_readable

PIPE_BYTES = 1 << 20
"""The pipe's size asked for: /proc/sys/fs/pipe-max-size's default, and ``READ_AHEAD_BYTES``."""
F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
"""linux/fcntl.h; Python's fcntl names them only from 3.10 and only on Linux."""
UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM})
"""What ``splice`` answers where a descriptor cannot be spliced (or a sandbox forbids it)."""


class SplicePipe:
    """Bytes taken from a socket and not yet given to a file (``held``), at most ``capacity``.

    ``fill`` takes from the socket, ``drain_into`` gives all of it to a file, ``discard`` drops
    it. One connection's thread owns it; ``close`` when the connection ends.
    """

    def __init__(self, read_end: int, write_end: int, capacity: int) -> None:
        self._read_end = read_end
        self._write_end = write_end
        self.capacity = capacity
        self.held = 0

    @property
    def room(self) -> int:
        """Bytes the pipe can take before it must be drained."""
        return self.capacity - self.held

    def fill(self, descriptor: int, count: int, wait: float | None) -> int | None:
        """Move up to ``count`` bytes from the non-blocking socket ``descriptor`` into the pipe,
        waiting up to ``wait`` seconds (None: no limit) for the first. Returns the count moved;
        0 if the peer closed or the socket failed; None if nothing came in time; ``PIPE_FULL``
        if the pipe has no room although bytes wait (drain it, then fill again);
        ``SPLICE_UNSUPPORTED`` if this socket cannot be spliced (nothing was moved).

        The pipe counts slots (one per page fragment), not bytes, so it can be full before
        ``capacity`` bytes; a full pipe answers EAGAIN as an empty socket does, and a look at
        the socket tells the two apart.
        """
        wanted = min(count, self.room)
        if wanted <= 0:
            return PIPE_FULL
        while True:
            try:
                moved = os.splice(descriptor, self._write_end, wanted, flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                if self.held and _readable_now(descriptor):
                    return PIPE_FULL
                if not wait_readable(descriptor, wait):
                    return None
                continue
            except OSError as error:
                return SPLICE_UNSUPPORTED if error.errno in UNSUPPORTED else 0
            self.held += moved
            return moved

    def drain_into(self, descriptor: int) -> None:
        """Give everything held to the file ``descriptor`` (at its position); on a write error
        what is left is dropped and the error raised. A filesystem that cannot take a splice
        (EINVAL) is written with ``read`` and ``write`` instead."""
        try:
            while self.held:
                try:
                    self.held -= os.splice(self._read_end, descriptor, self.held)
                except OSError as error:
                    if error.errno not in UNSUPPORTED:
                        raise
                    self._copy_into(descriptor)
        except OSError:
            self.discard()
            raise

    def _copy_into(self, descriptor: int) -> None:
        while self.held:
            data = memoryview(os.read(self._read_end, self.held))
            self.held -= len(data)
            while data:
                data = data[os.write(descriptor, data) :]

    def discard(self) -> None:
        """Drop everything held."""
        while self.held:
            self.held -= len(os.read(self._read_end, self.held))

    def close(self) -> None:
        for end in (self._read_end, self._write_end):
            try:
                os.close(end)
            except OSError:
                continue
        self.held = 0


PIPE_FULL = -1
"""``fill``'s answer when the pipe has no slot left although bytes wait on the socket."""
SPLICE_UNSUPPORTED = -2
"""``fill``'s answer where the socket cannot be spliced: read it the copying way."""


def _readable_now(descriptor: int) -> bool:
    return wait_readable(descriptor, 0)


def open_pipe() -> SplicePipe | None:
    """A pipe of ``PIPE_BYTES`` (or the system's default size where it may not grow), or None
    where splicing is not available here."""
    if not hasattr(os, "splice"):
        return None
    try:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
    except OSError:
        return None
    # Over the user's pipe quota or pipe-max-size the pipe keeps its default size, which works.
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
    try:
        capacity = fcntl.fcntl(write_end, F_GETPIPE_SZ)
    except OSError:
        capacity = 1 << 16
    return SplicePipe(read_end, write_end, capacity)
