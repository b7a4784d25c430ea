"""``radraft backup create`` and ``radraft backup restore``: one installation to a folder and back.

What a backup holds and why in that order: ``radraft_cli.backup``; a restore:
``radraft_cli.restore``. A restore runs with the
services stopped (it replaces the database under them); it ends with the reconciliation that
``radraft spool reconcile`` runs, so that files the spool kept of instances acknowledged after
the backup are recorded again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from radraft.logs import configure_logging
from radraft.settings import load_settings
from radraft_cli.operator_name import operator_name

backup_app = typer.Typer(help="Backups: the database and the spool, as one.", no_args_is_help=True)


@backup_app.command("create")
def backup_create(
    destination: Annotated[Path, typer.Argument(help="A new or empty folder.")],
    files_only: Annotated[
        bool,
        typer.Option(
            "--files-only",
            help="Leave the database to your own tool (run it first); copy the files of every "
            "instance held now and the secret key.",
        ),
    ] = False,
    link_dest: Annotated[
        Path | None,
        typer.Option(
            "--link-dest",
            help="A previous backup on the same file system: files that have not changed since "
            "are hard links to its copies (checked byte for byte by SHA-256), so a nightly "
            "backup takes the space of what changed.",
        ),
    ] = None,
    by: Annotated[
        str, typer.Option(help="Who makes it (audit log).", callback=operator_name)
    ] = "operator",
) -> None:
    """Copy the database (one consistent snapshot) and then the spooled files its rows name."""
    from radraft.enums import AuditAction, BackupKind
    from radraft_cli.backup import create_backup
    from radraft_cli.backup_files import record_in_audit_log

    settings = load_settings()
    configure_logging(settings.log_level)
    manifest = create_backup(settings, destination, files_only=files_only, link_dest=link_dest)
    kind = BackupKind.FILES_ONLY if files_only else BackupKind.FULL
    record_in_audit_log(settings, AuditAction.BACKUP_CREATED, actor=f"cli:{by}", details={
        "kind": kind.value, "database": manifest.database, "files": manifest.files,
        "bytes": manifest.bytes, "linked": manifest.linked, "missing": len(manifest.missing),
    })  # fmt: skip
    typer.echo(
        f"backup in {destination}: database {manifest.database} "
        f"(schema {manifest.schema_revision or 'unknown'}), {manifest.files} files, "
        f"{manifest.bytes} bytes; {len(manifest.missing)} files purged while copied"
        + (f"; {manifest.linked} files linked to {link_dest}" if link_dest is not None else "")
    )


@backup_app.command("verify")
def backup_verify(
    source: Annotated[Path, typer.Argument(help="A folder `radraft backup create` wrote.")],
) -> None:
    """Read a backup back: every file against the SHA-256 its manifest took, and the database
    as a restore would open it. Exit 0 when it can be restored whole, 1 when it cannot. Changes
    nothing; safe while the services run."""
    from radraft_cli.backup_verify import verify_backup

    check = verify_backup(source)
    typer.echo(
        f"{check.checked} files intact, {len(check.damaged)} damaged, {len(check.missing)}"
        f" missing, {len(check.unlisted)} not in the manifest; database: {check.database}"
    )
    if check.unchecked:
        typer.echo(f"{check.unchecked} files not checked: the backup was made before radraft"
                   " kept checksums")  # fmt: skip
    for label, names in (("damaged", check.damaged), ("missing", check.missing),
                         ("not in the manifest", check.unlisted)):  # fmt: skip
        for name in names[:20]:
            typer.echo(f"  {label}: {name}")
    if not check.is_good:
        typer.echo("radraft: this backup cannot be restored whole", err=True)
        raise typer.Exit(1)


@backup_app.command("restore")
def backup_restore(
    source: Annotated[Path, typer.Argument(help="A folder `radraft backup create` wrote.")],
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Overwrite a database that already holds instances."),
    ] = False,
    by: Annotated[
        str, typer.Option(help="Who restores (audit log).", callback=operator_name)
    ] = "operator",
) -> None:
    """With the services stopped: put the database back, upgrade it, copy back the files the
    spool lacks, and reconcile the two."""
    from radraft.migrate import upgrade
    from radraft_cli.backup_files import read_manifest
    from radraft_cli.restore import (
        refuse_while_serving,
        remember_restore,
        restore_database,
        restore_files,
    )
    from radraft_cli.spool_cli import run_reconciliation

    settings = load_settings()
    configure_logging(settings.log_level)
    manifest = read_manifest(source)
    refuse_while_serving(settings)
    restore_database(settings, source, manifest, replace=replace)
    upgrade(settings.effective_database_url)
    remember_restore(settings, manifest.created_at, actor=f"cli:{by}",
                     details={"database": manifest.database})  # fmt: skip
    files = restore_files(settings, source, manifest)
    typer.echo(
        f"restored the backup of {manifest.created_at}: database {manifest.database}, "
        f"{files.copied} files copied back, {files.kept} already in the spool"
    )
    run_reconciliation(settings, actor=f"cli:{by}", dry_run=False)
    if files.damaged:
        typer.echo(
            f"radraft: {len(files.damaged)} backed-up files differ from the manifest (damaged,"
            " missing, or put into the backup since) and were not restored; the instances of"
            " damaged and missing ones are marked missing, so have the PACS send those studies"
            f" again: {', '.join(files.damaged[:10])}",
            err=True,
        )
        raise typer.Exit(1)


@backup_app.command("restored")
def backup_restored(
    by: Annotated[str, typer.Option(help="Who restored it (audit log).", callback=operator_name)],
) -> None:
    """After restoring the database with your own tool (pg_restore, point-in-time recovery) and
    before starting the services: remember the restore, so that reports and messages made from
    now on do not reuse the identifiers of ones the restore lost. (`backup restore` does this
    itself.)"""
    from radraft.migrate import upgrade
    from radraft_cli.restore import remember_restore

    settings = load_settings()
    configure_logging(settings.log_level)
    upgrade(settings.effective_database_url)
    remember_restore(settings, "unknown: restored with another tool", actor=f"cli:{by}",
                     details={"database": "restored with another tool"})  # fmt: skip
    typer.echo("restore recorded; run `radraft spool reconcile` if the spool is not the backup's")
