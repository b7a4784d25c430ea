"""A backup of one installation: its database, the spooled files its rows name, its secret key.

The database and the spool must describe one moment, or a restore brings back rows without
files or files without rows. So the database is copied first, as one consistent snapshot (the
SQLite backup API; on Postgres ``pg_dump`` of a snapshot this process exported and holds), and
then the spooled file of every row held in that snapshot: a file the gateway wrote later has
no row in the backup and is not copied; a file a retention purge deleted in between is listed
as missing in the manifest, and the restore's reconciliation marks its row purged. The manifest
is written last, so a backup without one is unfinished.

With ``files_only`` the database is left to the department's own tool (``pg_dump``, WAL
archiving): run that first, then this, which copies the files of every row held *now*, a
superset of the dump's.

A restore copies the database back (refusing to overwrite one that holds rows unless told),
upgrades it to this version's schema, copies back the files the spool lacks (a file the spool
has is as new or newer) and reconciles the two (``gateway.reconcile``), so that instances
acknowledged after the backup whose files survived are recorded again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Connection, create_engine, inspect, select, text
from sqlalchemy.engine import URL, make_url

from radraft.errors import RadraftError
from radraft.models import Instance
from radraft.settings import Settings
from radraft.timeutil import utcnow

MANIFEST = "manifest.json"
SQLITE_FILE = "radraft.db"
POSTGRES_DUMP = "radraft.pgdump"
SPOOL_FOLDER = "spool"
FORMAT_VERSION = 1


class BackupError(RadraftError):
    """A backup or restore cannot go on; the message says why and what to do."""


@dataclass
class BackupManifest:
    """What a backup holds; written last (``manifest.json``)."""

    created_at: str
    database: str
    """``sqlite``, ``postgresql`` or ``not included`` (``--files-only``)."""
    schema_revision: str | None
    files: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    """Spool paths of held rows whose files were gone when copied (a purge in between)."""
    format: int = FORMAT_VERSION


def create_backup(
    settings: Settings, destination: Path, *, files_only: bool = False, pg_dump: str = "pg_dump"
) -> BackupManifest:
    """Write a backup of the installation ``settings`` describe into ``destination`` (a new or
    empty folder).

    Raises
    ------
    BackupError
        If the folder is not empty, or the database cannot be copied.
    """
    if destination.exists() and any(destination.iterdir()):
        raise BackupError(f"{destination} is not empty: give a new folder for each backup")
    destination.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = make_url(settings.effective_database_url)
    origin = settings.dicomweb_base_url
    if files_only:
        kind, revision, held = "not included", None, _held_paths_now(url, origin)
    elif url.get_backend_name() == "sqlite":
        kind = "sqlite"
        revision, held = _sqlite_snapshot(_sqlite_path(url), destination / SQLITE_FILE, origin)
    else:
        kind = "postgresql"
        revision, held = _postgres_snapshot(url, destination / POSTGRES_DUMP, pg_dump, origin)
    manifest = BackupManifest(utcnow().isoformat(), kind, revision)
    _copy_held_files(settings.spool_dir, destination / SPOOL_FOLDER, held, manifest)
    if settings.secret_key_file.is_file():
        _copy_durably(settings.secret_key_file, destination / settings.secret_key_file.name)
    _write_durably(destination / MANIFEST, json.dumps(asdict(manifest), indent=2).encode())
    _fsync(destination)
    return manifest


def read_manifest(source: Path) -> BackupManifest:
    """The manifest of a finished backup.

    Raises
    ------
    BackupError
        If there is none (an unfinished backup) or it is of another format.
    """
    try:
        values = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError as error:
        raise BackupError(f"{source} has no {MANIFEST}: not a finished radraft backup") from error
    if values.get("format") != FORMAT_VERSION:
        raise BackupError(f"backup format {values.get('format')} is not {FORMAT_VERSION}")
    return BackupManifest(**values)


@dataclass(frozen=True)
class RestoredFiles:
    """The spool files a restore copied back and those it left (the spool's own copy)."""

    copied: int
    kept: int


def refuse_while_serving(settings: Settings) -> None:
    """Refuse a restore while this installation's gateway or web app answers on this host: a
    database replaced under a running service is overwritten by its next write, or serves
    rows whose files it is moving. (Services on other hosts cannot be seen from here; the
    operations guide says to stop them first.)

    Raises
    ------
    BackupError
        If the DICOM port or the web app's port accepts a connection.
    """
    for what, host, port in (
        ("the gateway", settings.dicom_host, settings.dicom_port),
        ("the web app", settings.http_host, settings.http_port),
    ):
        address = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
        try:
            with socket.create_connection((address, port), timeout=1):
                pass
        except OSError:
            continue
        raise BackupError(f"{what} answers on {address}:{port}: stop the services before restoring")


def restore_database(
    settings: Settings, source: Path, manifest: BackupManifest, *, replace: bool,
    pg_restore: str = "pg_restore",
) -> None:  # fmt: skip
    """Put the backup's database in place of the configured one (which must hold no rows
    unless ``replace``); the caller upgrades its schema after.

    Raises
    ------
    BackupError
        If the backup's database is of another kind, or the target holds rows and not
        ``replace``, or ``pg_restore`` fails.
    """
    url = make_url(settings.effective_database_url)
    if manifest.database == "not included":
        return
    if manifest.database != url.get_backend_name():
        raise BackupError(
            f"the backup holds a {manifest.database} database; this installation uses "
            f"{url.get_backend_name()}: restore into the same kind"
        )
    if not replace and _holds_rows(url):
        raise BackupError(
            "the configured database already holds instances: give --replace to overwrite it"
        )
    if manifest.database == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm"), Path(f"{target}-journal")):
            leftover.unlink(missing_ok=True)  # another database's log must not replay over it
        _copy_durably(source / SQLITE_FILE, target)
        return
    _run_tool(
        [pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction",
         f"--dbname={_libpq_url(url)}", str(source / POSTGRES_DUMP)],
        url, "pg_restore",
    )  # fmt: skip


def restore_files(settings: Settings, source: Path) -> RestoredFiles:
    """Copy back every backed-up spool file the spool lacks, and the secret key if missing."""
    copied = kept = 0
    backed_up = source / SPOOL_FOLDER
    for path in sorted(backed_up.rglob("*.dcm")) if backed_up.is_dir() else []:
        target = settings.spool_dir / path.relative_to(backed_up)
        if target.exists():
            kept += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_durably(path, target)
        copied += 1
    secret = source / settings.secret_key_file.name
    if secret.is_file() and not settings.secret_key_file.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _copy_durably(secret, settings.secret_key_file)
    return RestoredFiles(copied, kept)


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _sqlite_snapshot(
    database: Path, copy: Path, origin: str | None
) -> tuple[str | None, list[str]]:
    """Copy the database with SQLite's online backup (one consistent state, while the gateway
    writes); return its schema revision and held spool paths, read from the copy."""
    _create_private(copy)
    source = sqlite3.connect(database)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    engine = create_engine(f"sqlite:///{copy}")
    try:
        with engine.connect() as connection:
            return _revision(connection), _held_paths(connection, origin)
    finally:
        engine.dispose()
        _fsync(copy)


def _postgres_snapshot(
    url: URL, dump: Path, pg_dump: str, origin: str | None
) -> tuple[str | None, list[str]]:
    """``pg_dump`` of a snapshot this connection exported and holds open, and the held spool
    paths read in the same snapshot, so the dump and the file list agree exactly."""
    _create_private(dump)  # pg_dump keeps the mode of a file that exists
    engine = create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as connection, connection.begin():
            snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
            _run_tool(
                [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={dump}",
                 f"--dbname={_libpq_url(url)}"],
                url, "pg_dump",
            )  # fmt: skip
            revision, held = _revision(connection), _held_paths(connection, origin)
    finally:
        engine.dispose()
    _fsync(dump)
    return revision, held


def _held_paths_now(url: URL, origin: str | None) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return _held_paths(connection, origin)
    finally:
        engine.dispose()


def _held_paths(connection: Connection, origin: str | None) -> list[str]:
    """The spool paths of the instances this gateway's spool holds: of its origin (gateways on
    other hosts keep theirs in their own spools, and back them up there)."""
    mine = Instance.origin.is_(None) if origin is None else Instance.origin == origin
    held = select(Instance.spool_path).where(Instance.purged_at.is_(None), mine)
    return list(connection.scalars(held))


def _revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
    return None if revision is None else str(revision)


def _holds_rows(url: URL) -> bool:
    if url.get_backend_name() == "sqlite" and not _sqlite_path(url).exists():
        return False
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(Instance.__tablename__):
                return False
            return connection.scalar(select(Instance.id).limit(1)) is not None
    finally:
        engine.dispose()


def _copy_held_files(
    spool: Path, destination: Path, held: Iterable[str], manifest: BackupManifest
) -> None:
    destination.mkdir(mode=0o700, exist_ok=True)
    for relative in sorted(set(held)):
        target = destination / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            manifest.bytes += _copy_durably(spool / relative, target)
        except FileNotFoundError:
            manifest.missing.append(relative)
            continue
        manifest.files += 1
    for folder in destination.iterdir() if destination.is_dir() else []:
        _fsync(folder)


def _copy_durably(source: Path, target: Path) -> int:
    """Copy a file readable by its owner only (images and reports are patients' data, the key
    signs sessions), fsync it; returns its size."""
    with open(source, "rb") as reader:  # first: a missing source leaves no empty copy behind
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()
            os.fsync(writer.fileno())
            return writer.tell()


def _create_private(path: Path) -> None:
    """An empty file only its owner may read, for a tool to write into."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _write_durably(target: Path, content: bytes) -> None:
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as writer:
        writer.write(content)
        writer.flush()
        os.fsync(writer.fileno())


def _fsync(path: Path) -> None:
    """fsync a file or a folder (a folder's entries: the files just made in it)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _libpq_url(url: URL) -> str:
    """The URL as libpq's tools take it (no SQLAlchemy driver, no password: that goes in the
    environment, out of the process list)."""
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)


def _run_tool(command: list[str], url: URL, name: str) -> None:
    environment = dict(os.environ)
    if url.password:
        environment["PGPASSWORD"] = str(url.password)
    try:
        result = subprocess.run(command, env=environment, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise BackupError(
            f"{name} not found: install the PostgreSQL client of the server's major version, "
            f"or back the database up with your own tool and give --files-only"
        ) from error
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise BackupError(f"{name} failed (exit {result.returncode}): {last}")
