"""Edit sessions: a reader's continuous work on one report, its autosave and its timing events.

A session is opened when a reader opens the editor and resumed after a reload, so the clock of
a timing study keeps running across reloads. Work in progress is autosaved into the session,
never as a revision. Timing events are appended raw, stamped on the server's clock, and never
changed; times are derived from them (``reporting/timing.py``) whenever they are asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import TimingEventType
from radraft.errors import ConflictError, NotFoundError
from radraft.models import EditSession, Report, TimingEvent, User
from reporting.timing import SessionTimes, StampedEvent, derive_times


class UnknownEditSessionError(NotFoundError):
    """No such edit session, or not the caller's."""


class EditSessionEndedError(ConflictError):
    """The session was ended by its submit; a new one must be opened."""


@dataclass(frozen=True)
class ClientEvent:
    """One event as the page sent it: its type and the page's monotonic clock in ms."""

    event_type: TimingEventType
    client_ms: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Autosave:
    """The stored work in progress of a session."""

    base_version: int
    findings: str
    impression: str
    saved_at: datetime


def open_or_resume(session: Session, report: Report, user: User) -> tuple[EditSession, bool]:
    """The reader's open clinical session of the report, or a new one; True if resumed.

    A timing-study read has sessions of its own (``study_read_id``), never resumed here.
    """
    existing = session.scalar(
        select(EditSession)
        .where(
            EditSession.report_id == report.id,
            EditSession.user_id == user.id,
            EditSession.ended_at.is_(None),
            EditSession.study_read_id.is_(None),
        )
        .order_by(EditSession.id.desc())
    )
    if existing is not None:
        return existing, True
    opened = EditSession(report_id=report.id, user_id=user.id, role=user.role)
    session.add(opened)
    session.flush()
    return opened, False


def own_session(session: Session, session_id: int, user: User) -> EditSession:
    """The caller's own session; another reader's is as unknown as a missing one."""
    edit_session = session.get(EditSession, session_id)
    if edit_session is None or edit_session.user_id != user.id:
        raise UnknownEditSessionError("unknown edit session")
    return edit_session


def _open(edit_session: EditSession) -> EditSession:
    if edit_session.ended_at is not None:
        raise EditSessionEndedError("the edit session has ended")
    return edit_session


def autosave_of(edit_session: EditSession) -> Autosave | None:
    """The session's work in progress, if any was saved."""
    if edit_session.autosaved_at is None or edit_session.autosave_base_version is None:
        return None
    return Autosave(
        base_version=edit_session.autosave_base_version,
        findings=edit_session.autosave_findings or "",
        impression=edit_session.autosave_impression or "",
        saved_at=edit_session.autosaved_at,
    )


def save_work_in_progress(
    edit_session: EditSession, *, base_version: int, findings: str, impression: str, now: datetime
) -> Autosave:
    """Keep the editor's text so a reload or a crash loses no keystroke (not a revision)."""
    _open(edit_session)
    edit_session.autosave_findings = findings
    edit_session.autosave_impression = impression
    edit_session.autosave_base_version = base_version
    edit_session.autosaved_at = now
    return Autosave(base_version, findings, impression, now)


def append_events(
    session: Session, edit_session: EditSession, events: Sequence[ClientEvent], *, now: datetime
) -> int:
    """Append timing events, each stamped on the server's clock; a submit ends the session.

    A batch arrives at once, so each event's server time is the arrival time less how much
    earlier than the batch's last event it happened on the page's monotonic clock.
    """
    _open(edit_session)
    latest_ms = max((event.client_ms for event in events), default=0.0)
    for event in events:
        session.add(
            TimingEvent(
                edit_session_id=edit_session.id,
                event_type=event.event_type,
                client_monotonic_ms=event.client_ms,
                server_at=now - timedelta(milliseconds=latest_ms - event.client_ms),
                payload=event.payload,
            )
        )
        if event.event_type == TimingEventType.SUBMIT:
            edit_session.ended_at = now
    return len(events)


def stamped(events: Iterable[TimingEvent]) -> list[StampedEvent]:
    """Stored events as the timing derivation takes them."""
    return [StampedEvent(e.event_type, e.server_at, e.payload or {}) for e in events]


def session_times(
    session: Session, edit_session: EditSession, *, idle_threshold: float
) -> SessionTimes:
    """Derived times of one session (active time without idle gaps, total, first input...)."""
    events = session.scalars(
        select(TimingEvent).where(TimingEvent.edit_session_id == edit_session.id)
    )
    return derive_times(stamped(events), idle_threshold=idle_threshold)
