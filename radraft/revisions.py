"""Numbering of report revisions, shared by the worker (drafts) and reporting (the lifecycle)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radraft.models import ReportRevision


def next_revision_number(session: Session, report_id: int) -> int:
    """1 for a report's first revision, then one more than the highest.

    Callers hold the report row locked (``FOR UPDATE``), so two writers never get the same
    number; the unique (report, number) constraint would refuse it anyway.
    """
    highest = session.scalar(
        select(func.max(ReportRevision.number)).where(ReportRevision.report_id == report_id)
    )
    return (highest or 0) + 1
