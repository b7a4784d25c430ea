"""Routine timing data: one row per clinical edit session, for a department's own monitoring.

Every time a resident or attending opens a case, the browser's timing events are stored; this
module turns each clinical session (reader-study reads have their own analysis) into a row:
who (user id and role, no name), what they started from (a model draft, a resident's report, an
empty report), what they produced (the revision and its state), the derived times and how much
they changed the text. No patient, study or report text leaves the database. Routine data is
observational (cases are not randomised to drafts), so it monitors; the reader study measures.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.models import AuditEntry, EditSession, ReportRevision, TimingEvent
from radraft.timeutil import utcnow
from reporting.edit_sessions import stamped
from reporting.reader_study.analysis.textmetrics import report_diff_percent, word_edit_rate
from reporting.timing import StampedEvent, derive_times

COLUMNS = (
    "session_id", "report_id", "reader_id", "role", "started_at",
    "start_revision", "start_source", "start_demo_model", "result_revision", "result_state",
    "total_s", "active_s", "time_to_first_input_s", "edit_s", "keystrokes",
    "characters_inserted", "characters_deleted", "pasted",
    "report_diff_percent", "word_edit_rate", "accepted_unchanged",
)  # fmt: skip


def clinical_session_rows(
    session: Session, *, idle_threshold: float, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Rows of every clinical edit session (started at or after ``since``), oldest first."""
    query = select(EditSession).where(EditSession.study_read_id.is_(None))
    if since is not None:
        query = query.where(EditSession.started_at >= since)
    sessions = list(session.scalars(query.order_by(EditSession.started_at, EditSession.id)))
    rows = []
    next_start: dict[tuple[int, int], datetime] = {}
    revisions_of: dict[int, list[ReportRevision]] = {}
    for edit_session in reversed(sessions):  # when this reader's next session of the report began
        key = (edit_session.report_id, edit_session.user_id)
        until = next_start.get(key)
        next_start[key] = edit_session.started_at
        if edit_session.report_id not in revisions_of:  # a report read by several sessions
            revisions_of[edit_session.report_id] = list(
                session.scalars(
                    select(ReportRevision)
                    .where(ReportRevision.report_id == edit_session.report_id)
                    .order_by(ReportRevision.number)
                )
            )
        revisions = revisions_of[edit_session.report_id]
        events = session.scalars(
            select(TimingEvent).where(TimingEvent.edit_session_id == edit_session.id)
        )
        rows.append(_row(edit_session, until, revisions, stamped(events), idle_threshold))
    return sorted(rows, key=lambda row: int(row["session_id"]))


def _row(
    edit_session: EditSession,
    until: datetime | None,
    revisions: Sequence[ReportRevision],
    events: Sequence[StampedEvent],
    idle_threshold: float,
) -> dict[str, Any]:
    # the reader's first revision of the report in this session, before their next session
    result = next(
        (r for r in revisions
         if r.author_user_id == edit_session.user_id and r.created_at >= edit_session.started_at
         and (until is None or r.created_at < until)),
        None,
    )  # fmt: skip
    if result is not None:  # a submission is made against the version it was edited from
        earlier = [r for r in revisions if r.number < result.number]
    else:
        earlier = [r for r in revisions if r.created_at <= edit_session.started_at]
    start = earlier[-1] if earlier else None
    times = derive_times(events, idle_threshold=idle_threshold)
    before = _text(start)
    after = _text(result)
    compared = result is not None and bool(before)
    return {
        "session_id": edit_session.id,
        "report_id": edit_session.report_id,
        "reader_id": edit_session.user_id,
        "role": edit_session.role,
        "started_at": edit_session.started_at.isoformat(),
        "start_revision": start.number if start else None,
        "start_source": _source(start),
        "start_demo_model": bool(start and start.demo_model),
        "result_revision": result.number if result else None,
        "result_state": result.state if result else None,
        **times.columns(),
        "report_diff_percent": report_diff_percent(before, after) if compared else None,
        "word_edit_rate": word_edit_rate(before, after) if compared else None,
        "accepted_unchanged": (before == after) if compared else None,
    }


def _text(revision: ReportRevision | None) -> str:
    if revision is None:
        return ""
    return f"{revision.findings}\n{revision.impression}".strip()


def _source(revision: ReportRevision | None) -> str:
    """Who wrote what the reader started from: model, resident, attending or none."""
    if revision is None:
        return "none"
    if revision.author_role:
        return revision.author_role
    return "model" if revision.model_name else "none"


def export_csv(
    session: Session, *, idle_threshold: float, since: datetime | None = None, actor: str
) -> str:
    """The rows as CSV; the export itself is audited (it is research data about readers)."""
    rows = clinical_session_rows(session, idle_threshold=idle_threshold, since=since)
    session.add(
        AuditEntry(
            at=utcnow(),
            actor=actor,
            action="timing.exported",
            object_type="edit_sessions",
            object_id=str(len(rows)),
            details={"since": since.isoformat() if since else None},
        )
    )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
