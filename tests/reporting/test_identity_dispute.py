"""A study the sender has since sent under another Patient ID is held until someone confirms it.

The gateway refused such an instance (0x0111) and kept its first copy, which was right for the
files. But the usual cause is a correction at the PACS (the study put under the right patient
and sent again with the same UIDs), and radraft still let the study be signed and sent its
report to the PACS and the RIS under the first patient. Here a real storescu sends the study
again under another Patient ID; a real dcmtk storescp and an MLLP peer stand for the PACS and
the RIS; the administrator's confirmation is the real ``radraft study confirm-identity``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import OutboxStatus, ReportState, Role
from radraft.identity_dispute import CONFIRMED_ACTION, HELD_REASON
from radraft.models import AuditEntry, Study
from radraft.settings import Settings, settings_to_environment
from reporting.delivery.relay import OutputDeliveryRelay
from reporting.users import create_user
from tests.conftest import ReportDestinations
from tests.dicom_peers import store_statuses, storescu, synthetic_study_files
from tests.reporting.factories import add_revision
from tests.reporting.test_delivery import SteppingClock, output_rows
from tests.reporting.web_support import PASSWORD, edit, login
from tests.support import wait_until

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def _metrics(client: TestClient, settings: Settings) -> str:
    return client.get("/metrics", headers={"Authorization": f"Bearer {settings.api_token}"}).text


def send_again_under_another_patient(port: int, folder: Path) -> set[int]:
    """The received study (``received_study``: synthetic study 90) sent again by storescu with
    the same UIDs under Patient ID CORRECTED-7, as a PACS does after a correction; the statuses
    it got."""
    again = synthetic_study_files(90, folder)
    for path in again:
        corrected = dcmread(path)
        corrected.PatientID = "CORRECTED-7"
        corrected.save_as(path)
    return set(store_statuses(storescu(again, port=port, debug=True, halt=False).output))


def _confirm_identity(settings: Settings, uid: str, *, by: str) -> subprocess.CompletedProcess[str]:
    """``radraft study confirm-identity``, as an administrator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "radraft_cli", "study", "confirm-identity", uid, "--by", by],
        env={**os.environ, **settings_to_environment(settings)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_study_sent_again_under_another_patient_is_held_until_confirmed(
    received_study: Study,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    app_client: TestClient,
    report_destinations: ReportDestinations,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(
        update={**report_destinations.settings_update(), "delivery_timeout_seconds": 3}
    )
    ris = report_destinations.ris
    uid = received_study.study_instance_uid
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        draft = add_revision(session, study, ReportState.DRAFTED, model=True,
                             findings="Draft findings.", impression="Draft.")  # fmt: skip
        report_id = draft.report_id
        create_user(session, "attending", role=Role.ATTENDING, password=PASSWORD, full_name="A")

    statuses = send_again_under_another_patient(running_gateway.port, tmp_path / "again")
    assert statuses == {0x0111}, "refused; the first copy is kept"
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        assert study.identity_disputed_at is not None
        assert study.patient_id != "CORRECTED-7"

    relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
    assert relay.run_once() == 0
    rows = output_rows(session_factory)
    assert [(row.status, row.last_error) for row in rows] == [
        (OutboxStatus.FAILED, HELD_REASON)
    ] * 2, "the SR and the ORU are held, visibly"
    assert report_destinations.stored_srs() == []
    assert ris.messages == []

    csrf = login(app_client, "attending")
    version = app_client.get(f"/api/reports/{report_id}").json()["version"]
    refused = app_client.post(
        f"/api/reports/{report_id}/sign", json=edit(version, "Signed."), headers=csrf
    )
    assert refused.status_code == 409
    assert "patient identity is disputed" in refused.text
    assert "Patient identity disputed" in app_client.get(f"/cases/{uid}").text
    (row,) = app_client.get("/api/worklist").json()
    assert row["identity_disputed"] is True
    (listed,) = app_client.get("/api/worklist", params={"status": "disputed"}).json()
    assert listed["study_instance_uid"] == uid, "the administrator finds what to decide"
    assert app_client.get(f"/api/studies/{uid}").json()["identity_disputed_at"] is not None
    assert "\nradraft_studies_identity_disputed 1\n" in _metrics(app_client, settings)

    retried = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "outbox", "retry", str(rows[0].id)],
        env={**os.environ, **settings_to_environment(settings)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert retried.returncode != 0
    assert "confirm-identity" in retried.stderr + retried.stdout, "a plain retry says what to do"

    confirmed = _confirm_identity(settings, uid, by="pacs-admin")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "2 held output(s) re-queued" in confirmed.stdout

    wait_until(lambda: relay.run_once() == 0 and all(
        row.status == OutboxStatus.DONE for row in output_rows(session_factory)
    ), timeout=120, what="the held outputs delivered")  # fmt: skip
    assert len(ris.messages) == 1
    assert len(report_destinations.stored_srs()) == 1

    second = _confirm_identity(settings, uid, by="someone")
    assert second.returncode != 0
    assert "not disputed" in second.stderr + second.stdout, "a second confirmation is refused"
    assert "Patient identity disputed" not in app_client.get(f"/cases/{uid}").text
    assert app_client.get("/api/worklist", params={"status": "disputed"}).json() == []
    assert "\nradraft_studies_identity_disputed 0\n" in _metrics(app_client, settings)
    signed = app_client.post(
        f"/api/reports/{report_id}/sign", json=edit(version, "Signed."), headers=csrf
    )
    assert signed.status_code == 200, signed.text
    with session_scope(session_factory) as session:
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == CONFIRMED_ACTION))
        assert (entry.actor, entry.object_id) == ("cli:pacs-admin", str(received_study.id))
        assert entry.details is not None
        assert entry.details["requeued"] == 2
