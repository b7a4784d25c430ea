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
    SPOOL_FOLDER,
    SQLITE_FILE,
    BackupError,
    BackupManifest,
    add_audit_row,
    copy_durably,
    database_file,
    file_sha256,
    installation_session,
    libpq_url,
    run_tool,
    sqlite_path,
)

PARTIAL_SUFFIX = ".restoring"
"""A file being copied back, renamed into place once whole and checked."""


@dataclass(frozen=True)
class RestoredFiles:
    """The spool files a restore copied back, those it left (the spool's own copy), and the
    backed-up files it did not restore because they differ from their manifest digest."""

    copied: int
    kept: int
    damaged: list[str]


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
        ``replace``, or the backup's database file differs from its digest, or ``pg_restore``
        fails.
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
    name = database_file(manifest)
    if name is None or not (source / name).is_file():
        raise BackupError(f"the backup has no {name}, which its manifest says it holds")
    damaged = BackupError(
        f"the backup's database ({name}) is damaged: its SHA-256 differs from the one the"
        " manifest took when it was written. Restore an older backup."
    )
    if name == SQLITE_FILE:
        target = sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}{PARTIAL_SUFFIX}")
        try:  # copied whole beside it and checked: the old database stays until both are done
            if not _copy_if_intact(source / name, partial, name, manifest):
                raise damaged
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
    if is_damaged(source, name, manifest):  # pg_restore reads it in place: checked before
        raise damaged
    run_tool(
        [pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction",
         f"--dbname={libpq_url(url)}", str(source / name)],
        url, "pg_restore",
    )  # fmt: skip


def restore_files(settings: Settings, source: Path, manifest: BackupManifest) -> RestoredFiles:
    """Copy back every backed-up spool file the spool lacks, and the secret key if missing.

    Each file is copied under a temporary name (a leftover of an interrupted restore is removed
    first), checked against its digest in the manifest, and only then renamed into place: an
    interrupted restore leaves no partial image under a spool name, and a damaged one is left
    out and named, as is one the manifest lists that is gone from both: its row is then missing
    its file, which the reconciliation marks purged, so the PACS's re-send brings it back,
    instead of a damaged file being taken for the image the PACS sent.

    Raises
    ------
    BackupError
        If a file cannot be copied (the restore can be run again: what is in place stays).
    """
    copied = kept = 0
    damaged: list[str] = []
    backed_up = source / SPOOL_FOLDER
    try:
        if settings.spool_dir.is_dir():
            for leftover in settings.spool_dir.glob(f"*/*{PARTIAL_SUFFIX}"):
                leftover.unlink()
        for path in sorted(backed_up.rglob("*.dcm")) if backed_up.is_dir() else []:
            target = settings.spool_dir / path.relative_to(backed_up)
            if target.exists():
                kept += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(PARTIAL_SUFFIX)
            name = str(path.relative_to(source))
            if not _copy_if_intact(path, partial, name, manifest):
                damaged.append(name)
                continue
            os.replace(partial, target)
            fsync_path(target.parent)
            copied += 1
        damaged += [  # listed, gone from the backup, and not in the spool either
            name for name in manifest.digests
            if name.startswith(f"{SPOOL_FOLDER}/") and not (source / name).exists()
            and not (settings.spool_dir / name.removeprefix(f"{SPOOL_FOLDER}/")).exists()
        ]  # fmt: skip
        secret = source / settings.secret_key_file.name
        if secret.is_file() and not settings.secret_key_file.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            partial = settings.secret_key_file.with_suffix(PARTIAL_SUFFIX)
            if _copy_if_intact(secret, partial, secret.name, manifest):
                os.replace(partial, settings.secret_key_file)
            else:
                damaged.append(secret.name)  # the web app makes a new key: everyone signs in
    except OSError as error:
        raise BackupError(
            f"cannot copy the backup's files back: {error.strerror or error}"
        ) from error
    return RestoredFiles(copied, kept, damaged)


def _copy_if_intact(source: Path, partial: Path, name: str, manifest: BackupManifest) -> bool:
    """Copy ``source`` to ``partial``; False (and no copy) if it is not the file the backup
    wrote: its digest differs, or the manifest has digests and none for it (a file put into
    the folder since). A backup made before digests were kept is taken as it is."""
    expected = manifest.digests.get(name)
    if expected is None and manifest.digests:
        return False
    copied = copy_durably(source, partial)
    if expected is None or copied.sha256 == expected:
        return True
    partial.unlink()
    return False


def is_damaged(source: Path, name: str, manifest: BackupManifest) -> bool:
    """Whether the backup's file ``name`` differs from the digest its manifest took (False
    when the manifest has none for it)."""
    expected = manifest.digests.get(name)
    return expected is not None and file_sha256(source / name) != expected


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
