"""Ingest benchmark: radraft's gateway against a tuned dcmtk storescp and the disk, in one run.

dcmtk's storescu sends large DX images with Nagle's algorithm off (``TCP_NODELAY=1`` in its
environment; dcmtk leaves it on otherwise, and then the benchmark measures the sender's stalls,
not the receivers). Every round measures, on the same files:

- the disk: write + fsync of each file, one thread (the durable limit of this machine);
- one association: storescp ``--max-pdu 131072`` (no fsync) vs ``radraft gateway --processes 1``;
- parallel associations: storescp ``--fork`` vs ``radraft gateway --processes N``;
- both again against storescp syncing each file's data as it stores it (``--exec-on-reception
  "sync -d #p/#f" --exec-sync``: dcmtk's nearest to the gateway's durability, though it syncs
  after answering), which compares like with like where the goals' reference does not;
- the ceiling of the gateway's receive path: a pynetdicom SCP with the gateway's transport
  (bulk reads, Nagle off, data set PDUs read straight into a file and each C-STORE answered on
  the connection's thread by ``gateway/pdata.py``, answers and file meta encoded by
  ``gateway/answers.py`` and ``gateway/file_meta.py``, the gateway's logging settings) that
  deletes each file and answers success, so what remains between it and the gateway is the
  gateway's own work (verification, header, fsync, database); measured over one association
  and over the parallel ones, there in as many processes as the gateway, sharing one port;
  over the parallel ones also with its files never written out to the disk (no write-out
  started while they arrive, no early fsync: ``no disk``), as storescp's are not during the
  run, which tells the receive path's cost apart from the durable writes';
- a bare TCP receiver (``bench/bare_tcp.py``: no DICOM, files moved from the socket with
  ``splice`` as the gateway does, a cheap ``sendfile`` sender) over the parallel streams, with
  each file fsynced before its answer and without: what durability alone costs on this machine,
  and so about the most any receiver that fsyncs before answering could reach against
  ``storescp --fork``.

The gateway fsyncs every file before it answers success and records every instance in the
database; after each gateway run the benchmark counts the instance rows and stops if one is
missing. Each gateway run and its storescp references run back to back (storescp, gateway,
storescp syncing), in reverse order in odd rounds. Prints images/s and every ratio (goals:
gateway / storescp >= 0.8, both ways), for the two goals also the ratio within each round and
against the reference's fastest round (dcmtk's storescp has a slow and a fast mode on some
virtual machines, see the README, and its median may be the slow one), and each receiver's CPU
time per image while it received (its processes' user + system time, from ``/proc``): on a
small shared machine the rate says as much about the host as about the receiver, the CPU time
much less. Usage:

    .venv/bin/python bench/ingest.py [--studies 40] [--size 2800] [--rounds 3]
        [--associations 4] [--processes N] [--database-url postgresql+psycopg://...]

A 2800 x 2800 16-bit image is about 15.7 MB, as a detector's DX image is. With
``--database-url`` (a Postgres server) each gateway run gets a fresh database on that server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from radraft.models import Instance
from radraft.synthetic import SyntheticPatient, chest_pixels, make_chest_instance, synthetic_uid

REPO = Path(__file__).resolve().parent.parent
REFERENCE_PDU = 131072
NODELAY = {"TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def make_files(folder: Path, studies: int, size: int) -> list[Path]:
    """Write ``studies`` PA + lateral studies; pixels are made once per view to save time."""
    pixels = {
        view: chest_pixels(size, size, view=view, seed=1).tobytes() for view in ("PA", "LATERAL")
    }
    paths = []
    for study in range(studies):
        for view in ("PA", "LATERAL"):
            dataset = make_chest_instance(
                study_instance_uid=synthetic_uid(f"bench-study-{study}"),
                series_instance_uid=synthetic_uid(f"bench-series-{study}-{view}"),
                sop_instance_uid=synthetic_uid(f"bench-{study}-{view}"),
                view=view,
                accession_number=f"BENCH{study:05d}",
                patient=SyntheticPatient(patient_id=f"BENCH{study:05d}"),
                rows=8,
                columns=8,
            )
            dataset.Rows = dataset.Columns = size
            dataset.PixelData = pixels[view]
            path = folder / f"{study:03d}_{view}.dcm"
            dataset.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def split(paths: list[Path], groups: int) -> list[list[Path]]:
    """Whole studies per association (PA and lateral together), round robin."""
    studies = [paths[index : index + 2] for index in range(0, len(paths), 2)]
    return [[p for study in studies[n::groups] for p in study] for n in range(groups)]


@dataclass(frozen=True)
class Run:
    """One receiver's run: images, seconds until the last was answered, and the CPU seconds
    its processes used meanwhile (user + system, every thread and child process)."""

    images: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.cpu_seconds / self.images


def tree_cpu_seconds(*roots: int) -> float:
    """CPU seconds used so far by processes and their descendants (Linux ``/proc``, read once):
    each live process's own time, and what its reaped children used (so a child that ended
    counts once)."""
    own: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        # After the command: state ppid ... utime(11) stime(12) cutime(13) cstime(14).
        own[int(entry)] = sum(int(value) for value in fields[11:15])
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, pending = 0, list(roots)
    while pending:
        pid = pending.pop()
        total += own.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def send(groups: list[list[Path]], port: int, *receivers: int) -> Run:
    """Send every file with storescu (one association per group, all at once); the run as the
    receiver (processes ``receivers`` and their children) saw it."""
    streams = [[storescu_command(port, group)] for group in groups]
    return run_senders(streams, sum(map(len, groups)), receivers)


def storescu_command(port: int, files: list[Path]) -> list[str]:
    """dcmtk's storescu sending ``files`` over one association (run it with ``NODELAY``)."""
    return ["storescu", "--max-pdu", str(REFERENCE_PDU), "-aet", "BENCH", "-aec", "RADRAFT",
            "127.0.0.1", str(port), *map(str, files)]  # fmt: skip


