"""Which outputs a report revision has; queued with the revision, delivered by reporting."""

from __future__ import annotations

from sqlalchemy.orm import Session

from radraft.enums import OutboxChannel, OutboxStatus
from radraft.models import OutboxMessage, ReportRevision
from radraft.outbox import add_message
from radraft.settings import Settings

OUTPUTS = ((OutboxChannel.DICOM, "sr"), (OutboxChannel.HL7, "oru"))
"""Each revision becomes a DICOM SR (C-STORE to the PACS) and an HL7 ORU (MLLP to the RIS)."""
REPORT_OUTPUTS = frozenset(output for _, output in OUTPUTS)
DESTINATION_SETTINGS = {
    OutboxChannel.DICOM: "RADRAFT_SR_DESTINATION",
    OutboxChannel.HL7: "RADRAFT_HL7_DESTINATIONS",
}


def channels_without_destination(settings: Settings) -> frozenset[OutboxChannel]:
    """The output channels no peer is configured for: their rows are queued all the same and
    wait, unsent and not failed, so a site that connects its PACS or RIS later gets every
    report. Waiting for a setting is not a delivery that is late, and is counted apart."""
    configured = {
        OutboxChannel.DICOM: settings.sr_destination is not None,
        OutboxChannel.HL7: bool(settings.hl7_destinations),
    }
    return frozenset(channel for channel, present in configured.items() if not present)


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


def waits_for(row: OutboxMessage, waiting: frozenset[OutboxChannel]) -> str | None:
    """The setting a pending row waits for (its channel among ``waiting``, from
    ``channels_without_destination``); None for any other row."""
    if row.status == OutboxStatus.PENDING and row.channel in waiting:
        return DESTINATION_SETTINGS[row.channel]
    return None
