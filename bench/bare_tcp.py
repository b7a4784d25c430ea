"""A bare TCP receiver and sender for ``bench/ingest.py``: what durability alone costs here.

The receiver speaks no DICOM. Each message is an 8-byte length and that many bytes; it moves
them from the socket into a fresh file as the gateway does (``splice`` through a pipe where Linux
offers it, the write-out started every MiB), answers one byte, and deletes the file. Run
``--durable`` it fsyncs each file before answering, as the gateway does before its success;
without, the file stays in the page cache, as storescp's do during the benchmark. The ratio of
the two, over the same parallel streams, is what writing every file durably costs on this
machine with no DICOM, no Python per PDU and no database in the way. Usage (the benchmark
starts both sides itself):

    python bench/bare_tcp.py serve PORT FOLDER [--durable]
    python bench/bare_tcp.py send PORT FILE...
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import os
import socket
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LENGTH_BYTES = 8
PIPE_BYTES = 1 << 20
DRAIN_AT = 256 << 10
"""Bytes spliced into the pipe before it is drained into the file: well inside the pipe's
slots, which a socket's small segments can use up before its bytes."""
F_SETPIPE_SZ = 1031


def receive_exactly(connection: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def splice_into(connection: socket.socket, descriptor: int, length: int, *, durable: bool) -> None:
    """Move ``length`` bytes from the socket into the file through a pipe, starting the
    write-out every ``WRITEBACK_STEP`` when ``durable``."""
    from gateway.receiving import WRITEBACK_STEP, start_writeback

    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
        left, held, unsubmitted = length, 0, 0
        while left:
            moved = os.splice(connection.fileno(), write_end, min(left, DRAIN_AT))
            if moved == 0:
                raise EOFError
            left -= moved
            held += moved
            if held >= DRAIN_AT or not left:
                unsubmitted += held
                while held:
                    held -= os.splice(read_end, descriptor, held)
                if durable and unsubmitted >= WRITEBACK_STEP:
                    start_writeback(descriptor)
                    unsubmitted = 0
    finally:
        os.close(read_end)
        os.close(write_end)


def copy_into(connection: socket.socket, descriptor: int, length: int, *, durable: bool) -> None:
    """The same without ``splice`` (not Linux): read into a buffer, write it out."""
    from gateway.receiving import WRITEBACK_STEP, start_writeback

    left, unsubmitted = length, 0
    while left:
        chunk = connection.recv(min(left, DRAIN_AT))
        if not chunk:
            raise EOFError
        os.write(descriptor, chunk)
        left -= len(chunk)
        unsubmitted += len(chunk)
        if durable and unsubmitted >= WRITEBACK_STEP:
            start_writeback(descriptor)
            unsubmitted = 0


def receive_files(connection: socket.socket, folder: Path, *, durable: bool) -> None:
    """Take messages until the sender closes: each into a file, fsynced if ``durable``, then
    answered and deleted."""
    into = splice_into if hasattr(os, "splice") else copy_into
    number = 0
    with connection:
        while True:
            try:
                header = receive_exactly(connection, LENGTH_BYTES)
            except EOFError:
                return
            path = folder / f"{os.getpid()}-{threading.get_ident()}-{number}"
            number += 1
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                into(connection, descriptor, int.from_bytes(header, "big"), durable=durable)
                if durable:
                    os.fsync(descriptor)
            finally:
                os.close(descriptor)
                path.unlink()
            connection.sendall(b"\x00")


def serve(port: int, folder: Path, *, durable: bool) -> None:
    """Listen on ``port`` (SO_REUSEPORT: several of these share it, as the gateway's processes
    do), a thread per connection, until killed. The gateway's write-out is imported here,
    before the first connection, not at the top: the senders start without pynetdicom's
    imports, which cost more CPU than sending an image."""
    sys.path.insert(0, str(REPO))
    importlib.import_module("gateway.receiving")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    while True:
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(
            target=receive_files, args=(connection, folder), kwargs={"durable": durable}
        ).start()


def send(port: int, paths: list[Path]) -> None:
    """Send each file as one message and wait for its answer, one at a time, as storescu does
    over one association; with ``sendfile`` (no copy through the sender), so the sender costs
    less CPU than storescu and the receivers get more of the machine than they would."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for path in paths:
            with path.open("rb") as source:
                length = os.fstat(source.fileno()).st_size
                connection.sendall(length.to_bytes(LENGTH_BYTES, "big"))
                connection.sendfile(source)
            if receive_exactly(connection, 1) != b"\x00":
                raise SystemExit("unexpected answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve")
    serving.add_argument("port", type=int)
    serving.add_argument("folder", type=Path)
    serving.add_argument("--durable", action="store_true")
    sending = commands.add_parser("send")
    sending.add_argument("port", type=int)
    sending.add_argument("paths", type=Path, nargs="+")
    arguments = parser.parse_args()
    if arguments.command == "serve":
        serve(arguments.port, arguments.folder, durable=arguments.durable)
    else:
        send(arguments.port, arguments.paths)


if __name__ == "__main__":
    main()
