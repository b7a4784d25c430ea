"""An order found by the study's accession number is used only if it names the study's patient.

A mistyped accession number at the modality, or one issued by two RIS, found another patient's
order: its reason for exam reached the prompt and the case page, and its order numbers the SR
and the ORU, under which the RIS files the report. Now such an order is used nowhere, and the
drafting says so in the audit log, the log and ``/metrics``.
"""

from __future__ import annotations

import logging
from typing import Any

import hl7
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import AuditAction
from radraft.models import AuditEntry, DraftingJob, Order, Study
from radraft.orders import indication_for
from radraft.settings import Settings
from radraft.timeutil import utcnow
from reporting.delivery.outputs import build_oru_message, build_sr_dataset, load_bundle
from tests.reporting.factories import full_history
from tests.reporting.web_support import login
from worker.drafting import take_job

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def _add_order(session: Session, study: Study, patient_ids: list[str]) -> None:
    assert study.accession_number, "the synthetic study has an accession number"
    session.add(
        Order(
            accession_number=study.accession_number,
            placer_order_number="PLC-9",
            filler_order_number="FIL-9",
            message_type="ORM^O01",
            order_control="NW",
            reason_for_exam="Order reason: fever",
            procedure={"code": "71046", "meaning": "XR CHEST 2 VIEWS", "scheme": "CPT"},
            patient_class="I",
            patient_ids=patient_ids,
            raw_message="MSH|",
        )
    )


def _outputs(session: Session, study: Study, settings: Settings) -> tuple[str, str, str]:
    """The SR's placer order number, and the ORU's OBR-2 and PV1-2, of the study's draft."""
    draft = full_history(session, study)[0]
    session.flush()
    bundle = load_bundle(session, draft.id, spool_dir=settings.spool_dir)
    request = build_sr_dataset(bundle, settings).ReferencedRequestSequence[0]
    oru = hl7.parse(build_oru_message(bundle, settings, control_id="C1", now=utcnow()))
    return (
        str(request.PlacerOrderNumberImagingServiceRequest),
        str(oru.segment("OBR")[2]),
        str(oru.segment("PV1")[2]),
    )


def test_an_order_naming_the_study_s_patient_among_its_identifiers_is_used(
    received_study: Study, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        assert study.patient_id
        _add_order(session, study, ["NATIONAL-1", study.patient_id])
        indication = indication_for(session, study)
        assert (indication.text, indication.source) == ("Order reason: fever", "HL7 order")
        assert not indication.order_of_other_patient
        assert _outputs(session, study, settings) == ("PLC-9", "PLC-9", "I")


def test_another_patient_s_order_is_used_nowhere_and_drafting_reports_it(
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
    app_client: TestClient,
    world: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:

    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        assert study.patient_id
        _add_order(session, study, ["SOMEONE-ELSE"])
        assert _outputs(session, study, settings) == ("", "", "U"), "no order numbers, class"
        job = DraftingJob(study_id=study.id, content_version=study.content_version + 1)
        session.add(job)
        session.flush()
        with caplog.at_level(logging.WARNING):
            inputs = take_job(session, job.id, worker="w1", now=utcnow(), lease_seconds=60.0)
        assert inputs is not None
        assert "Order reason" not in inputs.indication, "the prompt never sees its reason"
        study_id, patient_id = study.id, study.patient_id
    with session_scope(session_factory) as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == AuditAction.ORDER_OF_OTHER_PATIENT)
        ).all()
        assert [(e.object_type, e.object_id) for e in entries] == [("study", str(study_id))]
    warned = [r.getMessage() for r in caplog.records if "order_of_other_patient" in r.getMessage()]
    assert len(warned) == 1
    assert f"study_id={study_id}" in warned[0]
    assert "SOMEONE-ELSE" not in caplog.text
    assert patient_id not in caplog.text

    metrics = app_client.get("/metrics", headers={"Authorization": "Bearer test-service-token"})
    assert "\nradraft_orders_of_other_patients 1\n" in metrics.text
    login(app_client, "resident")
    page = app_client.get(f"/cases/{received_study.study_instance_uid}").text
    assert "HL7 order not used" in page
    assert "Order reason" not in page
