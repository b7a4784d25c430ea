"""The only writer of report revisions: model drafts (worker) and human changes (reporting) alike.

Every revision is appended the same way: under the study's row lock, numbered one past the
highest, the report's version bumped, the study's status moved to the report's state, and the
SR and ORU outputs queued in the same transaction. Writers lock in one order, the study row
first and then its report or job rows, so two writers on one study wait for each other instead
of deadlocking, and a second ``Report`` for a study cannot appear (``reports.study_id`` is
unique too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radraft.enums import ReportState
from radraft.errors import NotFoundError
from radraft.models import Report, ReportRevision, Study, User
from radraft.report_outputs import queue_outputs
from radraft.study_status import STUDY_STATUS_FOR_REPORT_STATE, move_study


class UnknownStudyError(NotFoundError):
    """No study with that id (it was deleted meanwhile)."""

    def __init__(self, study_id: int) -> None:
        super().__init__(f"study {study_id} does not exist")
        self.study_id = study_id


@dataclass(frozen=True)
class ModelAuthorship:
    """How a model wrote a draft: kept with the revision and named in every output after it."""

    name: str
    revision: str | None
    weights_hash: str | None
    demo: bool
    prompt: str | None
    generation: dict[str, Any] | None
    drafting_job_id: int | None
    """The job that wrote it; unique, so a job that runs twice stores one draft."""


@dataclass(frozen=True)
class NewRevision:
    """The content of a revision to append; written by a person or by a model, never both."""

    state: ReportState
    findings: str
    impression: str
    author: User | None = None
    model: ModelAuthorship | None = None

    def __post_init__(self) -> None:
        if (self.author is None) == (self.model is None):
            raise ValueError("a revision has exactly one author: a person or a model")


def lock_study(session: Session, study_id: int) -> Study:
    """The study row, locked for this transaction (the first lock every report writer takes)."""
    study = session.scalar(
        select(Study)
        .where(Study.id == study_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if study is None:
        raise UnknownStudyError(study_id)
    return study


def lock_report(session: Session, study_id: int) -> Report | None:
    """The study's report, locked and re-read; None before the first draft. Lock the study first."""
    return session.scalar(
        select(Report)
        .where(Report.study_id == study_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def next_revision_number(session: Session, report_id: int) -> int:
    """1 for a report's first revision, then one more than the highest (gapless under the lock)."""
    highest = session.scalar(
        select(func.max(ReportRevision.number)).where(ReportRevision.report_id == report_id)
    )
    return (highest or 0) + 1


def append_revision(
    session: Session,
    study: Study,
    report: Report | None,
    new: NewRevision,
    *,
    now: datetime,
    update_study_status: bool = True,
) -> ReportRevision:
    """Append one revision to the study's report (created on the first draft) and queue outputs.

    The caller holds the study row (``lock_study``) and passes the report from ``lock_report``.
    ``update_study_status`` is False for a draft of a content version the study has moved past
    (newer images arrived meanwhile): the draft is kept, the study stays where it is.
    """
    if report is None:
        report = Report(study_id=study.id, state=new.state, version=0, created_at=now)
        session.add(report)
        session.flush()
    model = new.model
    revision = ReportRevision(
        report_id=report.id,
        number=next_revision_number(session, report.id),
        state=new.state,
        findings=new.findings,
        impression=new.impression,
        author_user_id=new.author.id if new.author else None,
        author_role=new.author.role if new.author else None,
        drafting_job_id=model.drafting_job_id if model else None,
        model_name=model.name if model else None,
        model_revision=model.revision if model else None,
        model_weights_hash=model.weights_hash if model else None,
        demo_model=model.demo if model else False,
        prompt=model.prompt if model else None,
        generation=model.generation if model else None,
        created_at=now,
    )
    session.add(revision)
    report.state = new.state
    report.version += 1
    report.updated_at = now
    if update_study_status:
        move_study(study, STUDY_STATUS_FOR_REPORT_STATE[new.state])
    session.flush()
    queue_outputs(session, revision, study_id=study.id)
    return revision
