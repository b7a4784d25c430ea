"""Edit-session API: open or resume a session, autosave, timing events, derived times.

Routes parse the body, call ``reporting.edit_sessions`` and map the result; the rules (resume
after a reload, stamping, a submit ends the session) live there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from radraft.enums import Role, TimingEventType
from radraft.errors import NotFoundError
from radraft.models import Report, User
from radraft.timeutil import utcnow
from reporting.edit_sessions import (
    ClientEvent,
    append_events,
    autosave_of,
    open_or_resume,
    own_session,
    save_work_in_progress,
    session_times,
)
from reporting.lifecycle import MAX_SECTION_CHARACTERS
from reporting.web.deps import MAX_ROW_ID, DbSession, RowId
from reporting.web.security import audit, require_roles, verify_csrf

router = APIRouter(prefix="/api", tags=["edit sessions"])
Editor = Annotated[User, Depends(require_roles(Role.RESIDENT, Role.ATTENDING))]
MAX_EVENTS_PER_POST = 500
MAX_CLIENT_MS = 10**12
"""performance.now() of a page open for 31 years; anything larger is not a real clock."""


class TimingEventIn(BaseModel):
    """One browser event with the page's monotonic clock (performance.now(), ms)."""

    type: TimingEventType
    client_ms: float = Field(ge=0, le=MAX_CLIENT_MS)
    payload: dict[str, Any] = Field(default_factory=dict)


class AutosaveIn(BaseModel):
    """Work in progress; ``base_version`` is the report version the editor started from."""

    base_version: int = Field(ge=0, le=MAX_ROW_ID)
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


@router.post(
    "/reports/{report_id}/sessions",
    response_model=SessionOut,
    dependencies=[Depends(verify_csrf)],
)
def open_session(report_id: RowId, session: DbSession, user: Editor) -> SessionOut:
    """Open an edit session, or resume this reader's open one (a reload keeps the clock)."""
    report = session.get(Report, report_id)
    if report is None:
        raise NotFoundError("unknown report")
    edit_session, resumed = open_or_resume(session, report, user)
    if not resumed:
        audit(session, f"user:{user.id}", "report.edit_session_opened", "report", str(report_id))
    saved = autosave_of(edit_session)
    return SessionOut(
        id=edit_session.id,
        report_id=report_id,
        resumed=resumed,
        autosave=AutosaveOut(**saved.__dict__) if saved else None,
    )


@router.put(
    "/sessions/{session_id}/autosave",
    response_model=AutosaveOut,
    dependencies=[Depends(verify_csrf)],
)
def autosave(session_id: RowId, body: AutosaveIn, session: DbSession, user: Editor) -> AutosaveOut:
    """Keep the editor's text so a reload or a crash loses no keystroke (not a revision)."""
    edit_session = own_session(session, session_id, user)
    saved = save_work_in_progress(
        edit_session,
        base_version=body.base_version,
        findings=body.findings,
        impression=body.impression,
        now=utcnow(),
    )
    audit(session, f"user:{user.id}", "report.autosaved", "report", str(edit_session.report_id))
    return AutosaveOut(**saved.__dict__)


@router.post("/sessions/{session_id}/events", dependencies=[Depends(verify_csrf)])
def post_events(
    session_id: RowId,
    events: Annotated[list[TimingEventIn], Field(max_length=MAX_EVENTS_PER_POST)],
    session: DbSession,
    user: Editor,
) -> dict[str, int]:
    """Append timing events (never updated or deleted), each stamped on the server's clock."""
    edit_session = own_session(session, session_id, user)
    stored = append_events(
        session,
        edit_session,
        [ClientEvent(event.type, event.client_ms, event.payload) for event in events],
        now=utcnow(),
    )
    return {"stored": stored}


@router.get("/sessions/{session_id}/times")
def times(session_id: RowId, session: DbSession, user: Editor, request: Request) -> Any:
    """Derived times of one's own session."""
    edit_session = own_session(session, session_id, user)
    threshold = request.app.state.settings.idle_threshold_seconds
    return session_times(session, edit_session, idle_threshold=threshold)
