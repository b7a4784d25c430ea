"""Putting a backup back: the database, the files the spool lacks, and the secret key.

A restore runs with the services stopped (``refuse_while_serving`` checks what it can see from
this host): the database is copied back (refusing one that holds rows unless told), its schema
upgraded by the caller, the backed-up files the spool lacks copied back (a file the spool has is
as new or newer), and the two reconciled by the caller (``gateway.reconcile``).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import URL, make_url

from gateway.spool import fsync_path
from radraft.enums import AuditAction
from radraft.models import Instance
from radraft.restore_epochs import record_restore
from radraft.settings import Settings
from radraft_cli.backup_files import (
    POSTGRES_DUMP,
    SPOOL_FOLDER,
    SQLITE_FILE,
    BackupError,
    BackupManifest,
    add_audit_row,
    copy_durably,
    installation_session,
    libpq_url,
    run_tool,
    sqlite_path,
)


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
        target = sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.restoring")
        try:  # copied whole beside it first: a failed copy leaves the old database as it was
            copy_durably(source / SQLITE_FILE, partial)
            for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm"),
                             Path(f"{target}-journal")):  # fmt: skip
                leftover.unlink(missing_ok=True)  # another database's log must not replay
            os.replace(partial, target)
            fsync_path(target.parent)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise BackupError(
                f"cannot copy the database back: {error.strerror or error}"
            ) from error
        return
    run_tool(
        [pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction",
         f"--dbname={libpq_url(url)}", str(source / POSTGRES_DUMP)],
        url, "pg_restore",
    )  # fmt: skip


def restore_files(settings: Settings, source: Path) -> RestoredFiles:
    """Copy back every backed-up spool file the spool lacks, and the secret key if missing.

    Each file is copied under a temporary name and renamed into place, so an interrupted
    restore leaves no partial image under a spool name.

    Raises
    ------
    BackupError
        If a file cannot be copied (the restore can be run again: what is in place stays).
    """
    copied = kept = 0
    backed_up = source / SPOOL_FOLDER
    try:
        for path in sorted(backed_up.rglob("*.dcm")) if backed_up.is_dir() else []:
            target = settings.spool_dir / path.relative_to(backed_up)
            if target.exists():
                kept += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".restoring")
            copy_durably(path, partial)
            os.replace(partial, target)
            fsync_path(target.parent)
            copied += 1
        secret = source / settings.secret_key_file.name
        if secret.is_file() and not settings.secret_key_file.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            copy_durably(secret, settings.secret_key_file)
    except OSError as error:
        raise BackupError(
            f"cannot copy the backup's files back: {error.strerror or error}"
        ) from error
    return RestoredFiles(copied, kept)


def remember_restore(
    settings: Settings, backup_created_at: str, *, actor: str, details: dict[str, Any]
) -> None:
    """Record the restore (``radraft.restore_epochs``: rows numbered from now on get identifiers
    of their own) and its audit row, in one transaction, before anything numbers a new row."""
    with installation_session(settings) as session:
        record_restore(session, backup_created_at)
        add_audit_row(session, AuditAction.BACKUP_RESTORED, actor=actor,
                      details={"backup_created_at": backup_created_at, **details})  # fmt: skip


def _holds_rows(url: URL) -> bool:
    if url.get_backend_name() == "sqlite" and not sqlite_path(url).exists():
        return False
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(Instance.__tablename__):
                return False
            return connection.scalar(select(Instance.id).limit(1)) is not None
    finally:
        engine.dispose()
