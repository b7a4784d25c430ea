"""Read-only study API: ``GET /api/studies`` and ``GET /api/studies/{study_instance_uid}``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from radraft.db import get_row
from radraft.errors import NotFoundError
from radraft.models import Instance, Report, ReportRevision, Study
from reporting.web.deps import DbSession
from reporting.web.security import Reader, audit, reader

router = APIRouter(prefix="/api/studies", tags=["studies"], dependencies=[Depends(reader)])


class JobOut(BaseModel):
    """A drafting job of the study."""

    id: int
    content_version: int
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class InstanceOut(BaseModel):
    """A received instance and how the gateway classified it."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str | None
    body_part_examined: str | None
    view_position: str | None
    view_source: str | None
    is_chest: bool
    classification_reason: str
    size_bytes: int
    received_at: datetime


class StudyOut(BaseModel):
    """A study as listed; ``eligible`` is null until the study is complete."""

    study_instance_uid: str
    status: str
    eligible: bool | None
    eligibility_reason: str | None
    priority: int
    instance_count: int
    first_received_at: datetime
    last_received_at: datetime
    completed_at: datetime | None
    identity_disputed_at: datetime | None
    """Since when the sender has contradicted the study's Patient ID (null: not disputed); no
    signing and no SR or ORU until an administrator confirms it."""
    withdrawn_at: datetime | None
    """When an administrator withdrew the study's reports as another patient's (null: not
    withdrawn); its report is closed."""
    patient_corrections: int
    """How many times an administrator moved the study to the patient its sender named since
    (``radraft study correct-patient``); what went out before under another patient was
    withdrawn, and the report was sent again under this one."""
    jobs: list[JobOut]


class ModelOut(BaseModel):
    """The model that wrote a draft."""

    name: str
    revision: str | None
    weights_hash: str | None


class ReportOut(BaseModel):
    """The study's report at its newest revision; ``demo`` marks a random-weight demo model."""

    id: int
    version: int
    status: str
    revision: int
    findings: str
    impression: str
    model: ModelOut | None
    demo: bool
    created_at: datetime


class StudyDetailOut(StudyOut):
    """One study with its instances and its report (null until drafted)."""

    instances: list[InstanceOut]
    report: ReportOut | None


def _study_out(study: Study, instance_count: int) -> dict[str, object]:
    return {
        "study_instance_uid": study.study_instance_uid,
        "status": study.status,
        "eligible": study.eligible,
        "eligibility_reason": study.eligibility_reason,
        "priority": study.priority,
        "instance_count": instance_count,
        "first_received_at": study.first_received_at,
        "last_received_at": study.last_received_at,
        "completed_at": study.completed_at,
        "identity_disputed_at": study.identity_disputed_at,
        "withdrawn_at": study.withdrawn_at,
        "patient_corrections": study.patient_corrections,
        "jobs": [JobOut.model_validate(job, from_attributes=True) for job in study.jobs],
    }


@router.get("", response_model=list[StudyOut])
def list_studies(
    session: DbSession, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[dict[str, object]]:
    """Studies, newest first."""
    studies = session.scalars(
        select(Study)
        .options(selectinload(Study.jobs), selectinload(Study.instances))
        .order_by(Study.last_received_at.desc())
        .limit(limit)
    ).all()
    return [_study_out(study, len(study.instances)) for study in studies]


@router.get("/{study_instance_uid}", response_model=StudyDetailOut)
def get_study(study_instance_uid: str, session: DbSession, actor: Reader) -> dict[str, object]:
    """One study with its instances and its report (a view of the report, audited); 404 if
    radraft never received it."""
    study = session.scalar(
        select(Study)
        .where(Study.study_instance_uid == study_instance_uid)
        .options(selectinload(Study.jobs))
    )
    if study is None:
        raise NotFoundError("unknown study")
    instances = session.scalars(
        select(Instance).where(Instance.study_id == study.id).order_by(Instance.id)
    ).all()
    body = _study_out(study, len(instances))
    body["instances"] = [InstanceOut.model_validate(i, from_attributes=True) for i in instances]
    report = _report_out(session, study)
    if report is not None:
        audit(session, actor, "report.viewed", "report", str(report.id))
    body["report"] = report
    return body


def _report_out(session: DbSession, study: Study) -> ReportOut | None:
    revision = session.scalar(
        select(ReportRevision)
        .join(Report)
        .where(Report.study_id == study.id)
        .order_by(Report.id.desc(), ReportRevision.number.desc())
    )
    if revision is None:
        return None
    model = None
    if revision.model_name:
        model = ModelOut(
            name=revision.model_name,
            revision=revision.model_revision,
            weights_hash=revision.model_weights_hash,
        )
    report = get_row(session, Report, revision.report_id)
    return ReportOut(
        id=report.id,
        version=report.version,
        status=revision.state,
        revision=revision.number,
        findings=revision.findings,
        impression=revision.impression,
        model=model,
        demo=revision.demo_model,
        created_at=revision.created_at,
    )
