"""``GET /api/worklist``: what the worklist page shows, filtered, newest first.

The page polls it, so it answers from a couple of indexed queries and never touches the spool.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import func, or_, select

from radraft.enums import StudyStatus
from radraft.errors import InvalidInputError
from radraft.models import Instance, Report, Study
from radraft.timeutil import utcnow
from reporting.web.deps import DbSession
from reporting.web.security import CurrentUser

router = APIRouter(prefix="/api", tags=["worklist"])
WORKLIST_STATUSES = {
    "waiting": (StudyStatus.RECEIVING, StudyStatus.QUEUED),
    "drafting": (StudyStatus.DRAFTING,),
    "drafted": (StudyStatus.DRAFTED,),
    "preliminary": (StudyStatus.PRELIMINARY,),
    "final": (StudyStatus.FINAL, StudyStatus.AMENDED),
    "failed": (StudyStatus.FAILED,),
}
"""The worklist's words for study states (a reader does not care how a study waits)."""
WITHDRAWN = "withdrawn"
"""The worklist's word for a study withdrawn as another patient's, whatever its state: it is
not to be reported here, so it leaves every other filter."""
DISPUTED = "disputed"
"""A filter, not a state: the studies whose patient identity is disputed and not yet decided
(confirmed or withdrawn), whatever their state, for the administrator who decides them."""
WORKLIST_FILTERS = (*WORKLIST_STATUSES, DISPUTED, WITHDRAWN)


class WorklistRow(BaseModel):
    """One study on the worklist."""

    study_instance_uid: str
    accession_number: str | None
    patient_name: str | None
    study_description: str | None
    status: str
    worklist_status: str
    priority: int
    received_at: datetime
    age_seconds: float
    images: int
    report_id: int | None
    identity_disputed: bool = False
    """The sender has since contradicted the study's Patient ID: not to be signed as it is."""
    withdrawn: bool = False
    """Its reports were withdrawn as another patient's: nothing to report here."""


def worklist_status(status: str) -> str:
    """The worklist word for a study status; a study radraft will not draft shows as is."""
    for word, statuses in WORKLIST_STATUSES.items():
        if status in statuses:
            return word
    return status


@router.get("/worklist", response_model=list[WorklistRow])
def worklist(
    session: DbSession,
    user: CurrentUser,
    status: Annotated[
        str | None, Query(description="waiting, drafting, drafted, ..., disputed, withdrawn")
    ] = None,
    text: Annotated[str | None, Query(max_length=64, description="accession or name")] = None,
    min_priority: Annotated[int | None, Query(ge=-1000, le=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[WorklistRow]:
    """Studies newest first, with their report id once drafted; 422 for an unknown status."""
    query = select(Study).order_by(Study.priority.desc(), Study.last_received_at.desc())
    if status == WITHDRAWN:
        query = query.where(Study.withdrawn_at.is_not(None))
    elif status == DISPUTED:
        query = query.where(Study.identity_disputed_at.is_not(None), Study.withdrawn_at.is_(None))
    elif status is not None:
        if status not in WORKLIST_STATUSES:
            raise InvalidInputError(f"unknown worklist status {status!r}")
        query = query.where(
            Study.status.in_(WORKLIST_STATUSES[status]), Study.withdrawn_at.is_(None)
        )
    if text:
        pattern = f"%{text}%"
        query = query.where(
            or_(Study.accession_number.ilike(pattern), Study.patient_name.ilike(pattern))
        )
    if min_priority is not None:
        query = query.where(Study.priority >= min_priority)
    studies = session.scalars(query.limit(limit)).all()
    ids = [study.id for study in studies]
    images = dict(
        session.execute(
            select(Instance.study_id, func.count())
            .where(Instance.study_id.in_(ids))
            .group_by(Instance.study_id)
        ).all()
    )
    reports = dict(
        session.execute(
            select(Report.study_id, func.max(Report.id))
            .where(Report.study_id.in_(ids))
            .group_by(Report.study_id)
        ).all()
    )
    now = utcnow()
    return [
        WorklistRow(
            study_instance_uid=study.study_instance_uid,
            accession_number=study.accession_number,
            patient_name=study.patient_name,
            study_description=study.study_description,
            status=study.status,
            worklist_status=WITHDRAWN if study.withdrawn_at else worklist_status(study.status),
            priority=study.priority,
            received_at=study.last_received_at,
            age_seconds=(now - study.first_received_at).total_seconds(),
            images=images.get(study.id, 0),
            report_id=reports.get(study.id),
            identity_disputed=study.identity_disputed_at is not None,
            withdrawn=study.withdrawn_at is not None,
        )
        for study in studies
    ]
