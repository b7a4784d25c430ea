"""A reader's side of a timing study: the next read, its blinded view, submit, feedback.

Nothing here tells the reader what wrote a draft: the view has the case, the text and the
label "Draft report", never the arm or the source.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.db import get_row
from radraft.enums import ReadStatus
from radraft.errors import ConflictError, NotFoundError, RadraftError
from radraft.models import (
    AuditEntry,
    EditSession,
    Instance,
    ReaderStudy,
    Report,
    ReportRevision,
    Study,
    StudyCase,
    StudyRead,
    StudyReader,
    User,
)
from reporting.lifecycle import validate_text
from reporting.reader_study.blinding import BLINDED_LABEL, normalise_draft


class ReadError(RadraftError):
    """A read cannot be done as asked."""


class UnknownReadError(ReadError, NotFoundError):
    """No such read, or not this reader's."""


class ReadStateError(ReadError, ConflictError):
    """The read is not in a state that allows this (not ready, closed, feedback given)."""


class EditReason(StrEnum):
    """Why the reader changed the draft (several may apply)."""

    FALSE_FINDING = "false_finding"
    MISSED_FINDING = "missed_finding"
    WRONG_LOCATION = "wrong_location"
    WRONG_SEVERITY = "wrong_severity"
    LATERALITY = "laterality"
    LINES_DEVICES = "lines_devices"
    COMPARISON = "comparison_with_prior"
    POOR_STYLE = "poor_style"
    NOT_MY_STYLE = "not_my_style"
    ORDERING = "ordering"
    OTHER = "other"


class Efficiency(StrEnum):
    """Did the draft improve your efficiency?"""

    NO = "no"
    INTERPRETATION = "interpretation"
    WRITING = "writing"


class FeedbackIn(BaseModel):
    """The form after submit (not timed)."""

    model_config = ConfigDict(extra="forbid")

    edit_reasons: list[EditReason] = Field(default_factory=list, max_length=11)
    helps_answer_indication: int | None = Field(default=None, ge=1, le=5)
    """5-point Likert: the draft helps answer the exam indication (None: no draft shown)."""
    efficiency: Efficiency | None = None
    thinks_model_wrote_draft: bool | None = None
    free_text: str = Field(default="", max_length=4000)


class ReadView(BaseModel):
    """What the reader's page gets: the case and the draft, blinded."""

    id: int
    study_name: str
    position: int
    remaining: int
    practice: bool
    study_instance_uid: str
    images: list[str]
    draft_label: str | None
    findings: str
    impression: str
    demo_drafts_in_study: bool
    submitted: bool
    feedback_given: bool


def reader_reads(session: Session, user: User) -> list[StudyRead]:
    """All reads assigned to ``user`` across studies, in reading order."""
    return list(
        session.scalars(
            select(StudyRead)
            .join(StudyReader, StudyRead.reader_id == StudyReader.id)
            .where(StudyReader.user_id == user.id)
            .order_by(StudyRead.reader_study_id, StudyRead.position)
        )
    )


def next_read(session: Session, user: User) -> StudyRead | None:
    """The first read that is ready, or submitted but still waiting for its feedback."""
    for read in reader_reads(session, user):
        if read.status == ReadStatus.DONE and read.feedback is None:
            return read
        if read.status == ReadStatus.READY:
            return read
    return None


def own_read(session: Session, read_id: int, user: User) -> StudyRead:
    """The read if it is assigned to ``user``; 404 otherwise (no hint that it exists)."""
    read = session.get(StudyRead, read_id)
    reader = session.get(StudyReader, read.reader_id) if read is not None else None
    if read is None or reader is None or reader.user_id != user.id:
        raise UnknownReadError("unknown read")
    return read


