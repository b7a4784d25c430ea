"""The ``radraft`` command line: one entry point for every service and tool."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path
from typing import Annotated

import typer

from radraft.errors import RadraftError
from radraft.logs import configure_logging
from radraft.settings import Settings, load_settings
from radraft_cli.backup_cli import backup_app
from radraft_cli.health import health_app
from radraft_cli.operator_name import operator_name
from radraft_cli.spool_cli import spool_app
from radraft_cli.stop_signals import relay_stop_signals
from reporting.reader_study.cli import reader_study_app
from reporting.timing_cli import timing_app

app = typer.Typer(help="radraft: AI-drafted chest X-ray reports.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
outbox_app = typer.Typer(
    help="Outputs waiting for or failed in delivery.", invoke_without_command=True
)
app.add_typer(outbox_app, name="outbox")
study_app = typer.Typer(help="Studies: patient identity.", no_args_is_help=True)
app.add_typer(study_app, name="study")
users_app = typer.Typer(help="Web app users.", no_args_is_help=True)
app.add_typer(users_app, name="users")
model_app = typer.Typer(help="Model checkpoints and runtimes.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(reader_study_app, name="reader-study")
app.add_typer(timing_app, name="timing")
app.add_typer(health_app, name="health")
app.add_typer(spool_app, name="spool")
app.add_typer(backup_app, name="backup")


def _settings(**overrides: object) -> Settings:
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings.log_level)
    return settings


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations (SQLite or Postgres, from RADRAFT_DATABASE_URL)."""
    from radraft.migrate import upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert the migrations down to REVISION (``base`` removes every table)."""
    from radraft.migrate import downgrade

    downgrade(_settings().effective_database_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def gateway(
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Gateway processes sharing the DICOM port (SO_REUSEPORT), each with its own "
            "GIL; default: the number of cores.",
        ),
    ] = None,
    ingest_only: Annotated[bool, typer.Option(hidden=True)] = False,
    reuse_port: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run the DICOM gateway (C-ECHO/C-STORE SCP, completion check, outbox relay)."""
    settings = _settings()
    count = processes or os.cpu_count() or 1
    stop = threading.Event()
    relay_stop_signals(stop)
    if count > 1:
        _supervise_gateways(settings, count, stop)
        return
    from gateway.service import Gateway
    from radraft.broker import celery_publisher, drafting_queue_depth
    from radraft.db import engine_for, make_sessionmaker

    engine = engine_for(settings)
    service = Gateway(
        settings,
        make_sessionmaker(engine),
        celery_publisher(settings),
        ingest_only=ingest_only,
        reuse_port=reuse_port,
        queue_depth=drafting_queue_depth(settings),
    )
    service.start()
    # What is alive now (modules, pydicom's dictionaries, SQLAlchemy's mappers, the AE's
    # contexts: some 120,000 objects) lives as long as the process; out of the collector's
    # reach, a full collection no longer walks it (55 ms holding the GIL, each time).
    gc.freeze()
    while not stop.wait(0.5):
        pass
    service.stop()
    engine.dispose()


