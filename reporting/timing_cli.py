"""``radraft timing``: routine timing data of clinical edit sessions, for monitoring."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from radraft.settings import load_settings

timing_app = typer.Typer(help="Routine timing data (clinical edit sessions).",
                         no_args_is_help=True)  # fmt: skip


@timing_app.command("export")
def export(
    out: Annotated[Path | None, typer.Option(help="CSV file (default: standard output).")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only sessions started on or after (UTC).")
    ] = None,
) -> None:
    """One row per clinical edit session: reader id and role, start and result, times, edits."""
    from radraft.db import engine_for, make_sessionmaker, session_scope
    from reporting.timing_export import export_csv

    settings = load_settings()
    engine = engine_for(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            text = export_csv(
                session,
                idle_threshold=settings.idle_threshold_seconds,
                since=since.replace(tzinfo=UTC) if since and since.tzinfo is None else since,
                actor="cli",
            )
    finally:
        engine.dispose()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"{text.count(chr(10)) - 1} sessions written to {out}", err=True)
