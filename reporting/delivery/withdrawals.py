"""What a withdrawn study's two withdrawal messages say, read when they are sent.

They are built from what was delivered by the time they go, not when the administrator
decided (``radraft.withdrawal``): an SR or ORU of the study that was on its way then arrived
after the decision, and must be withdrawn too. The relay sends them behind every other output of
the study on the same channel, so by then nothing of it is in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import OutboxChannel
from radraft.models import OutboxMessage, ReportRevision, Study
from radraft.settings import Settings
from reporting.delivery.outputs import (
    DeliveredAs,
    MissingRevisionError,
    RevisionBundle,
    load_bundle,
    patient_and_study,
    study_offset,
)
from reporting.delivery.result_history import (
    SENT_ORDER,
    is_acknowledged,
    newest_result,
    settled_outputs,
)
from reporting.rejection_note import RejectionNote
from reporting.sr import COMPREHENSIVE_SR, EvidenceReference, sr_series_uid

NO_ORU_DELIVERED = "not sent: no ORU of this study had reached a RIS"
NO_SR_STORED = "not sent: no SR of this study had reached the PACS"


@dataclass(frozen=True)
class OruWithdrawal:
    """The newest result a RIS acknowledged for the study, and every RIS that acknowledged one
    (as ``str(MllpDestination)``); no bundle when none did. ``delivered_as``: after a patient
    correction, the patient and order that result went under."""

    bundle: RevisionBundle | None
    destinations: tuple[str, ...]
    delivered_as: DeliveredAs | None = None
    sent_order: dict[str, str] | None = None
    """The order numbers that result went out with (None: sent before they were recorded)."""


def _rows_delivered(
    session: Session,
    study: Study,
    channel: OutboxChannel,
    withdrawal: OutboxMessage,
    delivered_as: DeliveredAs | None,
) -> list[OutboxMessage]:
    """The study's report outputs on ``channel`` settled before ``withdrawal``, since the
    correction that set the patient they went under (a withdrawal takes back only those)."""
    after = delivered_as.after_row if delivered_as else (study.corrected_through_outbox_id or 0)
    return settled_outputs(session, study, channel, after_row=after, before_row=withdrawal.id)


def _study_of(session: Session, withdrawal: OutboxMessage) -> Study:
    study = session.get(Study, withdrawal.study_id) if withdrawal.study_id is not None else None
    if study is None:
        raise MissingRevisionError(f"the study of outbox row {withdrawal.id} is gone")
    return study


def load_oru_withdrawal(
    session: Session, withdrawal: OutboxMessage, *, spool_dir: Path
) -> OruWithdrawal:
    """Read which of the study's ORUs were acknowledged, and by whom."""
    study = _study_of(session, withdrawal)
    delivered_as = DeliveredAs.of(withdrawal.payload)
    delivered = [
        row
        for row in _rows_delivered(session, study, OutboxChannel.HL7, withdrawal, delivered_as)
        if is_acknowledged(row)
    ]
    if not delivered:
        return OruWithdrawal(None, ())
    destinations = tuple(
        dict.fromkeys(name for row in delivered for name in row.payload["delivered_to"])
    )
    newest = newest_result(delivered)
    return OruWithdrawal(
        load_bundle(session, int(newest.payload["report_revision_id"]), spool_dir=spool_dir),
        destinations,
        delivered_as,
        newest.payload.get(SENT_ORDER),
    )


def load_rejection_note(
    session: Session, withdrawal: OutboxMessage, settings: Settings, now: datetime
) -> RejectionNote | None:
    """The rejection note naming every SR of the study the PACS stored (under the patient the
    withdrawal is for); None if it stored none.

    Raises
    ------
    MissingRevisionError
        If the study is gone.
    """
    study = _study_of(session, withdrawal)
    delivered_as = DeliveredAs.of(withdrawal.payload)
    revisions = {
        int(row.payload["report_revision_id"])
        for row in _rows_delivered(session, study, OutboxChannel.DICOM, withdrawal, delivered_as)
    }
    stored = session.scalars(
        select(ReportRevision.sr_sop_instance_uid)
        .where(
            ReportRevision.id.in_(revisions),
            ReportRevision.sr_sop_instance_uid.is_not(None),
        )
        .order_by(ReportRevision.id)
    ).all()
    if not stored:
        return None
    study_uid = study.study_instance_uid
    rejected = [
        EvidenceReference(study_uid, sr_series_uid(study_uid), COMPREHENSIVE_SR, str(sop_uid))
        for sop_uid in stored
    ]
    identity = patient_and_study(study)
    if delivered_as is not None:
        identity = replace(identity, **delivered_as.patient)
    return RejectionNote(
        identity,
        rejected,
        moment=now.astimezone(study_offset(study, settings, now)),
        institution_name=settings.institution_name,
    )