def _supervise_gateways(settings: Settings, count: int, stop: threading.Event) -> None:
    """Run ``count`` gateway processes on one port: the first full, the others ingest only."""
    from radraft_cli.serve import ChildSupervisor

    if settings.dicom_port == 0:
        raise RadraftError("several gateway processes need a fixed RADRAFT_DICOM_PORT")
    children = [
        ChildSupervisor(
            settings,
            stop,
            ["gateway", "--processes", "1", "--reuse-port", *(["--ingest-only"] if n else [])],
            name=f"gateway-{n}",
        )
        for n in range(count)
    ]
    for child in children:
        child.start()
    typer.echo(f"gateway: {count} processes on port {settings.dicom_port}")
    while not stop.wait(0.5):
        pass
    for child in children:  # all drain their associations at once (gateway.drain)
        child.terminate()
    for child in children:
        child.stop(timeout=settings.dicom_drain_seconds + 10)


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="Comma list of queues to consume.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Default: RADRAFT_MAX_BATCH.")] = None,
    pool: str = "threads",
) -> None:
    """Run a Celery worker (drafting and default queues unless --queues says otherwise)."""
    from worker.app import run_worker

    settings = _settings()
    run_worker(
        settings,
        queues=queues.split(",") if queues else None,
        concurrency=concurrency,
        pool=pool,
        loglevel=settings.log_level,
    )


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="resident, attending, admin or researcher")],
    full_name: Annotated[str, typer.Option(help="Name shown in reports and SRs.")] = "",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user (the password is asked for, or read from stdin)."""
    import sys

    from radraft.db import engine_for, make_sessionmaker, session_scope
    from radraft.enums import Role
    from reporting.users import create_user

    if role not in {r.value for r in Role}:
        raise typer.BadParameter(f"unknown role {role!r}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    engine = engine_for(settings)
    with session_scope(make_sessionmaker(engine)) as session:
        create_user(session, username, role=Role(role), password=password, full_name=full_name)
    engine.dispose()
    typer.echo(f"user {username} ({role}) created")


@model_app.command("build-demo")
def model_build_demo(
    out: Annotated[Path | None, typer.Option(help="Default: <data dir>/models/demo.")] = None,
) -> None:
    """Build the tiny random-weight demo checkpoint (offline, deterministic)."""
    from worker.runtimes.demo import build_demo_checkpoint
    from worker.runtimes.loader import demo_model_path

    folder = build_demo_checkpoint(out or demo_model_path(_settings()))
    typer.echo(f"demo model (random weights, not for clinical use) written to {folder}")


@model_app.command("setup")
def model_setup(backend: str) -> None:
    """Create the isolated environment of a child-process backend (``chexagent``)."""
    from worker.runtimes.setup import setup_chexagent_environment

    if backend != "chexagent":
        raise typer.BadParameter("only chexagent needs its own environment")
    python = setup_chexagent_environment(_settings())
    typer.echo(f"CheXagent environment ready: {python}")


@outbox_app.callback()
def outbox_list(
    context: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending, done or failed")] = None,
) -> None:
    """List outbox rows (SR, HL7 and task messages), newest last."""
    if context.invoked_subcommand is not None:
        return
    from sqlalchemy import select

    from radraft.db import engine_for, make_sessionmaker, session_scope
    from radraft.models import OutboxMessage
    from radraft.report_outputs import channels_without_destination, waits_for

    settings = _settings()
    waiting = channels_without_destination(settings)
    engine = engine_for(settings)
    with session_scope(make_sessionmaker(engine)) as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if status:
            query = query.where(OutboxMessage.status == status)
        for row in session.scalars(query):
            output = row.payload.get("output") or row.payload.get("task", "")
            setting = waits_for(row, waiting)
            note = (
                f"waits for a destination: {setting} is not set"
                if setting
                else row.last_error or ""
            )
            typer.echo(
                f"{row.id}\t{row.channel}\t{output}\t{row.status}\tattempts={row.attempts}"
                f"\tstudy={row.study_id}\t{note}"
            )
    engine.dispose()


@outbox_app.command("retry")
def outbox_retry(outbox_id: int) -> None:
    """Re-queue a failed output for delivery."""
    from radraft.db import engine_for, make_sessionmaker, session_scope
    from radraft.timeutil import utcnow
    from reporting.delivery.relay import retry_failed

    settings = _settings()
    engine = engine_for(settings)
    with session_scope(make_sessionmaker(engine)) as session:
        retried = retry_failed(session, outbox_id, now=utcnow())
    engine.dispose()
    if not retried:
        raise RadraftError(f"outbox row {outbox_id} is not failed")
    typer.echo(f"outbox row {outbox_id} re-queued")


@study_app.command("confirm-identity")
def study_confirm_identity(
    study_instance_uid: str,
    by: Annotated[
        str,
        typer.Option(
            help="Who checked the patient with the PACS (audit log).", callback=operator_name
        ),
    ],
) -> None:
    """After checking with the PACS that radraft's copy of a disputed study is the right
    patient's: allow signing again and re-queue its held SRs and ORUs."""
    from radraft.db import engine_for, make_sessionmaker, session_scope
    from radraft.identity_dispute import confirm_identity
    from radraft.timeutil import utcnow

    settings = _settings()
    engine = engine_for(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            requeued = confirm_identity(
                session, study_instance_uid, actor=f"cli:{by}", now=utcnow()
            )
    finally:
        engine.dispose()
    typer.echo(f"identity confirmed; {requeued} held output(s) re-queued")


@study_app.command("correct-patient")
def study_correct_patient(
    study_instance_uid: str,
    patient_id: Annotated[
        str,
        typer.Option(help="The Patient ID the PACS now files the study under, as checked there."),
    ],
    by: Annotated[
        str,
        typer.Option(
            help="Who checked the correction with the PACS (audit log).", callback=operator_name
        ),
    ],
) -> None:
    """After checking with the PACS that a disputed study was moved to another patient there:
    move it here too (the patient its sender named), withdraw what went out under the old
    patient, and send the report again under the new one."""
    from gateway.patient_files import correct_study_patient
    from gateway.spool import Spool
    from radraft.db import engine_for, make_sessionmaker
    from radraft.timeutil import utcnow

    settings = _settings()
    engine = engine_for(settings)
    try:
        done = correct_study_patient(
            make_sessionmaker(engine),
            Spool(settings.spool_dir, settings.data_dir / "incoming"),
            study_instance_uid,
            patient_id=patient_id,
            actor=f"cli:{by}",
            now=utcnow(),
        )
    finally:
        engine.dispose()
    moved = ", ".join(done.moved_fields) or "nothing"
    withdrawals = ", ".join(done.withdrawals) or "none (nothing of it was sent or on its way)"
    report = (
        f"revision {done.requeued_revision} queued again for the corrected patient"
        if done.requeued_revision is not None
        else "no report yet"
    )
    typer.echo(
        f"patient corrected (correction {done.corrections}; changed: {moved});"
        f" {done.stopped} undelivered output(s) will not be sent; withdrawals queued:"
        f" {withdrawals}; {report}"
    )


@study_app.command("withdraw")
def study_withdraw(
    study_instance_uid: str,
    by: Annotated[
        str,
        typer.Option(
            help="Who found the copy to be another patient's (audit log).",
            callback=operator_name,
        ),
    ],
) -> None:
    """After checking with the PACS that radraft's copy of a study belongs to another patient:
    close its report, stop its outputs, and withdraw what reached the PACS (an IOCM rejection
    note) and the RIS (an ORU with result status W)."""
    from radraft.db import engine_for, make_sessionmaker, session_scope
    from radraft.timeutil import utcnow
    from radraft.withdrawal import withdraw_study

    settings = _settings()
    engine = engine_for(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            done = withdraw_study(session, study_instance_uid, actor=f"cli:{by}", now=utcnow())
    finally:
        engine.dispose()
    queued = ", ".join(done.queued) or "none (no output of it was sent or on its way)"
    typer.echo(
        f"withdrawn; {done.stopped} undelivered output(s) will not be sent; withdrawals queued:"
        f" {queued}"
    )


@app.command()
def deliver() -> None:
    """Deliver report outputs (SR C-STORE, HL7 ORU over MLLP) until SIGTERM or SIGINT."""
    from radraft.db import engine_for, make_sessionmaker
    from reporting.delivery.relay import OutputDeliveryRelay

    settings = _settings()
    engine = engine_for(settings)
    stop = threading.Event()
    relay_stop_signals(stop)
    OutputDeliveryRelay(make_sessionmaker(engine), settings).run_until(
        stop, settings.outbox_poll_seconds
    )
    engine.dispose()


@app.command()
def web() -> None:
    """Run the web app (pages, API and DICOMweb) alone."""
    from radraft_cli.web_server import web_server

    settings = _settings()
    typer.echo(f"web app on {settings.http_host}:{settings.http_port}")
    web_server(settings).run()


@app.command()
def serve() -> None:
    """Run gateway, a Celery worker and the web app together until SIGTERM or SIGINT.

    With the demo model (the default) the demo checkpoint is built first if it is missing, so
    `radraft serve` on a fresh data dir runs as it is.
    """
    from radraft.model_options import ModelKind
    from radraft_cli.serve import EmbeddedServer
    from worker.runtimes.demo import build_demo_checkpoint, is_demo_checkpoint
    from worker.runtimes.loader import demo_model_path

    settings = _settings()
    if settings.model.kind == ModelKind.DEMO and not is_demo_checkpoint(demo_model_path(settings)):
        folder = build_demo_checkpoint(demo_model_path(settings))
        typer.echo(f"built the demo model (random weights, not for clinical use) in {folder}")
    server = EmbeddedServer(settings)
    server.start()
    try:
        server.wait()
    finally:
        server.shutdown()
    if server.failed:
        raise RadraftError("the worker cannot start (its error is in the log above)")


@app.command()
def demo(
    data_dir: Annotated[Path | None, typer.Option(help="Demo data dir (emptied first).")] = None,
    studies: int = 3,
    stable_seconds: float = 2.0,
    exit_when_done: Annotated[
        bool, typer.Option(help="Stop once the studies are processed.")
    ] = False,
    timeout: float = 300.0,
) -> None:
    """Start the embedded server on a fresh data dir and send it synthetic chest studies."""
    from radraft_cli.demo import run_demo

    settings = _settings(data_dir=data_dir or Path("radraft-demo"), stable_seconds=stable_seconds)
    run_demo(settings, studies=studies, exit_when_done=exit_when_done, timeout=timeout)


@app.command()
def synth(
    out: Path,
    studies: int = 1,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    size: int = 1024,
) -> None:
    """Write synthetic chest studies (PA + lateral DX) as DICOM files into OUT."""
    from radraft.synthetic import make_chest_study

    out.mkdir(parents=True, exist_ok=True)
    for seed in range(1, studies + 1):
        for dataset in make_chest_study(
            seed, transfer_syntax=transfer_syntax, rows=size, columns=size
        ):
            dataset.save_as(out / f"{dataset.SOPInstanceUID}.dcm", enforce_file_format=True)
    typer.echo(f"wrote {studies} studies to {out}")


def main() -> None:
    """Console-script entry point: clear one-line errors for the failures we expect.

    A database that is down or refuses a statement is one of them: an administrator's command
    says so in a line (the driver's first line: no SQL, no parameters, so no patient data)
    instead of a page of traceback."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    try:
        app()
    except RadraftError as error:
        typer.echo(f"radraft: {error}", err=True)
        raise SystemExit(2) from error
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""
        what = (
            "the database is unavailable"
            if isinstance(error, OperationalError)
            else "the database refused the change"
        )
        typer.echo(f"radraft: {what} ({type(error.orig).__name__}: {reason})", err=True)
        raise SystemExit(3) from error


if __name__ == "__main__":
    main()
