"""A backup of one installation: its database, the spooled files its rows name, its secret key.

The database and the spool must describe one moment, or a restore brings back rows without
files or files without rows. So the database is copied first, as one consistent snapshot (the
SQLite backup API; on Postgres ``pg_dump`` of a snapshot this process exported and holds), and
then the spooled file of every row held in that snapshot: a file the gateway wrote later has
no row in the backup and is not copied; a file a retention purge deleted in between is listed
as missing in the manifest, and the restore's reconciliation marks its row purged. The manifest
is written last, so a backup without one is unfinished; it holds each file's SHA-256, taken as
the file was written, which ``radraft backup verify`` checks and a restore trusts no file without.

With ``files_only`` the database is left to the department's own tool (``pg_dump``, WAL
archiving): run that first, then this, which copies the files of every row held *now*, a
superset of the dump's.

Putting one back: ``radraft_cli.restore``; the folder's layout and manifest:
``radraft_cli.backup_files``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import Connection, create_engine, inspect, select, text
from sqlalchemy.engine import URL, make_url

from gateway.spool import fsync_path
from radraft.models import Instance
from radraft.settings import Settings
from radraft.timeutil import utcnow
from radraft_cli.backup_files import (
    MANIFEST,
    POSTGRES_DUMP,
    SPOOL_FOLDER,
    SQLITE_FILE,
    BackupError,
    BackupManifest,
    copy_durably,
    create_private,
    file_sha256,
    libpq_url,
    link_if_unchanged,
    read_manifest,
    run_tool,
    sqlite_path,
    write_durably,
)


def create_backup(
    settings: Settings,
    destination: Path,
    *,
    files_only: bool = False,
    link_dest: Path | None = None,
    pg_dump: str = "pg_dump",
) -> BackupManifest:
    """Write a backup of the installation ``settings`` describe into ``destination`` (a new or
    empty folder). ``link_dest``: a previous backup whose copies of unchanged files are hard
    linked instead of copied again (``link_if_unchanged``).

    Raises
    ------
    BackupError
        If the folder is not empty, or the database or a file cannot be copied (the folder
        then has no manifest: an unfinished backup).
    """
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise BackupError(f"{destination} is not an empty folder: give a new one for each backup")
    if link_dest is not None:
        read_manifest(link_dest)  # a finished radraft backup, or a clear error now
    try:
        return _write_backup(
            settings, destination, files_only=files_only, link_dest=link_dest, pg_dump=pg_dump
        )
    except OSError as error:
        raise BackupError(
            f"cannot write the backup into {destination}: {error.strerror or error}"
        ) from error


def _write_backup(
    settings: Settings, destination: Path, *, files_only: bool, link_dest: Path | None,
    pg_dump: str,
) -> BackupManifest:  # fmt: skip
    destination.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = make_url(settings.effective_database_url)
    origin = settings.dicomweb_base_url
    if files_only:
        kind, revision, held = "not included", None, _held_paths_now(url, origin)
    elif url.get_backend_name() == "sqlite":
        kind = "sqlite"
        revision, held = _sqlite_snapshot(sqlite_path(url), destination / SQLITE_FILE, origin)
    else:
        kind = "postgresql"
        revision, held = _postgres_snapshot(url, destination / POSTGRES_DUMP, pg_dump, origin)
    manifest = BackupManifest(utcnow().isoformat(), kind, revision)
    for database_file in (SQLITE_FILE, POSTGRES_DUMP):
        if (destination / database_file).is_file():
            manifest.digests[database_file] = file_sha256(destination / database_file)
    previous = None if link_dest is None else link_dest / SPOOL_FOLDER
    _copy_held_files(settings.spool_dir, destination / SPOOL_FOLDER, held, manifest, previous)
    key = settings.secret_key_file
    if key.is_file():
        manifest.digests[key.name] = copy_durably(key, destination / key.name).sha256
    write_durably(destination / MANIFEST, json.dumps(asdict(manifest), indent=2).encode())
    fsync_path(destination)
    return manifest


def _sqlite_snapshot(
    database: Path, copy: Path, origin: str | None
) -> tuple[str | None, list[str]]:
    """Copy the database with SQLite's online backup (one consistent state, while the gateway
    writes); return its schema revision and held spool paths, read from the copy."""
    create_private(copy)
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
        fsync_path(copy)


def _postgres_snapshot(
    url: URL, dump: Path, pg_dump: str, origin: str | None
) -> tuple[str | None, list[str]]:
    """``pg_dump`` of a snapshot this connection exported and holds open, and the held spool
    paths read in the same snapshot, so the dump and the file list agree exactly."""
    create_private(dump)  # pg_dump keeps the mode of a file that exists
    engine = create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as connection, connection.begin():
            snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
            run_tool(
                [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={dump}",
                 f"--dbname={libpq_url(url)}"],
                url, "pg_dump",
            )  # fmt: skip
            revision, held = _revision(connection), _held_paths(connection, origin)
    finally:
        engine.dispose()
    fsync_path(dump)
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


def _copy_held_files(
    spool: Path, destination: Path, held: Iterable[str], manifest: BackupManifest,
    previous: Path | None,
) -> None:  # fmt: skip
    destination.mkdir(mode=0o700, exist_ok=True)
    for relative in sorted(set(held)):
        target = destination / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            copied = None if previous is None else link_if_unchanged(
                spool / relative, previous / relative, target
            )  # fmt: skip
            if copied is not None:
                manifest.linked += 1
            else:
                copied = copy_durably(spool / relative, target)
        except FileNotFoundError:
            manifest.missing.append(relative)
            continue
        manifest.bytes += copied.size
        manifest.digests[f"{SPOOL_FOLDER}/{relative}"] = copied.sha256
        manifest.files += 1
    for folder in destination.iterdir() if destination.is_dir() else []:
        fsync_path(folder)
