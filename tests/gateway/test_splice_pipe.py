"""The splice pipe: bytes go from a TCP connection to a file in order, none lost, none doubled,
and a full pipe, a quiet peer and a closed one are told apart."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import receiving, splice_pipe
from gateway.receiving import ReceptionFile, ReceptionLimits
from gateway.splice_pipe import PIPE_FULL, SPLICE_UNSUPPORTED, SplicePipe, open_pipe

pytestmark = pytest.mark.skipif(not hasattr(os, "splice"), reason="splice(2) is Linux's")


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, int]]:
    """A loopback TCP connection: the sending socket, and the receiving one's non-blocking
    descriptor (as the gateway's)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
    receiver.setblocking(False)
    try:
        yield sender, receiver.fileno()
    finally:
        sender.close()
        receiver.close()


@pytest.fixture
def pipe() -> Iterator[SplicePipe]:
    opened = open_pipe()
    assert opened is not None
    try:
        yield opened
    finally:
        opened.close()


def fill_until(pipe: SplicePipe, descriptor: int, count: int, out: int) -> None:
    """Move ``count`` bytes through the pipe into ``out``, draining it whenever it is full."""
    while count:
        moved = pipe.fill(descriptor, count, wait=5)
        if moved == PIPE_FULL:
            pipe.drain_into(out)
            continue
        assert moved is not None, "nothing came"
        assert moved > 0, f"fill answered {moved}"
        count -= moved
    pipe.drain_into(out)


def test_bytes_go_from_the_connection_to_the_file_in_order(
    connection: tuple[socket.socket, int], pipe: SplicePipe, tmp_path: Path
) -> None:
    sender, descriptor = connection
    data = os.urandom(3 << 20)  # three times the pipe's size
    sender.sendall(data[:1000])
    with open(tmp_path / "out", "wb") as out:
        out.write(b"before ")
        out.flush()
        fill_until(pipe, descriptor, 1000, out.fileno())
        assert pipe.held == 0
        assert pipe.room == pipe.capacity
        sender.sendall(data[1000:])
        fill_until(pipe, descriptor, len(data) - 1000, out.fileno())
    assert (tmp_path / "out").read_bytes() == b"before " + data


def test_a_full_pipe_is_told_apart_from_a_quiet_connection(
    connection: tuple[socket.socket, int], pipe: SplicePipe, tmp_path: Path
) -> None:
    """A pipe counts page slots, not bytes: shrunk to one page it is full after 4 KiB."""
    sender, descriptor = connection
    fcntl.fcntl(pipe._write_end, splice_pipe.F_SETPIPE_SZ, 4096)
    sender.sendall(bytes(range(256)) * 64)  # 16 KiB
    first = pipe.fill(descriptor, 1 << 14, wait=5)
    assert first == 4096
    pipe.capacity = 1 << 14  # as if the pipe's slots ran out before its bytes
    assert pipe.fill(descriptor, 1 << 14, wait=5) == PIPE_FULL
    with open(tmp_path / "out", "wb") as out:
        fill_until(pipe, descriptor, (1 << 14) - 4096, out.fileno())
    assert pipe.fill(descriptor, 1, wait=0.05) is None, "nothing more came: quiet"
    assert (tmp_path / "out").read_bytes() == bytes(range(256)) * 64


def test_a_closed_connection_answers_zero(
    connection: tuple[socket.socket, int], pipe: SplicePipe
) -> None:
    sender, descriptor = connection
    sender.sendall(b"last words")
    sender.close()
    assert pipe.fill(descriptor, 100, wait=5) == len(b"last words")
    assert pipe.fill(descriptor, 100, wait=5) == 0
    pipe.discard()
    assert pipe.held == 0


def test_a_descriptor_that_cannot_be_spliced_is_reported(pipe: SplicePipe, tmp_path: Path) -> None:
    """splice(2) answers EINVAL for a descriptor it cannot read from (a directory here; a
    socket type without splice support, or a sandbox's refusal, alike)."""
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert pipe.fill(folder, 100, wait=1) == SPLICE_UNSUPPORTED
    finally:
        os.close(folder)
    assert pipe.held == 0


def test_no_pipe_where_there_is_no_splice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "splice")
    assert open_pipe() is None


def test_a_reception_takes_spliced_bytes_after_what_it_wrote(
    connection: tuple[socket.socket, int], pipe: SplicePipe, tmp_path: Path
) -> None:
    sender, descriptor = connection
    sender.sendall(b" spliced")
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner)
        inner.write(b"meta")  # through Python's buffer, as pynetdicom writes the File Meta
        reception.write(b" written")
        assert pipe.fill(descriptor, 8, wait=5) == 8
        reception.take_spliced(pipe)
        reception.write(b" and more")
        reception.close()
    assert Path(inner.name).read_bytes() == b"meta written spliced and more"
    assert pipe.held == 0


def test_spliced_bytes_past_the_instance_limit_stop_the_writing_and_are_dropped(
    connection: tuple[socket.socket, int], pipe: SplicePipe, tmp_path: Path
) -> None:
    sender, descriptor = connection
    sender.sendall(bytes(1500))
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as inner:
        reception = ReceptionFile(inner, ReceptionLimits(max_file_bytes=1000))
        assert pipe.fill(descriptor, 600, wait=5) == 600
        reception.take_spliced(pipe)
        assert pipe.fill(descriptor, 900, wait=5) == 900
        reception.take_spliced(pipe)
        assert pipe.held == 0, "the refused bytes were left in the pipe"
        reception.close()
    assert receiving.reception_failure(Path(inner.name)) == "instance larger than 1000 bytes"
    assert Path(inner.name).stat().st_size == 0, "the partial file was not freed"


def test_a_file_that_cannot_take_a_splice_is_written_by_copying(
    connection: tuple[socket.socket, int],
    pipe: SplicePipe,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender, descriptor = connection
    data = os.urandom(200_000)
    sender.sendall(data)
    splice = os.splice

    def no_splice_into_files(source: int, target: int, count: int, **kwargs: Any) -> int:
        if target != pipe._write_end:
            raise OSError(errno.EINVAL, "Invalid argument")
        return splice(source, target, count, **kwargs)

    monkeypatch.setattr(os, "splice", no_splice_into_files)
    with open(tmp_path / "out", "wb") as out:
        fill_until(pipe, descriptor, len(data), out.fileno())
    assert (tmp_path / "out").read_bytes() == data
