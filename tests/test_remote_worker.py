"""A worker on another host: its own data dir, no shared spool, images over WADO-RS.

The gateway and the web app (the DICOMweb origin) share one data dir, as on the gateway host;
the worker has a data dir of its own, as on a GPU host, and only Postgres, Redis and the origin
in common with them. One study arrives by C-STORE, one by STOW-RS: both are drafted once, from
images the worker fetched over WADO-RS (audited as the service token's retrievals), and nothing
of them stays on the worker's disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import AuditAction, JobStatus
from radraft.models import AuditEntry, DraftingJob, Instance, ReportRevision
from radraft.settings import Settings, settings_to_environment
from radraft.synthetic import make_chest_study
from tests.dicom_peers import storescu, write_study
from tests.dicomweb_support import TOKEN_HEADERS, stow_body
from tests.processes import radraft_process
from tests.support import RedisServer, wait_until


def health(settings: Settings, kind: str) -> subprocess.CompletedProcess[str]:
    """``radraft health KIND`` as a container health check runs it."""
    return subprocess.run(
        [sys.executable, "-m", "radraft_cli", "health", kind, "--timeout", "5"],
        env={**os.environ, **settings_to_environment(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_worker_with_its_own_data_dir_drafts_from_images_fetched_over_wado_rs(
    settings: Settings,
    session_factory: sessionmaker[Session],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    origin = f"http://127.0.0.1:{settings.http_port}/dicomweb"
    gateway_host = settings.model_copy(
        update={"broker_url": redis_server.url, "stable_seconds": 1.0, "dicomweb_base_url": origin}
    )
    gpu_host = gateway_host.model_copy(update={"data_dir": tmp_path / "gpu-host"})
    by_dimse = write_study(make_chest_study(601, rows=64, columns=64), tmp_path / "dimse")
    by_stow = write_study(make_chest_study(602, rows=64, columns=64), tmp_path / "stow")
    with (
        radraft_process(gateway_host, ["gateway", "--processes", "1"], tmp_path / "gateway.log",
                        ready_text="started"),
        radraft_process(gateway_host, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"),
        radraft_process(gpu_host, ["worker"], tmp_path / "worker.log", ready_text="ready."),
    ):  # fmt: skip
        assert storescu(by_dimse, port=gateway_host.dicom_port)
        body, content_type = stow_body(by_stow)
        stored = httpx.post(f"{origin}/studies", content=body, timeout=60,
                            headers={**TOKEN_HEADERS, "Content-Type": content_type})  # fmt: skip
        assert stored.status_code == 200, stored.text

        def drafted() -> bool:
            with session_scope(session_factory) as session:
                done = session.scalar(
                    select(func.count()).select_from(DraftingJob)
                    .where(DraftingJob.status == JobStatus.SUCCEEDED)
                )  # fmt: skip
            return done == 2

        wait_until(drafted, timeout=180, what="both studies drafted on the GPU host")
        # The container health checks, against the running services.
        assert health(gateway_host, "gateway").returncode == 0
        assert health(gateway_host, "web").returncode == 0
        assert health(gpu_host, "worker").returncode == 0
    assert health(gateway_host, "gateway").returncode == 1, "stopped: unhealthy"
    assert health(gateway_host, "web").returncode == 1
    with session_scope(session_factory) as session:
        origins = set(session.scalars(select(Instance.origin)))
        callers = set(session.scalars(select(Instance.calling_ae_title)))
        drafts = session.scalar(select(func.count()).select_from(ReportRevision))
        fetched = session.scalars(
            select(AuditEntry.object_id).where(
                AuditEntry.action == AuditAction.DICOMWEB_RETRIEVE,
                AuditEntry.actor == "service-token",
            )
        ).all()
    assert origins == {origin}, "every instance names the origin that holds it"
    assert callers == {"STORESCU", "STOW-RS"}
    assert drafts == 2, "one draft per study"
    studies = {str(dcmread(files[0]).StudyInstanceUID) for files in (by_dimse, by_stow)}
    assert set(fetched) == studies, "each study's images came over WADO-RS"
    instances = {str(dcmread(path).SOPInstanceUID) for path in [*by_dimse, *by_stow]}
    for log in ("worker.log", "web.log", "gateway.log"):
        text = (tmp_path / log).read_text(errors="replace")
        leaked = sorted(uid for uid in studies | instances if uid in text)
        assert leaked == [], f"{log} names {leaked} (fetch URLs carry UIDs)"
    assert not (gpu_host.spool_dir).exists(), "the GPU host never had a spool"
    scratch = gpu_host.data_dir / "fetched"
    assert not scratch.exists() or not any(scratch.iterdir()), "fetched files removed after use"
