"""Timing-study API: a reader's blinded reads, and the study set-up for admins.

A reader only ever sees their own reads (404 for anyone else's) and never the arm or the
draft's source; researchers and admins see the allocation, never through these reader routes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from radraft.enums import ReadStatus, Role
from radraft.errors import NotFoundError
from radraft.models import ReaderStudy, StudyRead, User
from radraft.timeutil import utcnow
from reporting.lifecycle import MAX_SECTION_CHARACTERS
from reporting.reader_study.enrolment import create_reader_study
from reporting.reader_study.export import allocation_rows
from reporting.reader_study.protocol import parse_protocol
from reporting.reader_study.reads import (
    FeedbackIn,
    ReadView,
    give_feedback,
    next_read,
    open_read_session,
    own_read,
    read_view,
    submit_read,
)
from reporting.web.deps import DbSession, RowId
from reporting.web.security import require_roles, verify_csrf

router = APIRouter(prefix="/api", tags=["timing study"])
ReaderUser = Annotated[User, Depends(require_roles(Role.RESIDENT, Role.ATTENDING))]
Organiser = Annotated[User, Depends(require_roles(Role.ADMIN, Role.RESEARCHER))]
Admin = Annotated[User, Depends(require_roles(Role.ADMIN))]


class ReadTextIn(BaseModel):
    """The reader's report at submit."""

    findings: str = Field(max_length=MAX_SECTION_CHARACTERS)
    impression: str = Field(max_length=MAX_SECTION_CHARACTERS)


class ProtocolIn(BaseModel):
    """A protocol as YAML text (the same file ``radraft reader-study create`` reads)."""

    protocol: str = Field(min_length=1, max_length=1_000_000)


@router.get("/reading/next")
def reading_next(session: DbSession, user: ReaderUser) -> dict[str, int | None]:
    """The reader's next read (its feedback form first, if one is still open)."""
    read = next_read(session, user)
    return {"read_id": read.id if read else None}


@router.get("/reading/{read_id}", response_model=ReadView)
def reading_view(read_id: RowId, session: DbSession, user: ReaderUser) -> ReadView:
    """The blinded case and draft."""
    read = own_read(session, read_id, user)
    return read_view(session, read, user)


@router.post("/reading/{read_id}/session", dependencies=[Depends(verify_csrf)])
def reading_session(read_id: RowId, session: DbSession, user: ReaderUser) -> dict[str, Any]:
    """Open (or resume after a reload) the read's edit session for timing events."""
    read = own_read(session, read_id, user)
    edit_session, resumed = open_read_session(session, read, user)
    return {"id": edit_session.id, "resumed": resumed}


@router.post("/reading/{read_id}/submit", dependencies=[Depends(verify_csrf)])
def reading_submit(
    read_id: RowId, body: ReadTextIn, session: DbSession, user: ReaderUser
) -> dict[str, str]:
    """Store the read's report (the timing stops at the page's submit event)."""
    read = own_read(session, read_id, user)
    submit_read(session, read, user, body.findings, body.impression, utcnow())
    return {"status": ReadStatus.DONE}


@router.post("/reading/{read_id}/feedback", dependencies=[Depends(verify_csrf)])
def reading_feedback(
    read_id: RowId, body: FeedbackIn, session: DbSession, user: ReaderUser
) -> dict[str, str]:
    """The form after submit (not timed), once."""
    read = own_read(session, read_id, user)
    give_feedback(session, read, user, body)
    return {"status": "stored"}


@router.post("/reader-studies", status_code=201, dependencies=[Depends(verify_csrf)])
def create_reader_study_route(body: ProtocolIn, session: DbSession, admin: Admin) -> dict[str, Any]:
    """Create a study from a YAML protocol; 422 with every problem if it cannot run."""
    study = create_reader_study(session, parse_protocol(body.protocol))
    reads = session.scalar(
        select(func.count()).select_from(StudyRead).where(StudyRead.reader_study_id == study.id)
    )
    return {"name": study.name, "reads": reads}


@router.get("/reader-studies")
def list_reader_studies(session: DbSession, user: Organiser) -> list[dict[str, Any]]:
    """Studies with their progress."""
    studies = session.scalars(select(ReaderStudy).order_by(ReaderStudy.id)).all()
    result = []
    for study in studies:
        statuses = dict(
            session.execute(
                select(StudyRead.status, func.count())
                .where(StudyRead.reader_study_id == study.id)
                .group_by(StudyRead.status)
            ).all()
        )
        result.append({"name": study.name, "seed": study.seed, "reads": statuses})
    return result


@router.get("/reader-studies/{name}/allocation")
def allocation(name: str, session: DbSession, user: Organiser) -> list[dict[str, Any]]:
    """The allocation table (reader, case, arm, position, source), for audit and export."""
    study = session.scalar(select(ReaderStudy).where(ReaderStudy.name == name))
    if study is None:
        raise NotFoundError("unknown study")
    return allocation_rows(session, study)
