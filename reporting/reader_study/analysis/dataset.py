"""A study's reads and timing events as tidy tables, straight from the database.

One row per read with its arm, position, derived times (``reporting.timing``), edit metrics
and feedback; one row per stored timing event. Practice reads are kept but flagged; the
analysis drops them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import Arm, ReadStatus, Role
from radraft.models import (
    EditSession,
    ReaderStudy,
    Study,
    StudyCase,
    StudyRead,
    StudyReader,
    TimingEvent,
    User,
)
from reporting.edit_sessions import stamped
from reporting.reader_study.analysis.textmetrics import (
    bleu4,
    report_diff_percent,
    rouge_l,
    word_edit_rate,
)
from reporting.reader_study.arms import REFERENCE_ARM, draft_source
from reporting.timing import derive_times


def load_tables(
    session: Session, study: ReaderStudy, *, idle_threshold: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reads, events) of every submitted read of ``study``."""
    rows = session.execute(
        select(StudyRead, User.username, StudyReader.role, Study.study_instance_uid)
        .join(StudyReader, StudyRead.reader_id == StudyReader.id)
        .join(User, StudyReader.user_id == User.id)
        .join(StudyCase, StudyRead.case_id == StudyCase.id)
        .join(Study, StudyCase.study_id == Study.id)
        .where(StudyRead.reader_study_id == study.id, StudyRead.status == ReadStatus.DONE)
        .order_by(StudyRead.id)
    ).all()
    reads: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for read, username, role, case_uid in rows:
        read_events = list(
            session.scalars(
                select(TimingEvent)
                .join(EditSession, TimingEvent.edit_session_id == EditSession.id)
                .where(EditSession.study_read_id == read.id)
                .order_by(TimingEvent.server_at)
            )
        )
        events.extend(
            {
                "read_id": read.id,
                "event_type": event.event_type,
                "server_at": event.server_at,
                "client_ms": event.client_monotonic_ms,
                "payload": event.payload,
            }
            for event in read_events
        )
        reads.append(_read_row(read, username, role, case_uid, read_events, idle_threshold))
    return pd.DataFrame(reads), pd.DataFrame(events)


def _read_row(
    read: StudyRead,
    reader: str,
    role: str,
    case: str,
    events: list[TimingEvent],
    idle_threshold: float,
) -> dict[str, Any]:
    times = derive_times(
        stamped(events),
        idle_threshold=idle_threshold,
    )
    draft = f"{read.draft_findings or ''}\n{read.draft_impression or ''}".strip()
    final = f"{read.final_findings or ''}\n{read.final_impression or ''}".strip()
    feedback = read.feedback or {}
    has_draft = bool(draft)
    return {
        "read_id": read.id,
        "reader": reader,
        "role": role,
        "case": case,
        "arm": read.arm,
        "draft_source": draft_source(Arm(read.arm)),
        "position": read.position,
        "practice": read.practice,
        "source_read_id": read.source_read_id,
        **times.columns(),
        "report_diff_percent": report_diff_percent(draft, final) if has_draft else None,
        "word_edit_rate": word_edit_rate(draft, final) if has_draft else None,
        "bleu4": bleu4(draft, final) if has_draft else None,
        "rouge_l": rouge_l(draft, final) if has_draft else None,
        "accepted_unchanged": (draft == final) if has_draft else None,
        "edit_reasons": ";".join(feedback.get("edit_reasons", [])),
        "helps_answer_indication": feedback.get("helps_answer_indication"),
        "efficiency": feedback.get("efficiency"),
        "thinks_model_wrote_draft": feedback.get("thinks_model_wrote_draft"),
        "free_text": feedback.get("free_text", ""),
    }


def analysed_reads(reads: pd.DataFrame) -> pd.DataFrame:
    """The reads an analysis uses: practice reads and reads without active time left out."""
    analysed = reads[~reads["practice"].astype(bool)]
    return analysed[analysed["active_s"] > 0].copy()


def comparable_reads(analysed: pd.DataFrame, role: Role) -> pd.DataFrame | None:
    """One role's analysed reads, if they hold its reference arm and at least one other arm."""
    own = analysed[analysed["role"] == role]
    if own.empty or REFERENCE_ARM[role] not in set(own["arm"]) or own["arm"].nunique() < 2:
        return None
    return own
