"""Helpers shared by the tests: ports, polling, peers and the shared data set."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine, text

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_CXR = REPO_ROOT / "tests" / "data" / "cxr"
"""Real radiographs kept in the repository (see its README.md for sources and licences)."""
CHEST_FILES = (
    "cr_chest_pa_fuji_mono1_no-part10-header.dcm",
    "cr_chest_pa_philips_mono1_j2k-lossy.dcm",
    "cr_chest_pa_siim-nih_mono2_jpeg-baseline.dcm",
)
NON_CHEST_FILES = (
    "non_chest/cr_hip_fuji_mono2_rle.dcm",
    "non_chest/cr_tibia_fuji_mono1_jpeg-lossless.dcm",
)
REQUIRE_SERVICES = os.environ.get("TEST_REQUIRE_SERVICES") == "1"

T = TypeVar("T")


def missing(what: str) -> None:
    """Skip when a peer is missing on a developer machine; fail where CI promised it."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (TEST_REQUIRE_SERVICES=1) but missing")
    pytest.skip(f"{what} not available")


def cxr_file(name: str) -> Path:
    """A real radiograph of ``tests/data/cxr``; a missing file fails the test with its path."""
    path = TEST_CXR / name
    if not path.is_file():
        pytest.fail(f"test data file missing: {path}")
    return path


def require_tool(name: str) -> str:
    """Path of a command-line tool (dcmtk, redis-server, ...)."""
    path = shutil.which(name)
    if path is None:
        missing(name)
    assert path is not None
    return path


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, and never handed out before in this run: two
    taken one after the other (a PACS's and a RIS's, started later) could otherwise be the same
    port, and the second peer would fail to bind ("Address already in use")."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the peer closes ``connection`` within ``seconds`` (what it sends is read)."""
    connection.settimeout(seconds)
    try:
        while connection.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def returns_within(seconds: float, call: Callable[[], T], *, what: str) -> T | BaseException:
    """Run ``call`` on a daemon thread and give back what it returned or raised; fail the test
    if it is still running after ``seconds`` (a call that would hang for good, the fault these
    tests look for, must not hang the suite)."""
    outcome: list[T | BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds:g} s: {what}")
    return outcome[0]


def wait_until(condition: Callable[[], T | None], *, timeout: float = 30.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy (and return it); fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def partial_receptions(incoming: Path) -> list[Path]:
    """Files with content in the gateway's incoming folder (an empty one is the reception file
    prepared for an association's next image, ``gateway.prepared_file``)."""

    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:  # a prepared file removed meanwhile
            return 0

    return [path for path in incoming.iterdir() if size(path)]


def assert_no_reception_left(incoming: Path, *, abandoned: bool = False) -> None:
    """Nothing of a reception is left in the gateway's incoming folder once the sender has its
    answers: a refused one is removed before its answer, so any file with content there now is
    left behind; an empty file prepared for the association's next image goes when the
    association's thread ends, which may be just after the sender's release. So does, with
    ``abandoned``, a data set that was still arriving when the association ended (an abort, a
    lost connection, a broken PDU): no answer tells the sender when that is, so only its going
    is checked."""
    if not abandoned:
        assert partial_receptions(incoming) == [], "no partial file left"
    wait_until(lambda: not any(incoming.iterdir()), timeout=30,
               what="the reception files to go with their association")  # fmt: skip


@contextmanager
def postgres_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A fresh Postgres database for one test, empty or a copy of the database ``template``
    (which nothing may be connected to); dropped afterwards."""
    name = "radraft_t_" + uuid.uuid4().hex[:12]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    copied = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{copied}'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class RedisServer:
    """A real redis-server on 127.0.0.1 that a test can stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.binary = require_tool("redis-server")
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=15, what="redis-server to start")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (its append-only file keeps queued messages)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class PostgresServer:
    """A Postgres cluster of one test, on 127.0.0.1, that the test may stop and restart.

    It lives in a folder of its own under $TMPDIR (or /tmp): pytest's folders are private to
    root, and the server runs as the postgres user.
    """

    def __init__(self) -> None:
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not binaries:
            missing("PostgreSQL server binaries (apt-get install postgresql)")
        self.bin = binaries[-1]
        self.port = free_port()
        base = Path(os.environ.get("TMPDIR") or "/tmp")
        self.directory = base / f"radraft-test-pg-{uuid.uuid4().hex[:10]}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's postgres database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Create the cluster on first use, then start it and wait until it answers."""
        data = self.directory / "data"
        if not (data / "PG_VERSION").exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.directory.chmod(0o755)
            if os.getuid() == 0:
                shutil.chown(self.directory, "postgres", "postgres")
            self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres",
                      "--auth=trust")  # fmt: skip
        self._run(
            str(self.bin / "pg_ctl"), "-s", "-D", str(data), "-l",
            str(self.directory / "server.log"), "-w", "start", "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c max_connections=200",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the cluster (fast: open connections are cut, as in a real restart)."""
        self._run(str(self.bin / "pg_ctl"), "-s", "-D", str(self.directory / "data"),
                  "-m", "fast", "-w", "stop")  # fmt: skip

    def _processes(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        postmaster = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        return [postmaster, *child_pids(postmaster)]

    def freeze(self) -> None:
        """Stop every process of the cluster (SIGSTOP), as frozen storage or a debugger would:
        its host still accepts connections and acknowledges bytes, nothing answers."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Let the cluster's processes run again (SIGCONT)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        """Stop if running (thawed first, if a failed test left it frozen), and delete it."""
        with contextlib.suppress(OSError, ValueError):
            self.thaw()
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(value) for value in text)
    return children


def traced_peak(action: Callable[[], T]) -> tuple[T, int]:
    """What ``action`` returns, and the peak of the memory Python allocated while it ran (as
    tracemalloc counts it: numpy's and pydicom's buffers too, in every thread)."""
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def recorded_results(
    monkeypatch: pytest.MonkeyPatch,
    module: object,
    name: str,
    keep: Callable[[Any], Any] = lambda result: result,
) -> list[Any]:
    """Wrap ``module.name`` for this test so that every result it returns is also appended to
    the returned list, as ``keep`` makes it (which path a call took, when None means the
    fallback)."""
    original = getattr(module, name)
    results: list[Any] = []

    def recording(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)
        results.append(keep(result))
        return result

    monkeypatch.setattr(module, name, recording)
    return results
