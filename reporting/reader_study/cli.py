"""``radraft reader-study``: create, export, analyse and plan timing studies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    import pandas as pd

    from radraft.models import ReaderStudy
    from reporting.reader_study.analysis.simulation import TimeModel

from radraft.enums import Role
from radraft.settings import load_settings

reader_study_app = typer.Typer(help="Timing studies (reader studies of drafting time).",
                        no_args_is_help=True)  # fmt: skip


@contextmanager
def _database() -> Iterator[Session]:
    from radraft.db import engine_for, make_sessionmaker, session_scope

    engine = engine_for(load_settings())
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


@reader_study_app.command("create")
def create(protocol_file: Path) -> None:
    """Create a study from a YAML protocol: readers, cases, the seeded allocation."""
    from reporting.reader_study.enrolment import create_reader_study
    from reporting.reader_study.protocol import ProtocolError, parse_protocol

    try:
        with _database() as session:
            study = create_reader_study(session, parse_protocol(protocol_file.read_text()))
            typer.echo(f"study {study.name} created (seed {study.seed})")
    except ProtocolError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error


@reader_study_app.command("export")
def export(name: str, out: Annotated[Path | None, typer.Option()] = None) -> None:
    """The allocation table as CSV (standard output, or --out)."""
    from radraft.models import ReaderStudy
    from reporting.reader_study.export import allocation_rows, rows_to_csv

    with _database() as session:
        study = session.scalar(select(ReaderStudy).where(ReaderStudy.name == name))
        if study is None:
            typer.echo(f"error: no study named {name!r}", err=True)
            raise typer.Exit(2)
        text = rows_to_csv(allocation_rows(session, study))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)


def _study_tables(session: Session, name: str) -> tuple[ReaderStudy, pd.DataFrame, pd.DataFrame]:
    """A study with its reads and timing events; exit 2 with a message if there is none."""
    from radraft.models import ReaderStudy
    from reporting.reader_study.analysis.dataset import load_tables

    study = session.scalar(select(ReaderStudy).where(ReaderStudy.name == name))
    if study is None:
        typer.echo(f"error: no study named {name!r}", err=True)
        raise typer.Exit(2)
    idle = load_settings().idle_threshold_seconds
    reads, events = load_tables(session, study, idle_threshold=idle)
    return study, reads, events


@reader_study_app.command("analyze")
def analyze(
    name: str,
    out: Annotated[Path, typer.Option(help="Folder for CSVs, results.json, plots, report.html")],
    bootstrap: Annotated[int, typer.Option(help="Cluster bootstrap replicates.")] = 400,
    margin: Annotated[float | None, typer.Option(help="Default: the protocol's.")] = None,
) -> None:
    """Analyse a study's submitted reads and write the report."""
    from reporting.reader_study.analysis.report import analyze as run_analysis

    with _database() as session:
        study, reads, events = _study_tables(session, name)
        chosen_margin = margin if margin is not None else study.protocol["equivalence_margin"]
        seed = study.seed
    if reads.empty:
        typer.echo("error: no submitted reads yet", err=True)
        raise typer.Exit(2)
    results = run_analysis(reads, events, out=out, study_name=name, margin=chosen_margin,
                           bootstrap_replicates=bootstrap, seed=seed)  # fmt: skip
    for role, fit in results["mixed"].items():
        for effect in fit["effects"]:
            typer.echo(
                f"{role}: {effect['arm']} vs {effect['reference']}: time ratio"
                f" {effect['ratio']:.3f} ({effect['ratio_low']:.3f} to {effect['ratio_high']:.3f}),"
                f" saving {effect['saving_percent']:.1f}%"
            )
    typer.echo(f"report: {out / 'report.html'}")


@reader_study_app.command("power")
def power(
    readers: Annotated[str, typer.Option(help="Comma list of reader counts.")] = "4,6,8",
    cases: Annotated[str, typer.Option(help="Comma list of case-pool sizes.")] = "30,50",
    reads_per_reader: int = 30,
    ratio: Annotated[float, typer.Option(help="Planned time ratio (0.64 = 36% saving).")] = 0.64,
    baseline_seconds: float = 150.0,
    reader_sd: float = 0.30,
    case_sd: float = 0.25,
    residual_sd: float = 0.35,
    pilot: Annotated[
        str | None,
        typer.Option(help="Take baseline and SDs from this study's reads (a pilot) instead."),
    ] = None,
    role: Annotated[Role, typer.Option(help="The pilot's readers to plan for.")] = Role.RESIDENT,
    margin: float = 0.20,
    simulations: int = 100,
    seed: int = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Power by simulation from the primary model, over readers x cases."""
    from reporting.reader_study.analysis.power import power_grid
    from reporting.reader_study.analysis.simulation import TimeModel

    model = (
        _pilot_model(pilot, role, ratio) if pilot is not None
        else TimeModel(baseline_seconds=baseline_seconds, arm_ratios={"draft": ratio},
                       reader_sd=reader_sd, case_sd=case_sd, residual_sd=residual_sd)
    )  # fmt: skip
    points = power_grid(
        model, arms=["reference", "draft"],
        readers=[int(n) for n in readers.split(",")], cases=[int(n) for n in cases.split(",")],
        reads_per_reader=reads_per_reader, simulations=simulations, margin=margin, seed=seed,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps({"model": asdict(model), "points": [asdict(p) for p in points]}))
        return
    typer.echo(f"time ratio {ratio}, margin +/-{margin:.0%}, {simulations} simulations each; "
               f"baseline {model.baseline_seconds:.0f} s, SDs (log) reader {model.reader_sd:.2f}"
               f" case {model.case_sd:.2f} residual {model.residual_sd:.2f}")  # fmt: skip
    typer.echo("readers  cases  reads/reader  power(difference)  power(equivalence)")
    for p in points:
        typer.echo(f"{p.readers:7d}  {p.cases:5d}  {p.reads_per_reader:12d}"
                   f"  {p.power_difference:17.2f}  {p.power_equivalence:18.2f}")  # fmt: skip


def _pilot_model(name: str, role: Role, ratio: float) -> TimeModel:
    """The planning model from a stored pilot study; a clear error if it cannot give one."""
    from reporting.reader_study.analysis.power import PilotError, time_model_from_pilot

    with _database() as session:
        _study, reads, _events = _study_tables(session, name)
    try:
        model, fit = time_model_from_pilot(reads, role=role, ratio=ratio)
    except PilotError as error:
        typer.echo(f"error: pilot {name!r}: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"pilot {name!r}: {fit.n_reads} {role} reads by {fit.n_readers} readers of "
               f"{fit.n_cases} cases", err=True)  # fmt: skip
    return model