def run_senders(streams: list[list[list[str]]], images: int, receivers: tuple[int, ...]) -> Run:
    """Run the sender streams all at once (Nagle off), each stream's commands one after
    another, until every one has finished; the run as the receiver (processes ``receivers``
    and their children) saw it."""
    environment = {**os.environ, **NODELAY}
    failures: list[str] = []

    def run_stream(commands: list[list[str]]) -> None:
        for command in commands:
            sent = subprocess.run(
                command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                check=False,
            )  # fmt: skip
            if sent.returncode != 0:
                failures.append(sent.stderr.decode(errors="replace")[-2000:])

    cpu_before = tree_cpu_seconds(*receivers)
    start = time.perf_counter()
    threads = [threading.Thread(target=run_stream, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    cpu = tree_cpu_seconds(*receivers) - cpu_before
    if failures:
        raise SystemExit(f"{streams[0][0][0]} failed: {failures[0]}")
    return Run(images, elapsed, cpu)


def disk_rate(paths: list[Path], workdir: Path, *, early_writeback: bool) -> float:
    """Images/s for write + fsync of each file into a fresh folder, one thread.

    With ``early_writeback`` the file is written 128 KiB at a time (as PDUs arrive) and the
    kernel is asked to start writing it out every 4 MiB, as the gateway does.
    """
    from gateway.receiving import WRITEBACK_STEP, start_writeback

    out = workdir / "disk"
    out.mkdir()
    seconds = 0.0
    try:
        for path in paths:
            data = memoryview(path.read_bytes())
            start = time.perf_counter()
            with open(out / path.name, "wb") as stream:
                if early_writeback:
                    for offset in range(0, len(data), REFERENCE_PDU):
                        stream.write(data[offset : offset + REFERENCE_PDU])
                        if (offset + REFERENCE_PDU) % WRITEBACK_STEP < REFERENCE_PDU:
                            stream.flush()
                            start_writeback(stream.fileno())
                else:
                    stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            seconds += time.perf_counter() - start
    finally:
        shutil.rmtree(out)
    return len(paths) / seconds


SYNC_EACH_FILE = ["--exec-on-reception", "sync -d #p/#f", "--exec-sync"]
"""storescp's nearest to durable storage: each stored file's data synced (coreutils ``sync -d``,
an fdatasync) before the association's next message is read. dcmtk runs the command after it
has answered, so the sender already holds its success while the sync runs, a weaker promise
than the gateway's (file, folder entry and database row durable before the answer), and the
command costs a fork and exec per file."""


Sender = Callable[..., Run]
"""``send`` or another function of (groups, port, *receiver pids) that sends every file."""


def storescp_rate(
    groups: list[list[Path]], workdir: Path, *, synced: bool = False, sender: Sender = send
) -> Run:
    """A run into dcmtk's storescp (``--fork`` when there are several senders); with
    ``synced`` each file is synced as it is stored (``SYNC_EACH_FILE``)."""
    out = workdir / "storescp"
    out.mkdir()
    port = free_port()
    fork = ["--fork"] if len(groups) > 1 else []
    sync = SYNC_EACH_FILE if synced else []
    process = subprocess.Popen(
        [
            "storescp",
            *fork,
            *sync,
            "--max-pdu",
            str(REFERENCE_PDU),
            "-aet",
            "RADRAFT",
            "-od",
            str(out),
            str(port),
        ],
        env={**os.environ, **NODELAY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        run = sender(groups, port, process.pid)
        received = sum(1 for _ in out.iterdir())
        if received != sum(map(len, groups)):
            raise SystemExit(f"storescp kept {received} files")
        return run
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(out)


def serve_and_discard(port: int, folder: Path, *, page_cache_only: bool = False) -> None:
    """Run a pynetdicom C-STORE SCP that keeps nothing (``--pynetdicom-ceiling-port``); with
    ``page_cache_only`` its receptions are also never written out to the disk (no write-out
    started while they arrive, no early fsync), as storescp's are not while the benchmark
    runs."""
    from pynetdicom import AllStoragePresentationContexts, evt

    from gateway import receiving
    from gateway.intake import ReceivedInstance, StoreOutcome
    from gateway.receiving import receive_into
    from gateway.scp import GatewayAE, use_gateway_receive_path
    from gateway.statuses import StoreStatus
    from radraft.logs import configure_logging

    configure_logging("WARNING")  # pynetdicom's and pydicom's settings as in the gateway
    receive_into(folder)
    if page_cache_only:
        receiving._sync_file_range = None  # start_writeback does nothing
        receiving._sync_and_close = os.close  # the early fsync only closes its descriptor
    application_entity = GatewayAE(ae_title="RADRAFT")
    application_entity.reuse_port = True  # one port for all the ceiling's processes
    application_entity.maximum_pdu_size = 4 << 20
    application_entity.supported_contexts = AllStoragePresentationContexts

    def discard(event: evt.Event) -> int:
        os.unlink(event.dataset_path)
        return 0x0000

    def discard_received(received: ReceivedInstance) -> StoreOutcome:
        os.unlink(received.path)
        return StoreOutcome(StoreStatus.SUCCESS)

    def tune(event: evt.Event) -> None:
        use_gateway_receive_path(event.assoc, 4 << 20, discard_received)

    # Not blocking: pynetdicom's blocking server is not the threaded one that ``reuse_port``
    # binds with SO_REUSEPORT; the benchmark ends this process with SIGTERM.
    application_entity.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, discard), (evt.EVT_CONN_OPEN, tune)],
    )
    threading.Event().wait()


def pynetdicom_rate(
    groups: list[list[Path]], workdir: Path, processes: int, *, page_cache_only: bool = False
) -> Run:
    """A run into ``processes`` pynetdicom SCPs that keep nothing, sharing one port as the
    gateway's processes do (SO_REUSEPORT), one association per group."""
    folder = workdir / "pynetdicom"
    folder.mkdir()
    port = free_port()
    command = [
        sys.executable, __file__, "--pynetdicom-ceiling-port", str(port), "--workdir", str(folder)
    ]  # fmt: skip
    if page_cache_only:
        command.append("--page-cache-only")
    servers = [subprocess.Popen(command, cwd=REPO) for _ in range(processes)]
    try:
        wait_for_port(port)
        time.sleep(1.0 if processes > 1 else 0.0)  # every process bound, not only the first
        return send(groups, port, *(server.pid for server in servers))
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        shutil.rmtree(folder)


def bare_rate(groups: list[list[Path]], workdir: Path, processes: int, *, durable: bool) -> Run:
    """A run into ``processes`` bare TCP receivers (``bench/bare_tcp.py``: no DICOM) sharing
    one port, one stream per group; ``durable``: each file written out and fsynced before its
    answer, else left in the page cache."""
    folder = workdir / "bare"
    folder.mkdir()
    port = free_port()
    script = str(REPO / "bench" / "bare_tcp.py")
    serving = [sys.executable, script, "serve", str(port), str(folder)]
    servers = [
        subprocess.Popen([*serving, *(["--durable"] if durable else [])]) for _ in range(processes)
    ]
    try:
        wait_for_port(port)
        time.sleep(1.0 if processes > 1 else 0.0)  # every process bound, not only the first
        streams = [[[sys.executable, script, "send", str(port), *map(str, g)]] for g in groups]
        return run_senders(streams, sum(map(len, groups)), tuple(s.pid for s in servers))
    finally:
        for server in servers:
            server.kill()
            server.wait()
        shutil.rmtree(folder)


@contextmanager
def fresh_database(server_url: str | None, data_dir: Path, name: str) -> Iterator[str]:
    """SQLite in the data dir, or a new database on the given Postgres server, dropped after."""
    if server_url is None:
        yield f"sqlite:///{data_dir / 'radraft.db'}"
        return
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def gateway_rate(
    groups: list[list[Path]],
    workdir: Path,
    server_url: str | None,
    processes: int,
    sender: Sender = send,
) -> Run:
    """A run into ``radraft gateway --processes N``; every instance must be in the database."""
    data_dir = workdir / "radraft"
    data_dir.mkdir()
    port = free_port()
    with fresh_database(server_url, data_dir, f"radraft_bench_{os.getpid()}") as database_url:
        environment = {
            **os.environ,
            "RADRAFT_DATA_DIR": str(data_dir),
            "RADRAFT_DATABASE_URL": database_url,
            "RADRAFT_DICOM_PORT": str(port),
            "RADRAFT_LOG_LEVEL": "WARNING",
        }
        subprocess.run(
            [sys.executable, "-m", "radraft_cli", "db", "upgrade"],
            env=environment,
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "radraft_cli", "gateway", "--processes", str(processes)],
            env=environment,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            time.sleep(1.0 if processes > 1 else 0.0)  # every process bound, not only the first
            run = sender(groups, port, process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait()
        engine = create_engine(database_url)
        with engine.connect() as connection:
            recorded = connection.scalar(select(func.count()).select_from(Instance))
        engine.dispose()
    shutil.rmtree(data_dir)
    expected = sum(map(len, groups))
    if recorded != expected:
        raise SystemExit(f"the gateway recorded {recorded} of {expected} instances")
    return run


@dataclass
class Rates:
    """Images/s per receiver, one entry per round; and the receivers' CPU per image."""

    rounds: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, measured: Run | float) -> None:
        if isinstance(measured, Run):
            self.cpu.setdefault(name, []).append(measured.cpu_ms_per_image)
            measured = measured.rate
        self.rounds.setdefault(name, []).append(measured)

    def median(self, name: str) -> float:
        return statistics.median(self.rounds[name])

    def paired_ratios(self, ours: str, reference: str) -> list[float]:
        """Ours / reference within each round (the two ran back to back)."""
        return [a / b for a, b in zip(self.rounds[ours], self.rounds[reference], strict=True)]


PAGE_REPORTING = Path("/sys/module/page_reporting/parameters")
"""Linux's free page reporting (virtio-balloon): freed guest memory handed back to the host."""


def reported_kib() -> int | None:
    """KiB of freed memory this guest has handed back to its host so far, or None where the
    kernel does not say (no free page reporting, or not Linux)."""
    try:
        return int((PAGE_REPORTING / "reported_kib").read_text())
    except (OSError, ValueError):
        return None


def page_reporting_line(before: int | None) -> str:
    """What free page reporting did during the run: where it hands freed pages back (at
    ``page_reporting_order`` 9, 2 MiB blocks) the page cache a receiver fills comes from pages
    the host must fault in again, which is storescp's slow mode (README)."""
    after = reported_kib()
    if before is None or after is None:
        return "host free page reporting: none seen"
    order = (PAGE_REPORTING / "page_reporting_order").read_text().strip()
    return (
        f"host free page reporting: order {order}, {(after - before) >> 10} MiB handed back "
        "to the host during the runs (see the README on storescp's slow mode)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--size", type=int, default=2800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--database-url", default=None, help="a Postgres server; default SQLite")
    parser.add_argument(
        "--workdir", default=None, help="a folder on the disk to measure (not a tmpfs)"
    )
    parser.add_argument("--pynetdicom-ceiling-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--page-cache-only", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.pynetdicom_ceiling_port:
        serve_and_discard(
            arguments.pynetdicom_ceiling_port,
            Path(arguments.workdir),
            page_cache_only=arguments.page_cache_only,
        )
        return
    with tempfile.TemporaryDirectory(prefix="radraft-bench-", dir=arguments.workdir) as temporary:
        workdir = Path(temporary)
        files_dir = workdir / "files"
        files_dir.mkdir()
        paths = make_files(files_dir, arguments.studies, arguments.size)
        megabytes = paths[0].stat().st_size / 1e6
        parallel = split(paths, arguments.associations)
        print(
            f"{len(paths)} images of {megabytes:.1f} MB, {arguments.rounds} rounds; "
            f"parallel: {arguments.associations} associations, "
            f"gateway --processes {arguments.processes}"
        )
        rates = Rates()
        reported_before = reported_kib()
        single: list[tuple[str, Callable[[], Run]]] = [
            ("storescp", lambda: storescp_rate([paths], workdir)),
            ("gateway", lambda: gateway_rate([paths], workdir, arguments.database_url, 1)),
            ("storescp, synced", lambda: storescp_rate([paths], workdir, synced=True)),
        ]
        several: list[tuple[str, Callable[[], Run]]] = [
            ("storescp --fork", lambda: storescp_rate(parallel, workdir)),
            (
                "gateway parallel",
                lambda: gateway_rate(
                    parallel, workdir, arguments.database_url, arguments.processes
                ),
            ),
            ("storescp --fork, synced", lambda: storescp_rate(parallel, workdir, synced=True)),
        ]
        for round_number in range(arguments.rounds):
            rates.add("disk", disk_rate(paths, workdir, early_writeback=False))
            rates.add("disk, early writeback", disk_rate(paths, workdir, early_writeback=True))
            rates.add("pynetdicom ceiling", pynetdicom_rate([paths], workdir, 1))
            rates.add("ceiling parallel", pynetdicom_rate(parallel, workdir, arguments.processes))
            rates.add(
                "ceiling parallel, no disk",
                pynetdicom_rate(parallel, workdir, arguments.processes, page_cache_only=True),
            )
            rates.add("bare TCP", bare_rate(parallel, workdir, arguments.processes, durable=False))
            rates.add(
                "bare TCP, durable", bare_rate(parallel, workdir, arguments.processes, durable=True)
            )
            # Each group runs back to back (storescp, the gateway, storescp syncing its files),
            # in reverse order in odd rounds, so that a drift of the machine between runs weighs
            # on both sides of each ratio alike.
            for pair in (single, several):
                for name, measure in pair if round_number % 2 == 0 else reversed(pair):
                    rates.add(name, measure())
            latest = ", ".join(f"{name} {values[-1]:.1f}" for name, values in rates.rounds.items())
            print(f"round {round_number + 1} (images/s): {latest}")
        print("median images/s:")
        for name in rates.rounds:
            print(f"  {name:<26} {rates.median(name):6.1f}")
        print("median CPU ms per image, the receiver's processes while receiving (sender apart):")
        for name, values in rates.cpu.items():
            print(f"  {name:<26} {statistics.median(values):6.1f}")
        for reference, ours, what in (
            ("storescp", "gateway", "1 association"),
            ("storescp --fork", "gateway parallel", f"{arguments.associations} associations"),
        ):
            paired = rates.paired_ratios(ours, reference)
            print(
                f"ratio {ours} / {reference}, {what} = "
                f"{rates.median(ours) / rates.median(reference):.2f} (goal >= 0.8); "
                f"per round {min(paired):.2f}-{max(paired):.2f}, "
                f"median {statistics.median(paired):.2f}; "
                f"against {reference}'s fastest round "
                f"{rates.median(ours) / max(rates.rounds[reference]):.2f}"
            )
        for reference, ours in (
            ("storescp, synced", "gateway"),
            ("storescp --fork, synced", "gateway parallel"),
        ):
            paired = rates.paired_ratios(ours, reference)
            print(
                f"ratio {ours} / {reference} = "
                f"{rates.median(ours) / rates.median(reference):.2f}; per round "
                f"{min(paired):.2f}-{max(paired):.2f} (like with like: dcmtk syncing each file's "
                "data, though only after its answer)"
            )
        print(f"ratio gateway / disk with early writeback, 1 association = "
              f"{rates.median('gateway') / rates.median('disk, early writeback'):.2f}")  # fmt: skip
        print(f"ratio gateway / disk write+fsync, 1 association = "
              f"{rates.median('gateway') / rates.median('disk'):.2f}")  # fmt: skip
        print(f"ratio gateway / pynetdicom ceiling, 1 association = "
              f"{rates.median('gateway') / rates.median('pynetdicom ceiling'):.2f}")  # fmt: skip
        print(f"ratio pynetdicom ceiling / storescp = "
              f"{rates.median('pynetdicom ceiling') / rates.median('storescp'):.2f}")  # fmt: skip
        ceiling_parallel = rates.median("ceiling parallel")
        print(f"ratio gateway parallel / ceiling parallel = "
              f"{rates.median('gateway parallel') / ceiling_parallel:.2f}")  # fmt: skip
        print(f"ratio ceiling parallel / storescp --fork = "
              f"{ceiling_parallel / rates.median('storescp --fork'):.2f}")  # fmt: skip
        no_disk = rates.median("ceiling parallel, no disk")
        print(f"ratio ceiling parallel, no disk / storescp --fork = "
              f"{no_disk / rates.median('storescp --fork'):.2f} (the receive path alone, "
              "its files left in the page cache as storescp's are)")  # fmt: skip
        bare_durable = rates.median("bare TCP, durable")
        print(f"ratio bare TCP, durable / bare TCP = "
              f"{bare_durable / rates.median('bare TCP'):.2f} (no DICOM: what writing each file "
              "durably before its answer costs here)")  # fmt: skip
        print(f"ratio bare TCP, durable / storescp --fork = "
              f"{bare_durable / rates.median('storescp --fork'):.2f} (about the most a "
              "receiver that fsyncs before answering reaches here; its senders cost less "
              "than storescu)")  # fmt: skip
        print(f"ratio storescp / disk write+fsync = "
              f"{rates.median('storescp') / rates.median('disk'):.2f}")  # fmt: skip
        print(page_reporting_line(reported_before))


if __name__ == "__main__":
    main()
