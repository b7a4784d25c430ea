"""Report API: read with revisions, lifecycle transitions, edit sessions and timing events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from radraft.enums import Role
from radraft.errors import ConflictError, NotFoundError
from radraft.models import EditSession, Report, ReportRevision, TimingEvent, User
from radraft.timeutil import utcnow
from reporting.lifecycle import (
    AMEND,
    MAX_SECTION_CHARACTERS,
    SEND_BACK,
    SIGN,
    SUBMIT,
    apply_transition,
)
from reporting.timing import StampedEvent, TimingEventType, derive_times
from reporting.web.deps import DbSession
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

    expected_version: int = Field(ge=0)
    findings: str = Field(max_length=MAX_SECTION_CHARACTERS)
    impression: str = Field(max_length=MAX_SECTION_CHARACTERS)


class TimingEventIn(BaseModel):
    """One browser event with the page's monotonic clock (performance.now(), ms)."""

    type: TimingEventType
    client_ms: float = Field(ge=0)
    payload: dict[str, Any] = Field(default_factory=dict)


class AutosaveIn(BaseModel):
    """Work in progress; ``base_version`` is the report version the editor started from."""

    base_version: int = Field(ge=0)
    findings: str = Field(max_length=MAX_SECTION_CHARACTERS)
    impression: str = Field(max_length=MAX_SECTION_CHARACTERS)


class AutosaveOut(BaseModel):
    """The stored work in progress of an edit session."""

    base_version: int
    findings: str
    impression: str
    saved_at: datetime


class SessionOut(BaseModel):
    """An edit session (resumed after a reload, with its autosaved text)."""

    id: int
    report_id: int
    resumed: bool
    autosave: AutosaveOut | None = None


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
def get_report(report_id: int, session: DbSession, actor: Reader) -> dict[str, Any]:
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
    "/reports/{report_id}/sessions",
    response_model=SessionOut,
    dependencies=[Depends(verify_csrf)],
)
def open_session(report_id: int, session: DbSession, user: Editor) -> SessionOut:
    """Open an edit session, or resume this reader's open one (a reload keeps the clock)."""
    _report(session, report_id)
    existing = session.scalar(
        select(EditSession)
        .where(
            EditSession.report_id == report_id,
            EditSession.user_id == user.id,
            EditSession.ended_at.is_(None),
            EditSession.study_read_id.is_(None),  # a timing-study read has its own session
        )
        .order_by(EditSession.id.desc())
    )
    if existing is not None:
        return SessionOut(
            id=existing.id, report_id=report_id, resumed=True, autosave=_autosave_out(existing)
        )
    opened = EditSession(report_id=report_id, user_id=user.id, role=user.role)
    session.add(opened)
    session.flush()
    audit(session, f"user:{user.id}", "report.edit_session_opened", "report", str(report_id))
    return SessionOut(id=opened.id, report_id=report_id, resumed=False)


@router.post(
    "/reports/{report_id}/{action}",
    response_model=RevisionOut,
    dependencies=[Depends(verify_csrf)],
)
def transition(
    report_id: int,
    action: Literal["submit", "sign", "send-back", "amend"],
    body: TransitionIn,
    session: DbSession,
    user: Annotated[User, Depends(current_user)],
) -> ReportRevision:
    """Submit (resident), sign or send back or amend (attending); 409 on a stale version.

    Registered after the fixed ``/sessions`` route, which would otherwise match ``{action}``.
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


def _autosave_out(edit_session: EditSession) -> AutosaveOut | None:
    if edit_session.autosaved_at is None or edit_session.autosave_base_version is None:
        return None
    return AutosaveOut(
        base_version=edit_session.autosave_base_version,
        findings=edit_session.autosave_findings or "",
        impression=edit_session.autosave_impression or "",
        saved_at=edit_session.autosaved_at,
    )


@router.get("/reports/{report_id}/diff", response_model=RevisionDiffOut)
def revision_diff(
    report_id: int, session: DbSession, actor: Reader, old: int, new: int
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


@router.put(
    "/sessions/{session_id}/autosave",
    response_model=AutosaveOut,
    dependencies=[Depends(verify_csrf)],
)
def autosave(session_id: int, body: AutosaveIn, session: DbSession, user: Editor) -> AutosaveOut:
    """Keep the editor's text so a reload or a crash loses no keystroke (not a revision)."""
    edit_session = _own_session(session, session_id, user)
    if edit_session.ended_at is not None:
        raise ConflictError("the edit session has ended")
    edit_session.autosave_findings = body.findings
    edit_session.autosave_impression = body.impression
    edit_session.autosave_base_version = body.base_version
    edit_session.autosaved_at = utcnow()
    audit(session, f"user:{user.id}", "report.autosaved", "report", str(edit_session.report_id))
    saved = _autosave_out(edit_session)
    assert saved is not None
    return saved


def _own_session(session: DbSession, session_id: int, user: User) -> EditSession:
    edit_session = session.get(EditSession, session_id)
    if edit_session is None or edit_session.user_id != user.id:
        raise NotFoundError("unknown edit session")
    return edit_session


@router.post("/sessions/{session_id}/events", dependencies=[Depends(verify_csrf)])
def post_events(
    session_id: int,
    events: Annotated[list[TimingEventIn], Field(max_length=MAX_EVENTS_PER_POST)],
    session: DbSession,
    user: Editor,
    request: Request,
) -> dict[str, int]:
    """Append timing events (never updated or deleted), each stamped on the server's clock.

    A batch arrives at once, so each event's server time is the arrival time less how much
    earlier than the batch's last event it happened on the page's monotonic clock.
    """
    edit_session = _own_session(session, session_id, user)
    if edit_session.ended_at is not None:
        raise ConflictError("the edit session has ended")
    now = utcnow()
    latest_ms = max((event.client_ms for event in events), default=0.0)
    for event in events:
        session.add(
            TimingEvent(
                edit_session_id=edit_session.id,
                event_type=event.type,
                client_monotonic_ms=event.client_ms,
                server_at=now - timedelta(milliseconds=latest_ms - event.client_ms),
                payload=event.payload,
            )
        )
        if event.type == TimingEventType.SUBMIT:
            edit_session.ended_at = now
    return {"stored": len(events)}


@router.get("/sessions/{session_id}/times")
def session_times(session_id: int, session: DbSession, user: Editor, request: Request) -> Any:
    """Derived times of one's own session."""
    edit_session = _own_session(session, session_id, user)
    events = [
        StampedEvent(TimingEventType(e.event_type), e.server_at, e.payload or {})
        for e in session.scalars(
            select(TimingEvent).where(TimingEvent.edit_session_id == edit_session.id)
        )
    ]
    threshold = request.app.state.settings.idle_threshold_seconds
    return derive_times(events, idle_threshold=threshold)
