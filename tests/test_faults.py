"""Real faults on the production stack: Postgres and Redis restarts, a gateway SIGKILL.

Twenty studies are in flight, sent by a sender that retries what was not acknowledged, as a
PACS does. Postgres is restarted, then Redis, then the gateway is killed mid-association and
started again. Afterwards every acknowledged instance is stored, every study drafted, and every
revision's SR and ORU delivered, each exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import make_engine, make_sessionmaker, session_scope
from radraft.enums import JobStatus, OutboxChannel, OutboxStatus
from radraft.migrate import upgrade
from radraft.models import DraftingJob, Instance, OutboxMessage, ReportRevision, Study
from radraft.settings import Settings, settings_to_environment
from tests.conftest import ReportDestinations
from tests.dicom_peers import store_statuses, storescu, synthetic_study_files
from tests.processes import radraft_process
from tests.support import PostgresServer, RedisServer, free_port, wait_until

STUDIES = 20


class RetryingSender:
    """Sends studies one after another and re-sends each until every image is acknowledged."""

    def __init__(self, folders: list[list[Path]], port: int) -> None:
        self.folders = folders
        self.port = port
        self.acknowledged: set[str] = set()
        self.sent_studies = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for files in self.folders:
            while True:
                result = storescu(files, port=self.port, debug=True, halt=False)
                if store_statuses(result.output) == [0] * len(files):
                    break
                time.sleep(0.5)
            self.acknowledged.update(path.stem for path in files)
            self.sent_studies += 1
            time.sleep(0.2)


def start_gateway(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    environment = {**os.environ, **settings_to_environment(settings)}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "radraft_cli", "gateway", "--processes", "1"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    wait_until(lambda: "gateway.started" in log.read_text(errors="replace"), timeout=60,
               what="the gateway to start")  # fmt: skip
    return process


def test_restarts_and_a_killed_gateway_lose_nothing_and_deliver_once(
    tmp_path: Path,
    demo_model_dir: Path,
    own_postgres: PostgresServer,
    redis_server: RedisServer,
    report_destinations: ReportDestinations,
) -> None:
    upgrade(own_postgres.url)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=own_postgres.url,
        broker_url=redis_server.url,
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        http_port=free_port(),
        stable_seconds=1.0,
        outbox_poll_seconds=0.1,
        outbox_max_backoff_seconds=1.0,
        model_path=demo_model_dir,
        max_new_tokens=8,
        image_size=64,
        job_lease_seconds=6.0,
        delivery_timeout_seconds=3.0,
        delivery_max_attempts=1000,
        **report_destinations.settings_update(),  # type: ignore[arg-type]
    )
    folders = [synthetic_study_files(500 + n, tmp_path / f"s{n}", size=96) for n in range(STUDIES)]
    gateway_log = tmp_path / "gateway.log"
    gateway = start_gateway(settings, gateway_log)
    engine = make_engine(own_postgres.url)
    factory: sessionmaker[Session] = make_sessionmaker(engine)
    try:
        with (
            radraft_process(settings, ["worker"], tmp_path / "worker.log", ready_text="ready."),
            radraft_process(
                settings, ["deliver"], tmp_path / "deliver.log", ready_text="delivery.started"
            ),  # fmt: skip
        ):
            sender = RetryingSender(folders, settings.dicom_port)
            sender.thread.start()
            wait_until(lambda: sender.sent_studies >= 4, timeout=120, what="four studies sent")
            own_postgres.stop()  # Postgres restarts with studies, jobs and outputs in flight
            time.sleep(2)
            own_postgres.start()
            wait_until(lambda: sender.sent_studies >= 9, timeout=120, what="nine studies sent")
            redis_server.stop()  # then Redis
            time.sleep(2)
            redis_server.start()
            wait_until(lambda: sender.sent_studies >= 13, timeout=120, what="13 studies sent")
            gateway.send_signal(signal.SIGKILL)  # then the gateway, mid-association
            gateway.wait()
            gateway = start_gateway(settings, gateway_log)
            sender.thread.join(timeout=300)
            assert not sender.thread.is_alive(), "every study acknowledged in the end"

            def settled() -> bool:
                with session_scope(factory) as session:
                    studies = session.scalar(select(func.count()).select_from(Study))
                    drafted = session.scalar(
                        select(func.count(func.distinct(DraftingJob.study_id))).where(
                            DraftingJob.status == JobStatus.SUCCEEDED
                        )
                    )
                    outputs = session.scalars(
                        select(OutboxMessage.status).where(
                            OutboxMessage.channel != OutboxChannel.CELERY
                        )
                    ).all()
                return (
                    studies == STUDIES
                    and drafted == STUDIES
                    and bool(outputs)
                    and set(outputs) == {OutboxStatus.DONE}
                )

            wait_until(settled, timeout=240, what="every study drafted and delivered")
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=30)
        engine.dispose()

    with session_scope(factory) as session:
        stored: dict[str, str] = dict(
            session.execute(select(Instance.sop_instance_uid, Instance.spool_path)).all()
        )
        revisions = session.scalars(select(ReportRevision)).all()
    assert sender.acknowledged <= set(stored), "every acknowledged instance is stored"
    for sop_uid, relative in stored.items():
        assert dcmread(settings.spool_dir / relative).SOPInstanceUID == sop_uid
    assert len({r.report_id for r in revisions if r.drafting_job_id}) == STUDIES
    srs = [dcmread(path, stop_before_pixels=True) for path in report_destinations.stored_srs()]
    sr_uids = [str(sr.SOPInstanceUID) for sr in srs]
    assert len(sr_uids) == len(set(sr_uids)) == len(revisions), "each SR delivered once"
    control_ids = [str(m.segment("MSH")[10]) for m in report_destinations.ris.messages]
    assert len(control_ids) == len(set(control_ids)) == len(revisions), "each ORU once"
