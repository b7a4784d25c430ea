"""``radraft backup verify``: is a backup still the one that was written, and can it be restored?

A backup is only known good once it has been read back: a copy to tape or another host can be
cut short, a disk can rot. Each file is read again and compared with the SHA-256 the manifest
took as the file was written; the database is also opened the way a restore would (SQLite's
``integrity_check``; ``pg_restore --list`` of a Postgres dump). Nothing is changed, so it can run
against last night's backup while the services run.
"""

from __future__ import annotations

import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from radraft_cli.backup_files import (
    MANIFEST,
    POSTGRES_DUMP,
    SQLITE_FILE,
    BackupError,
    database_file,
    file_sha256,
    read_manifest,
)


@dataclass
class BackupCheck:
    """What reading a backup back found; paths are the backup's own (hashed spool names)."""

    checked: int = 0
    """Files whose digest matched."""
    damaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Listed in the manifest, gone from the folder."""
    unlisted: list[str] = field(default_factory=list)
    """In the folder, not in the manifest: not the backup's, so a restore leaves them out
    (harmless to the backup; reported so that they can be looked at)."""
    unchecked: int = 0
    """Files of a backup made before radraft kept digests (nothing to check them against)."""
    database: str = "not included"
    """``ok``, or why the database cannot be restored."""

    @property
    def is_good(self) -> bool:
        return not (self.damaged or self.missing) and self.database in ("ok", "not included")


def verify_backup(source: Path, *, pg_restore: str = "pg_restore") -> BackupCheck:
    """Read every file of the backup in ``source`` back and check it.

    Raises
    ------
    BackupError
        If ``source`` is not a finished backup (no or a garbled manifest).
    """
    manifest = read_manifest(source)
    check = BackupCheck()
    for name, expected in sorted(manifest.digests.items()):
        path = source / name
        if not path.is_file():
            check.missing.append(name)
        elif file_sha256(path) != expected:
            check.damaged.append(name)
        else:
            check.checked += 1
    listed = set(manifest.digests) | {MANIFEST}
    others = sorted(
        name
        for path in source.rglob("*")
        if path.is_file() and (name := str(path.relative_to(source))) not in listed
    )
    if manifest.digests:
        check.unlisted = others
    else:
        check.unchecked = len(others)
    check.database = _database_state(source, database_file(manifest), check, pg_restore)
    return check


def _database_state(source: Path, name: str | None, check: BackupCheck, pg_restore: str) -> str:
    """The database file as a restore would find it; its digest was compared above."""
    if name is None:
        return "not included"
    if name in check.missing or not (source / name).is_file():
        return f"{name} is missing"
    if name in check.damaged:
        return f"{name} is damaged (its SHA-256 differs from the manifest's)"
    if name == SQLITE_FILE:
        return _sqlite_integrity(source / name)
    return _dump_readable(source / name, pg_restore)


def _sqlite_integrity(database: Path) -> str:
    try:
        # immutable: read only, and no -wal or -shm file made beside it (the copy is in WAL
        # mode, as the database it was taken from), so checking leaves the backup as it was.
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?immutable=1", uri=True)
        try:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        return f"{SQLITE_FILE} cannot be opened: {error}"
    answers = [str(row[0]) for row in rows]
    return "ok" if answers == ["ok"] else f"{SQLITE_FILE} fails SQLite's integrity check"


def _dump_readable(dump: Path, pg_restore: str) -> str:
    try:
        result = subprocess.run([pg_restore, "--list", str(dump)], capture_output=True, text=True)
    except FileNotFoundError as error:
        raise BackupError(
            f"{pg_restore} not found: install the PostgreSQL client to check a Postgres backup"
        ) from error
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1][:300]
        return f"{POSTGRES_DUMP} cannot be read by pg_restore: {reason}"
    return "ok"
