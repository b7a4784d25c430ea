"""Report API: a report with its revisions, lifecycle transitions, word diffs of revisions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from radraft.enums import Role
from radraft.errors import NotFoundError
from radraft.models import Report, ReportRevision, User
from radraft.timeutil import utcnow
from reporting.lifecycle import (
    AMEND,
    MAX_SECTION_CHARACTERS,
    SEND_BACK,
    SIGN,
    SUBMIT,
    apply_transition,
)
from reporting.web.deps import MAX_ROW_ID, DbSession, RevisionNumber, RowId
from reporting.web.security import Reader, audit, current_user, require_roles, verify_csrf
from reporting.worddiff import word_diff

router = APIRouter(prefix="/api", tags=["reports"])
TRANSITIONS = {"submit": SUBMIT, "sign": SIGN, "send-back": SEND_BACK, "amend": AMEND}
Editor = Annotated[User, Depends(require_roles(Role.RESIDENT, Role.ATTENDING))]
MAX_EVENTS_PER_POST = 500


class RevisionOut(BaseModel):
    """One stored revision; a model draft names no person."""

    number: int
    state: str
    findings: str
    impression: str
    author_user_id: int | None
    author_role: str | None
    author_name: str | None = None
    source_label: str | None = None
    created_at: datetime


class ReportDetailOut(BaseModel):
    """A report with its whole history."""

    id: int
    study_id: int
    state: str
    version: int
    revisions: list[RevisionOut]


class TransitionIn(BaseModel):
    """An edit to store; ``expected_version`` is the version the editor started from."""

    expected_version: int = Field(ge=0, le=MAX_ROW_ID)
    findings: str = Field(max_length=MAX_SECTION_CHARACTERS)
    impression: str = Field(max_length=MAX_SECTION_CHARACTERS)


class DiffPieceOut(BaseModel):
    """A run of words both revisions share (equal) or only one has (insert, delete)."""

    op: str
    text: str


class RevisionDiffOut(BaseModel):
    """The word diff of two revisions, per section."""

    old: int
    new: int
    findings: list[DiffPieceOut]
    impression: list[DiffPieceOut]


def _report(session: DbSession, report_id: int) -> Report:
    report = session.get(Report, report_id)
    if report is None:
        raise NotFoundError("unknown report")
    return report


@router.get("/reports/{report_id}", response_model=ReportDetailOut)
def get_report(report_id: RowId, session: DbSession, actor: Reader) -> dict[str, Any]:
    """The report and its revisions; every view is audited."""
    report = _report(session, report_id)
    revisions = session.scalars(
        select(ReportRevision)
        .where(ReportRevision.report_id == report.id)
        .order_by(ReportRevision.number)
    ).all()
    audit(session, actor, "report.viewed", "report", str(report.id))
    return {
        "id": report.id,
        "study_id": report.study_id,
        "state": report.state,
        "version": report.version,
        "revisions": [_revision_out(session, revision) for revision in revisions],
    }


def _revision_out(session: DbSession, revision: ReportRevision) -> RevisionOut:
    """A revision with its author's name, or what wrote it when no person did."""
    out = RevisionOut.model_validate(revision, from_attributes=True)
    if revision.author_user_id is not None:
        author = session.get(User, revision.author_user_id)
        out.author_name = (author.full_name or author.username) if author else None
    elif revision.model_name:
        out.source_label = "demo model draft" if revision.demo_model else "model draft"
    return out


@router.post(
    "/reports/{report_id}/{action}",
    response_model=RevisionOut,
    dependencies=[Depends(verify_csrf)],
)
def transition(
    report_id: RowId,
    action: Literal["submit", "sign", "send-back", "amend"],
    body: TransitionIn,
    session: DbSession,
    user: Annotated[User, Depends(current_user)],
) -> ReportRevision:
    """Submit (resident), sign or send back or amend (attending); 409 on a stale version.

    The app includes the edit-session router first: its fixed ``/sessions`` path would
    otherwise be taken for an ``{action}``.
    """
    _report(session, report_id)
    return apply_transition(
        session,
        report_id,
        TRANSITIONS[action],
        user=user,
        expected_version=body.expected_version,
        findings=body.findings,
        impression=body.impression,
        now=utcnow(),
    )


@router.get("/reports/{report_id}/diff", response_model=RevisionDiffOut)
def revision_diff(
    report_id: RowId,
    session: DbSession,
    actor: Reader,
    old: RevisionNumber,
    new: RevisionNumber,
) -> RevisionDiffOut:
    """Word-level differences between revisions ``old`` and ``new`` of a report."""
    _report(session, report_id)
    found = {
        revision.number: revision
        for revision in session.scalars(
            select(ReportRevision).where(
                ReportRevision.report_id == report_id, ReportRevision.number.in_((old, new))
            )
        )
    }
    if old not in found or new not in found:
        raise NotFoundError("unknown revision number")
    audit(session, actor, "report.viewed", "report", str(report_id))

    def pieces(old_text: str, new_text: str) -> list[DiffPieceOut]:
        return [DiffPieceOut(op=p.op, text=p.text) for p in word_diff(old_text, new_text)]

    return RevisionDiffOut(
        old=old,
        new=new,
        findings=pieces(found[old].findings, found[new].findings),
        impression=pieces(found[old].impression, found[new].impression),
    )
