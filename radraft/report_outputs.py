"""Which outputs a report revision has; queued with the revision, delivered by reporting."""

from __future__ import annotations

from sqlalchemy.orm import Session

from radraft.enums import OutboxChannel
from radraft.models import OutboxMessage, ReportRevision
from radraft.outbox import add_message

OUTPUTS = ((OutboxChannel.DICOM, "sr"), (OutboxChannel.HL7, "oru"))
"""Each revision becomes a DICOM SR (C-STORE to the PACS) and an HL7 ORU (MLLP to the RIS)."""
REPORT_OUTPUTS = frozenset(output for _, output in OUTPUTS)


def is_report_output(row: OutboxMessage) -> bool:
    """Whether the row carries a revision's SR or ORU (not a withdrawal, not a Celery task):
    what a dispute holds, and a withdrawal or a patient correction stops."""
    return row.channel != OutboxChannel.CELERY and row.payload.get("output") in REPORT_OUTPUTS


def queue_outputs(session: Session, revision: ReportRevision, *, study_id: int) -> None:
    """Outbox rows for a revision's outputs, in the caller's transaction (same commit)."""
    for channel, output in OUTPUTS:
        add_message(
            session,
            channel=channel,
            idempotency_key=f"report-revision:{revision.id}:{output}",
            payload={"output": output, "report_revision_id": revision.id},
            study_id=study_id,
        )