def read_view(session: Session, read: StudyRead, user: User) -> ReadView:
    """The blinded view; audited as a view of the case's report."""
    if read.status == ReadStatus.WAITING:
        raise ReadStateError("this case is not ready yet")
    case = get_row(session, StudyCase, read.case_id)
    study = get_row(session, Study, case.study_id)
    reader_study = get_row(session, ReaderStudy, read.reader_study_id)
    images = list(
        session.scalars(
            select(Instance.sop_instance_uid)
            .where(Instance.study_id == study.id)
            .order_by(Instance.id)
        )
    )
    remaining = sum(1 for r in reader_reads(session, user) if r.status != ReadStatus.DONE)
    findings = read.final_findings if read.status == ReadStatus.DONE else read.draft_findings
    impression = read.final_impression if read.status == ReadStatus.DONE else read.draft_impression
    has_draft = bool((read.draft_findings or "").strip() or (read.draft_impression or "").strip())
    _audit(session, user, "study_read.viewed", read)
    return ReadView(
        id=read.id,
        study_name=reader_study.name,
        position=read.position,
        remaining=remaining,
        practice=read.practice,
        study_instance_uid=study.study_instance_uid,
        images=images,
        draft_label=BLINDED_LABEL if has_draft else None,
        findings=findings or "",
        impression=impression or "",
        demo_drafts_in_study=_study_uses_demo_drafts(session, read.reader_study_id),
        submitted=read.status == ReadStatus.DONE,
        feedback_given=read.feedback is not None,
    )


def open_read_session(session: Session, read: StudyRead, user: User) -> tuple[EditSession, bool]:
    """The read's edit session, resumed after a reload; the first open stamps ``opened_at``."""
    if read.status != ReadStatus.READY:
        raise ReadStateError("this read is not open for editing")
    existing = session.scalar(
        select(EditSession)
        .where(EditSession.study_read_id == read.id, EditSession.ended_at.is_(None))
        .order_by(EditSession.id.desc())
    )
    if existing is not None:
        return existing, True
    case = get_row(session, StudyCase, read.case_id)
    report_id = session.scalar(select(Report.id).where(Report.study_id == case.study_id))
    if report_id is None:
        raise ReadStateError("the case has no report (enrolment requires a drafted case)")
    opened = EditSession(report_id=report_id, user_id=user.id, role=user.role,
                         study_read_id=read.id)  # fmt: skip
    session.add(opened)
    read.opened_at = read.opened_at or opened.started_at
    session.flush()
    _audit(session, user, "study_read.opened", read)
    return opened, False


def submit_read(
    session: Session, read: StudyRead, user: User, findings: str, impression: str, now: datetime
) -> None:
    """Store the reader's text; releases the attending reads that edit it."""
    if read.status != ReadStatus.READY:
        raise ReadStateError("this read is not open for editing")
    validate_text(findings, impression)
    read.final_findings = findings
    read.final_impression = impression
    read.submitted_at = now
    read.status = ReadStatus.DONE  # the page's submit event, posted next, ends the edit session
    for dependent in session.scalars(select(StudyRead).where(StudyRead.source_read_id == read.id)):
        dependent.draft_findings = normalise_draft(findings)
        dependent.draft_impression = normalise_draft(impression)
        dependent.status = ReadStatus.READY
    _audit(session, user, "study_read.submitted", read)


def give_feedback(session: Session, read: StudyRead, user: User, feedback: FeedbackIn) -> None:
    """The after-submit form, once per read."""
    if read.status != ReadStatus.DONE:
        raise ReadStateError("submit the report first")
    if read.feedback is not None:
        raise ReadStateError("feedback already given")
    read.feedback = feedback.model_dump(mode="json")
    _audit(session, user, "study_read.feedback", read)


def _study_uses_demo_drafts(session: Session, reader_study_id: int) -> bool:
    """True when any case's draft came from the demo model: then every read says so."""
    return bool(
        session.scalar(
            select(ReportRevision.id)
            .join(StudyCase, StudyCase.model_revision_id == ReportRevision.id)
            .where(StudyCase.reader_study_id == reader_study_id, ReportRevision.demo_model)
            .limit(1)
        )
    )


def _audit(session: Session, user: User, action: str, read: StudyRead) -> None:
    details: dict[str, Any] = {"reader_study_id": read.reader_study_id}
    session.add(AuditEntry(actor=f"user:{user.id}", action=action, object_type="study_read",
                           object_id=str(read.id), details=details))  # fmt: skip
