"""Which outputs a report revision has; queued with the revision, delivered by reporting."""

from __future__ import annotations

from sqlalchemy.orm import Session

from radraft.enums import OutboxChannel
from radraft.models import ReportRevision
from radraft.outbox import add_message

OUTPUTS = ((OutboxChannel.DICOM, "sr"), (OutboxChannel.HL7, "oru"))
"""Each revision becomes a DICOM SR (C-STORE to the PACS) and an HL7 ORU (MLLP to the RIS)."""


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
