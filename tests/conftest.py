"""Fixtures: a database per test on each backend, settings, a running gateway, peers."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import make_engine, make_sessionmaker
from radraft.logs import configure_logging
from radraft.migrate import upgrade
from radraft.outbox import CeleryPublish
from radraft.settings import DicomDestination, MllpDestination, Settings
from tests.dicom_peers import ReferenceStoreSCP
from tests.hl7_peer import RisPeer
from tests.pki import TestPki, make_pki
from tests.support import PostgresServer, RedisServer, free_port, missing, postgres_database

BACKENDS = ["sqlite", "postgres"]


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("INFO")


@pytest.fixture(autouse=True)
def _process_tempdir_restored() -> Iterator[None]:
    """A gateway started in the test process points ``tempfile.tempdir`` at its spool's
    incoming folder (``gateway.receiving.receive_into``); without this, every later test's
    temporary files (torch's compile cache among them) would land in that test's folder."""
    saved = tempfile.tempdir
    yield
    tempfile.tempdir = saved


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test on the embedded default (SQLite) and on Postgres."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'radraft.db'}"
        return
    admin_url = os.environ.get("TEST_POSTGRES_URL")
    if not admin_url:
        missing("Postgres (TEST_POSTGRES_URL)")
    assert admin_url is not None
    with postgres_database(admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per test session, for ``migrated_url`` to copy."""
    template = tmp_path_factory.mktemp("template") / "radraft.db"
    upgrade(f"sqlite:///{template}")
    assert not Path(f"{template}-wal").exists(), "every change is in the file itself"
    return template


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """The name of a Postgres database migrated once per test session, for ``migrated_url``
    to copy (``CREATE DATABASE ... TEMPLATE``); nothing stays connected to it."""
    admin_url = os.environ.get("TEST_POSTGRES_URL")
    if not admin_url:
        missing("Postgres (TEST_POSTGRES_URL)")
    assert admin_url is not None
    with postgres_database(admin_url) as url:
        upgrade(url)  # Alembic's engine has no pool: its connection is closed when it is done
        yield url.rsplit("/", 1)[1]


@pytest.fixture
def migrated_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of the test's backend at the newest migration: a copy of one migrated once
    per session (the migrations, run for each of some 700 tests, cost minutes of the suite;
    the migrations themselves are tested from an empty database, ``test_migrations.py``)."""
    if backend == "sqlite":
        database = tmp_path / "radraft.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), database)
        yield f"sqlite:///{database}"
        return
    admin_url = os.environ.get("TEST_POSTGRES_URL")
    assert admin_url is not None
    with postgres_database(admin_url, template=request.getfixturevalue("postgres_template")) as url:
        yield url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    """The test's engine, disposed at the end."""
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on the test database."""
    return make_sessionmaker(engine)


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo checkpoint, built once per test session (offline, deterministic)."""
    from worker.runtimes.demo import build_demo_checkpoint

    return build_demo_checkpoint(tmp_path_factory.mktemp("models") / "demo")


@pytest.fixture
def settings(tmp_path: Path, migrated_url: str, demo_model_dir: Path) -> Settings:
    """Settings of an isolated radraft: its own data dir, free ports, a short stable time."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=migrated_url,
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        http_port=free_port(),
        stable_seconds=0.5,
        outbox_poll_seconds=0.05,
        outbox_max_backoff_seconds=1.0,
        model_path=demo_model_dir,
        api_token="test-service-token",
        max_new_tokens=16,
        image_size=128,
        dicom_drain_seconds=3.0,  # a test that leaves an association open stops within this
    )


@dataclass
class RecordingPublisher:
    """Publisher standing in for the broker in gateway-only tests; can simulate an outage."""

    published: list[CeleryPublish]
    down: bool = False

    def __call__(self, message: CeleryPublish) -> None:
        if self.down:
            raise ConnectionRefusedError("broker down (simulated)")
        self.published.append(message)


@pytest.fixture
def publisher() -> RecordingPublisher:
    """Records what the relay publishes."""
    return RecordingPublisher(published=[])


@pytest.fixture
def running_gateway(
    settings: Settings, session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> Iterator[Gateway]:
    """The gateway running in this process on a free port."""
    gateway = Gateway(settings, session_factory, publisher)
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A CA, the server's and a client's certificates, and a rogue client's."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_gateway(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    pki: TestPki,
) -> Iterator[Gateway]:
    """A gateway with DICOM TLS and MLLP/TLS listeners that require client certificates."""
    gateway = Gateway(
        settings.model_copy(
            update={
                "dicom_tls_port": free_port(),
                "hl7_tls_listen_port": free_port(),
                "hl7_listen_host": "127.0.0.1",
                "tls_certfile": pki.server.certificate,
                "tls_keyfile": pki.server.key,
                "tls_ca_file": pki.ca,
                "tls_require_client_cert": True,
            }
        ),
        session_factory,
        publisher,
    )
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A Postgres cluster this test may restart or freeze (never the suite's shared one)."""
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real Redis server for this test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@dataclass
class ReportDestinations:
    """A running PACS (dcmtk's storescp) and RIS (an MLLP peer) that reports are delivered to."""

    pacs: ReferenceStoreSCP
    ris: RisPeer

    def settings_update(self) -> dict[str, object]:
        """The settings that point radraft's outbox at these two peers."""
        return {
            "sr_destination": DicomDestination("PACS", "127.0.0.1", self.pacs.port),
            "hl7_destinations": [MllpDestination("127.0.0.1", self.ris.port)],
        }

    def stored_srs(self) -> list[Path]:
        """The SR files the PACS has received."""
        return sorted(self.pacs.folder.iterdir())


@pytest.fixture
def report_destinations(tmp_path: Path) -> Iterator[ReportDestinations]:
    """PACS and RIS peers, listening for the whole test."""
    destinations = ReportDestinations(
        ReferenceStoreSCP(tmp_path / "pacs", free_port(), ae_title="PACS"), RisPeer(free_port())
    )
    destinations.pacs.start()
    destinations.ris.start()
    yield destinations
    destinations.pacs.stop()
    destinations.ris.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB tmpfs: a disk that fills up after a few large images."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        missing(f"a tmpfs mount ({mounted.stderr.strip()})")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)
