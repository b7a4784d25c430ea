"""A backup folder: its layout, its manifest, and how files are written into and out of it.

Shared by ``radraft_cli.backup`` (making one) and ``radraft_cli.restore`` (putting one back).
Everything is written readable by its owner only (images and reports are patients' data, the
key signs sessions) and fsynced, and the manifest last, so a folder without one is unfinished.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from radraft.enums import AuditAction
from radraft.errors import RadraftError
from radraft.models import AuditEntry
from radraft.settings import Settings

MANIFEST = "manifest.json"
SQLITE_FILE = "radraft.db"
POSTGRES_DUMP = "radraft.pgdump"
SPOOL_FOLDER = "spool"
FORMAT_VERSION = 1
COPY_CHUNK_BYTES = 1 << 20


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
    linked: int = 0
    """Of ``files``, those hard linked to an unchanged copy in the previous backup."""
    digests: dict[str, str] = field(default_factory=dict)
    """SHA-256 of each file by its path in the backup, taken as it was written, so a file
    damaged since (a bad sector, a truncated transfer to tape) is found by ``backup verify``
    and never restored. Empty in a backup made before radraft kept them."""
    format: int = FORMAT_VERSION


@contextmanager
def installation_session(settings: Settings) -> Iterator[Session]:
    """One transaction on the installation's database for a command that runs once (its engine
    is disposed of afterwards, so a restore is not left holding a connection)."""
    from radraft.db import engine_for, make_sessionmaker, session_scope

    engine = engine_for(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def add_audit_row(
    session: Session, action: AuditAction, *, actor: str, details: dict[str, Any]
) -> None:
    """The audit row of a backup made or restored (a backup exports every patient's data; who
    did it and when belongs in the audit trail)."""
    session.add(AuditEntry(actor=actor, action=action, object_type="installation",
                           object_id="*", details=details))  # fmt: skip


def record_in_audit_log(
    settings: Settings, action: AuditAction, *, actor: str, details: dict[str, Any]
) -> None:
    """``add_audit_row`` in a transaction of its own."""
    with installation_session(settings) as session:
        add_audit_row(session, action, actor=actor, details=details)


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
    except (OSError, ValueError) as error:
        raise BackupError(f"{source / MANIFEST} cannot be read: {type(error).__name__}") from error
    if not isinstance(values, dict) or values.get("format") != FORMAT_VERSION:
        found = values.get("format") if isinstance(values, dict) else None
        raise BackupError(f"backup format {found} is not {FORMAT_VERSION}")
    try:
        manifest = BackupManifest(**values)
    except TypeError as error:
        raise BackupError(f"{source / MANIFEST} is not a radraft manifest") from error
    if not _names_files_inside(manifest.digests):
        raise BackupError(
            f"{source / MANIFEST} lists files outside the backup or is garbled: refused"
        )
    return manifest


def _names_files_inside(digests: object) -> bool:
    """Whether ``digests`` maps relative paths inside the backup to hex digests (the manifest
    is read from storage radraft does not control: a name like ``../../etc/passwd`` would
    have a check read, and a restore look at, files elsewhere)."""
    if not isinstance(digests, dict):
        return False
    for name, digest in digests.items():
        parts = Path(str(name)).parts
        if not isinstance(digest, str) or not parts or Path(name).is_absolute() or ".." in parts:
            return False
    return True


def database_file(manifest: BackupManifest) -> str | None:
    """The backup's file that holds the database (None: ``--files-only``)."""
    if manifest.database == "not included":
        return None
    return SQLITE_FILE if manifest.database == "sqlite" else POSTGRES_DUMP


def sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


@dataclass(frozen=True)
class CopiedFile:
    size: int
    sha256: str
    """Of the bytes read from the source (and written to the target)."""


def copy_durably(source: Path, target: Path) -> CopiedFile:
    """Copy a file readable by its owner only (images and reports are patients' data, the key
    signs sessions), fsync it; returns its size and digest, taken as the bytes go by."""
    digest = hashlib.sha256()
    with open(source, "rb") as reader:  # first: a missing source leaves no empty copy behind
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as writer:
            while chunk := reader.read(COPY_CHUNK_BYTES):
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
            return CopiedFile(writer.tell(), digest.hexdigest())


def link_if_unchanged(source: Path, previous: Path, target: Path) -> CopiedFile | None:
    """Hard link ``target`` to ``previous`` (the same file in an earlier backup) when both hold
    the same bytes as ``source``; None when they differ, ``previous`` is gone or is on another
    file system (the caller copies).

    Both are read: a copy in the earlier backup damaged since must not become this backup's
    copy too. A nightly backup of a spool that mostly keeps its images then takes the space of
    what changed, not of the whole spool again.

    Raises
    ------
    FileNotFoundError
        If ``source`` is gone (a purge since the snapshot).
    """
    with open(source, "rb") as reader:
        size, digest = os.fstat(reader.fileno()).st_size, hashlib.file_digest(reader, "sha256")
    try:
        if previous.stat().st_size != size or file_sha256(previous) != digest.hexdigest():
            return None
        os.link(previous, target)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            return None
        raise
    return CopiedFile(size, digest.hexdigest())


def file_sha256(path: Path) -> str:
    with open(path, "rb") as reader:
        return hashlib.file_digest(reader, "sha256").hexdigest()


def create_private(path: Path) -> None:
    """An empty file only its owner may read, for a tool to write into."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def write_durably(target: Path, content: bytes) -> None:
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as writer:
        writer.write(content)
        writer.flush()
        os.fsync(writer.fileno())


def libpq_url(url: URL) -> str:
    """The URL as libpq's tools take it (no SQLAlchemy driver, no password: that goes in the
    environment, out of the process list)."""
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)


def run_tool(command: list[str], url: URL, name: str) -> None:
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
