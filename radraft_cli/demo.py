"""``radraft demo``: a fresh data dir, the embedded server, a few synthetic studies sent to it."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

from pydicom import uid
from sqlalchemy import func, select

from radraft.db import engine_for, make_sessionmaker, session_scope
from radraft.dicomsend import send_datasets
from radraft.enums import JobStatus, Role
from radraft.errors import RadraftError
from radraft.model_options import ModelKind
from radraft.models import DraftingJob, Study
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from radraft_cli.serve import EmbeddedServer
from worker.runtimes.demo import build_demo_checkpoint
from worker.runtimes.loader import demo_model_path

DEMO_MARKER = ".radraft-demo"
DEMO_SYNTAXES = (
    uid.ExplicitVRLittleEndian,
    uid.JPEG2000Lossless,
    uid.RLELossless,
    uid.DeflatedExplicitVRLittleEndian,
)


class DemoError(RadraftError):
    """The demo could not run (e.g. its data dir holds something that is not a demo)."""


def prepare_data_dir(data_dir: Path) -> None:
    """Empty a previous demo's data dir; refuse to touch a folder that is not one."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / DEMO_MARKER).exists():
            raise DemoError(f"{data_dir} is not empty and not a radraft demo folder")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_MARKER).write_text("created by radraft demo\n")


def wait_for_jobs(settings: Settings, expected_studies: int, timeout: float) -> dict[str, int]:
    """Wait until every sent study is decided and its jobs are finished; return a summary."""
    engine = engine_for(settings)
    factory = make_sessionmaker(engine)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with session_scope(factory) as session:
                decided = session.scalar(
                    select(func.count()).select_from(Study).where(Study.eligible.is_not(None))
                )
                open_jobs = session.scalar(
                    select(func.count())
                    .select_from(DraftingJob)
                    .where(DraftingJob.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                )
                done_jobs = session.scalar(
                    select(func.count())
                    .select_from(DraftingJob)
                    .where(DraftingJob.status == JobStatus.SUCCEEDED)
                )
            if decided == expected_studies and open_jobs == 0:
                return {"studies": decided or 0, "jobs_run": done_jobs or 0}
            if time.monotonic() > deadline:
                raise DemoError("the demo studies were not processed in time")
            time.sleep(0.2)
    finally:
        engine.dispose()


DEMO_ROLES = (Role.RESIDENT, Role.ATTENDING, Role.ADMIN)


def create_demo_accounts(settings: Settings) -> dict[str, str]:
    """A resident, an attending and an admin with fresh random passwords, printed once."""
    from reporting.users import create_user

    accounts = {role.value: secrets.token_urlsafe(12) for role in DEMO_ROLES}
    engine = engine_for(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            for role in DEMO_ROLES:
                create_user(session, role.value, role=role, password=accounts[role.value],
                            full_name=f"Demo {role.value}")  # fmt: skip
    finally:
        engine.dispose()
    return accounts


def run_demo(settings: Settings, *, studies: int, exit_when_done: bool, timeout: float) -> None:
    """Run the demo end to end and print where to look."""
    prepare_data_dir(settings.data_dir)
    if settings.api_token is None:
        # A token for this demo only, so the printed curl line works as it stands.
        settings = settings.model_copy(update={"api_token": secrets.token_urlsafe(24)})
    if settings.model.kind == ModelKind.DEMO:
        folder = build_demo_checkpoint(demo_model_path(settings))
        print(f"built the demo model (random weights, not for clinical use) in {folder}")  # noqa: T201
    server = EmbeddedServer(settings)
    server.start()
    try:
        if server.gateway is None:
            raise RadraftError("the embedded server started without its gateway")
        sent = 0
        for seed in range(1, studies + 1):
            syntax = DEMO_SYNTAXES[(seed - 1) % len(DEMO_SYNTAXES)]
            datasets = make_chest_study(seed, transfer_syntax=syntax, rows=768, columns=768)
            statuses = send_datasets(
                datasets,
                host="127.0.0.1",
                port=server.gateway.port,
                called_ae_title=settings.ae_title,
            )
            if any(statuses):
                raise DemoError(f"the gateway refused a demo instance: {statuses}")
            sent += len(datasets)
        print(f"sent {studies} synthetic chest studies ({sent} images); waiting for drafting jobs")  # noqa: T201
        summary = wait_for_jobs(settings, studies, timeout)
        accounts = create_demo_accounts(settings)
        base = f"http://{settings.http_host}:{settings.http_port}"
        print(  # noqa: T201
            f"done: {summary['studies']} studies stored and classified, "
            f"{summary['jobs_run']} drafts written by the Celery worker ({settings.model} model)\n"
            f"  web app     : {base}/ (demo accounts: "
            + ", ".join(f"{name} / {password}" for name, password in accounts.items())
            + ")\n"
            f"  studies API : curl -H 'Authorization: Bearer {settings.api_token}' "
            f"{base}/api/studies\n"
            f"  health      : {base}/healthz\n"
            f"  DICOM SCP   : {settings.ae_title}@127.0.0.1:{server.gateway.port}\n"
            f"  data dir    : {settings.data_dir.resolve()}"
        )
        if not exit_when_done:
            print("serving; press Ctrl-C to stop")  # noqa: T201
            server.wait()
    finally:
        server.stop()
        server.shutdown()
