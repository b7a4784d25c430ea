"""A study whose files spool retention deleted: every read says so, and its reports still work.

The previews and WADO-RS answer 410 Gone (not 404: the instance exists, radraft let its copy
go), QIDO-RS lists the instances as UNAVAILABLE, ``/metrics`` counts them, and an amendment
signed after the purge still gets an SR whose evidence names every source instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.retention import run_retention
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import StudyStatus
from radraft.models import Instance, Study
from radraft.settings import Settings
from radraft.timeutil import utcnow
from radraft_cli.web_app import web_app
from reporting.delivery.outputs import build_sr_dataset, load_bundle
from tests.dicomweb_support import TOKEN_HEADERS
from tests.gateway.test_retention import RETENTION_DAYS, settle
from tests.reporting.factories import full_history
from tests.reporting.web_support import login

INSTANCE_AVAILABILITY = "00080056"


@pytest.fixture
def deployed_client(settings: Settings) -> Iterator[TestClient]:
    """The web app as ``radraft web`` runs it: reporting's pages and API with DICOMweb."""
    with TestClient(web_app(settings)) as client:
        yield client


def _purged(gateway: Gateway, factory: sessionmaker[Session], study: Study) -> list[str]:
    """Settle and purge the study; its instances' SOP Instance UIDs."""
    settle(factory, study.id, StudyStatus.FINAL)
    done = run_retention(
        factory, gateway.spool, retention_days=RETENTION_DAYS, now=utcnow(), sr_deliveries=True
    )
    assert [purged.study_id for purged in done.purged] == [study.id]
    with session_scope(factory) as session:
        return list(
            session.scalars(
                select(Instance.sop_instance_uid)
                .where(Instance.study_id == study.id)
                .order_by(Instance.id)
            )
        )


def test_reads_of_a_purged_study_answer_gone_and_say_why(
    received_study: Study,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    deployed_client: TestClient,
    world: dict[str, Any],
) -> None:
    app_client = deployed_client
    uids = _purged(running_gateway, session_factory, received_study)
    study_uid = received_study.study_instance_uid
    login(app_client, "resident")
    for path in (f"/api/instances/{uids[0]}/preview.png", f"/api/instances/{uids[0]}/window"):
        answer = app_client.get(path)
        assert answer.status_code == 410, path
        assert "spool retention" in answer.json()["detail"]
        assert "PACS" in answer.json()["detail"]
    assert app_client.get("/api/instances/1.2.3.404/window").status_code == 404
    for path in (f"/dicomweb/studies/{study_uid}",
                 f"/dicomweb/studies/{study_uid}/metadata"):  # fmt: skip
        answer = app_client.get(path, headers=TOKEN_HEADERS)
        assert answer.status_code == 410, path
    listed = app_client.get(f"/dicomweb/studies/{study_uid}/instances", headers=TOKEN_HEADERS)
    assert listed.status_code == 200
    assert sorted(item[INSTANCE_AVAILABILITY]["Value"][0] for item in listed.json()) == [
        "UNAVAILABLE",
        "UNAVAILABLE",
    ]
    metrics = app_client.get("/metrics", headers=TOKEN_HEADERS).text
    assert 'radraft_spool_instances{state="purged"} 2' in metrics
    assert 'radraft_spool_instances{state="held"} 0' in metrics
    assert "radraft_spool_held_bytes 0" in metrics


def test_a_report_amended_after_the_purge_names_every_source_instance(
    received_study: Study,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    uids = _purged(running_gateway, session_factory, received_study)
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        amended = full_history(session, study)[-1].id
    with session_scope(session_factory) as session:
        bundle = load_bundle(session, amended, spool_dir=settings.spool_dir)
        assert [path for path, _ in bundle.sources] == [None, None]
        sr = build_sr_dataset(bundle, settings)
    evidence = [
        item.ReferencedSOPInstanceUID
        for study_item in sr.CurrentRequestedProcedureEvidenceSequence
        for series_item in study_item.ReferencedSeriesSequence
        for item in series_item.ReferencedSOPSequence
    ]
    assert sorted(evidence) == sorted(uids)
