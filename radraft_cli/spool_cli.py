"""``radraft spool purge`` and ``reconcile``: retention now; the spool and the database agreeing.

The full gateway applies ``RADRAFT_SPOOL_RETENTION_DAYS`` by itself every janitor round; this
command is for an operator sizing a retention period before setting it (``--dry-run
--older-than-days N``) or freeing space at once on a host whose disk is filling. It takes the
same row locks as the gateway, so it is safe to run while the gateway receives.
"""

from __future__ import annotations

from typing import Annotated

import typer

from radraft.errors import RadraftError
from radraft.logs import configure_logging
from radraft.settings import Settings, load_settings
from radraft_cli.operator_name import operator_name

spool_app = typer.Typer(
    help="The DICOM spool: retention, and agreement with the database.", no_args_is_help=True
)
DRY_RUN_MOST_STUDIES = 1_000_000


@spool_app.command("purge")
def spool_purge(
    older_than_days: Annotated[
        int | None,
        typer.Option(min=1, help="Idle days; default RADRAFT_SPOOL_RETENTION_DAYS."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")
    ] = False,
    by: Annotated[
        str, typer.Option(help="Who runs it (audit log).", callback=operator_name)
    ] = "operator",
) -> None:
    """Delete the spooled files of settled studies idle for the retention period (rows stay)."""
    from datetime import timedelta

    from gateway.retention import RetentionRule, held_files, purge_candidates, run_retention
    from gateway.spool import Spool
    from radraft.db import engine_for, make_sessionmaker, session_scope
    from radraft.timeutil import utcnow

    settings = load_settings()
    configure_logging(settings.log_level)
    days = older_than_days or settings.spool_retention_days
    if days is None:
        raise RadraftError("no retention period: give --older-than-days or set "
                           "RADRAFT_SPOOL_RETENTION_DAYS")  # fmt: skip
    engine = engine_for(settings)
    factory = make_sessionmaker(engine)
    now = utcnow()
    sr_deliveries = settings.sr_destination is not None
    try:
        if dry_run:
            with session_scope(factory) as session:
                rule = RetentionRule(now - timedelta(days=days), sr_deliveries)
                found = purge_candidates(session, rule, DRY_RUN_MOST_STUDIES)
                files, size = held_files(session, found)
            typer.echo(f"would purge {len(found)} studies: {files} files, {size} bytes")
            return
        spool = Spool(settings.spool_dir, settings.data_dir / "incoming")
        studies = files = size = 0
        while True:
            done = run_retention(factory, spool, retention_days=days, now=now, actor=f"cli:{by}",
                                 sr_deliveries=sr_deliveries)  # fmt: skip
            studies, files, size = studies + len(done.purged), files + done.files, size + done.bytes
            if not done.purged or not done.more_waiting:
                break
    finally:
        engine.dispose()
    typer.echo(f"purged {studies} studies: {files} files, {size} bytes")


@spool_app.command("reconcile")
def spool_reconcile(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what is out of step; change nothing.")
    ] = False,
    by: Annotated[
        str, typer.Option(help="Who runs it (audit log).", callback=operator_name)
    ] = "operator",
    mark_most_missing: Annotated[
        bool,
        typer.Option(
            "--mark-most-missing",
            help="Mark rows purged even when most of the spool's files are missing (a lost "
            "disk; without it such a run stops, as an unmounted spool looks the same).",
        ),
    ] = False,
) -> None:
    """Record spooled files no row names (instances acknowledged after a restored backup) and
    mark rows whose files are gone as purged (a re-send brings them back)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    run_reconciliation(
        settings, actor=f"cli:{by}", dry_run=dry_run, mark_most_missing=mark_most_missing
    )


def run_reconciliation(
    settings: Settings, *, actor: str, dry_run: bool, mark_most_missing: bool = False
) -> None:
    """Reconcile the spool of ``settings`` with its database and print what was found."""
    from gateway.intake import intake_for
    from gateway.reconcile import reconcile
    from gateway.spool import Spool
    from radraft.db import engine_for, make_sessionmaker
    from radraft.timeutil import utcnow

    engine = engine_for(settings)
    factory = make_sessionmaker(engine)
    spool = Spool(settings.spool_dir, settings.data_dir / "incoming")
    try:
        found = reconcile(
            factory, spool, intake_for(settings, factory, spool), now=utcnow(), actor=actor,
            origin=settings.dicomweb_base_url, dry_run=dry_run,
            mark_most_missing=mark_most_missing,
        )  # fmt: skip
    finally:
        engine.dispose()
    verb = "would be" if dry_run else "were"
    typer.echo(
        f"{found.files_seen} spooled files; {found.files_without_row} without a held row"
        f"{'' if dry_run else f' ({found.recorded} recorded, {len(found.unfiled)} refused)'}; "
        f"{found.rows_without_file} rows of {found.studies_without_files} studies without "
        f"their file {verb} marked purged"
    )
    for unfiled in found.unfiled:
        typer.echo(f"refused, kept in {unfiled.path}: {unfiled.reason}")
