"""How many restores lie below a row: the epoch that keeps identifiers derived from row numbers
unique across restores (``radraft.models.RestoreRecord`` says why).

A row numbered at or below every restore's boundary has epoch 0 and its identifiers are as
they always were; so an upgrade, and a database never restored, change nothing. A row numbered
past the boundary of k restores has epoch k: the rows of a lost stretch were numbered past the
boundary of one restore fewer, so the same number gives another identifier. Once written, a
row's epoch never changes: a later restore's backup holds it with its number at or below that
restore's boundary.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radraft.models import OutboxMessage, ReportRevision, RestoreRecord
from radraft.timeutil import utcnow


def revision_boundaries(session: Session) -> tuple[int, ...]:
    """Every restore's highest report revision number (empty: never restored)."""
    return tuple(session.scalars(select(RestoreRecord.revision_boundary)))


def epoch(number: int, boundaries: tuple[int, ...]) -> int:
    """How many of ``boundaries`` lie below ``number``."""
    return sum(1 for boundary in boundaries if boundary < number)


def outbox_epoch(session: Session, row_id: int) -> int:
    """The epoch of an outbox row (for its ORU's control ID)."""
    return epoch(row_id, tuple(session.scalars(select(RestoreRecord.outbox_boundary))))


def record_restore(session: Session, backup_created_at: str) -> RestoreRecord:
    """Remember a restore with the highest revision and outbox row the restored database holds;
    the next rows are numbered past them."""
    record = RestoreRecord(
        restored_at=utcnow(),
        backup_created_at=backup_created_at,
        revision_boundary=session.scalar(select(func.max(ReportRevision.id))) or 0,
        outbox_boundary=session.scalar(select(func.max(OutboxMessage.id))) or 0,
    )
    session.add(record)
    return record
