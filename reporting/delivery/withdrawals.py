"""What a withdrawn study's two withdrawal messages say, read when they are sent.

They are built from what was delivered by the time they go, not when the administrator
decided (``radraft.withdrawal``): an SR or ORU of the study that was on its way then arrived
after the decision, and must be withdrawn too. The relay sends them behind every other output of
the study on the same channel, so by then nothing of it is in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import OutboxChannel, OutboxStatus
from radraft.models import OutboxMessage, Report, ReportRevision, Study
from radraft.settings import Settings
from radraft.withdrawal import is_report_output
from reporting.delivery.outputs import (
    MissingRevisionError,
    RevisionBundle,
    load_bundle,
    patient_and_study,
    study_offset,
)
from reporting.rejection_note import RejectionNote
from reporting.sr import COMPREHENSIVE_SR, EvidenceReference, sr_series_uid

NO_ORU_DELIVERED = "not sent: no ORU of this study had reached a RIS"
NO_SR_STORED = "not sent: no SR of this study had reached the PACS"


@dataclass(frozen=True)
class OruWithdrawal:
    """The newest result a RIS acknowledged for the study, and every RIS that acknowledged one
    (as ``str(MllpDestination)``); no bundle when none did."""

    bundle: RevisionBundle | None
    destinations: tuple[str, ...]


def load_oru_withdrawal(session: Session, study_id: int, *, spool_dir: Path) -> OruWithdrawal:
    """Read which of the study's ORUs were acknowledged, and by whom."""
    rows = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.study_id == study_id,
            OutboxMessage.channel == OutboxChannel.HL7,
            OutboxMessage.status == OutboxStatus.DONE,
        )
        .order_by(OutboxMessage.id)
    ).all()
    delivered = [row for row in rows if is_report_output(row) and row.payload.get("delivered_to")]
    if not delivered:
        return OruWithdrawal(None, ())
    destinations = tuple(
        dict.fromkeys(name for row in delivered for name in row.payload["delivered_to"])
    )
    newest = max(int(row.payload["report_revision_id"]) for row in delivered)
    return OruWithdrawal(load_bundle(session, newest, spool_dir=spool_dir), destinations)


def load_rejection_note(
    session: Session, study_id: int, settings: Settings, now: datetime
) -> RejectionNote | None:
    """The rejection note naming every SR of the study the PACS stored; None if it stored none.

    Raises
    ------
    MissingRevisionError
        If the study is gone.
    """
    study = session.get(Study, study_id)
    if study is None:
        raise MissingRevisionError(f"study {study_id} is gone")
    stored = session.scalars(
        select(ReportRevision.sr_sop_instance_uid)
        .join(Report, Report.id == ReportRevision.report_id)
        .where(Report.study_id == study_id, ReportRevision.sr_sop_instance_uid.is_not(None))
        .order_by(ReportRevision.id)
    ).all()
    if not stored:
        return None
    study_uid = study.study_instance_uid
    rejected = [
        EvidenceReference(study_uid, sr_series_uid(study_uid), COMPREHENSIVE_SR, str(sop_uid))
        for sop_uid in stored
    ]
    return RejectionNote(
        patient_and_study(study),
        rejected,
        moment=now.astimezone(study_offset(study, settings, now)),
        institution_name=settings.institution_name,
    )
