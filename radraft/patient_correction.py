"""Moving a disputed study to the patient its sender now names (a patient correction).

A disputed study (``radraft.identity_dispute``) is most often a correction made at the PACS:
the study was put under the right patient there and sent again with the same UIDs. Confirming
radraft's copy or withdrawing its reports were the only ways out, and the second left the study
unreported here. ``correct_patient`` adopts the correction instead, as IHE's Patient Information
Reconciliation asks of a report manager, in one transaction under the study's lock:

- what was delivered under the old patient is taken back, as a withdrawal does: an HL7 ORU
  with result status W to every RIS that acknowledged one, an IOCM rejection note to the PACS
  naming the SRs it stored. Both are built when they go, from what had been delivered by then
  and under the patient and order it was delivered under (``DELIVERED_AS`` in their payload);
- SRs and ORUs not delivered yet (held by the dispute, or waiting) are never sent: they were
  built, or would be, for the old patient (``SUPERSEDED_NOTE``);
- the study takes the patient module of the refused instance (``Study.claimed_patient``), which
  the gateway kept, and the administrator must name its Patient ID, so that what is adopted is
  what was checked with the PACS;
- the newest report revision is queued again (an SR with a new SOP Instance UID, an ORU), now
  for the corrected patient, behind the withdrawals.

The report itself and every revision stay: the images are the same, only whose they are changed.
The spooled files still carry the old patient; the gateway's half of the correction
(``gateway.patient_files``) rewrites them in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radraft.enums import OutboxStatus
from radraft.errors import ConflictError, NotFoundError
from radraft.logs import log_event
from radraft.models import AuditEntry, Instance, OutboxMessage, Report, ReportRevision, Study
from radraft.orders import order_for_study, order_numbers
from radraft.outbox import add_message
from radraft.report_outputs import OUTPUTS, is_report_output
from radraft.withdrawal import WITHDRAWAL_OUTPUTS, stop_report_outputs

logger = logging.getLogger(__name__)

PATIENT_FIELDS = (
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_birth_date",
    "patient_sex",
)
"""The Patient module values a correction moves (the study's columns of the same names)."""
CORRECTED_ACTION = "study.patient_corrected"
SUPERSEDED_NOTE = (
    "not sent: built for the patient before a patient correction; the report was queued again"
    " for the corrected patient"
)
DELIVERED_AS = "delivered_as"
"""The payload key of a correction's withdrawal: the patient and order its outputs went under,
and the outbox rows that count as delivered under them (``after_row`` < id < the withdrawal)."""


@dataclass(frozen=True)
class PatientCorrection:
    """What ``correct_patient`` did; ``moved_fields`` names what changed (never the values)."""

    study_id: int
    corrections: int
    moved_fields: tuple[str, ...]
    patient: dict[str, str]
    """The study's Patient module values now (for the gateway to write into its files)."""
    stopped: int
    withdrawals: tuple[str, ...]
    requeued_revision: int | None
    """The revision number queued again for the corrected patient (None: no report yet)."""


def claimed_patient(study_fields: dict[str, Any]) -> dict[str, str]:
    """The Patient module of a refused instance, as ``Study.claimed_patient`` keeps it."""
    return {name: str(study_fields.get(name) or "") for name in PATIENT_FIELDS}


def patient_of(study: Study) -> dict[str, str]:
    """The study's Patient module values (empty for absent)."""
    return {name: getattr(study, name) or "" for name in PATIENT_FIELDS}


def is_superseded(study: Study | None, row: OutboxMessage) -> bool:
    """Whether ``row`` is a report output queued before the study's latest correction."""
    if study is None or study.corrected_through_outbox_id is None:
        return False
    return is_report_output(row) and row.id <= study.corrected_through_outbox_id


def stop_if_superseded(session: Session, row: OutboxMessage, now: datetime) -> bool:
    """Settle a report output queued for the patient before a correction unsent (done,
    ``SUPERSEDED_NOTE``); True if it was. The relay asks this of every row it is about to build,
    in the transaction that reads the study it would build it from."""
    if row.study_id is None or not is_superseded(session.get(Study, row.study_id), row):
        return False
    _settle_superseded(row, now)
    log_event(logger, "delivery.superseded_not_sent", outbox_id=row.id, study_id=row.study_id)
    return True


def _settle_superseded(row: OutboxMessage, now: datetime) -> None:
    row.status = OutboxStatus.DONE
    row.delivered_at = now
    row.last_error = SUPERSEDED_NOTE


def correct_patient(
    session: Session, study_instance_uid: str, *, patient_id: str, actor: str, now: datetime
) -> PatientCorrection:
    """Move the disputed study to the patient its sender named; withdraw what went out under
    the old one and queue the report again (see the module's docstring). The caller commits.

    Raises
    ------
    NotFoundError
        If radraft has no such study.
    ConflictError
        If the study is not disputed, was withdrawn, kept no claim, or ``patient_id`` is not the
        Patient ID its sender named.
    """
    study = session.scalar(
        select(Study).where(Study.study_instance_uid == study_instance_uid).with_for_update()
    )
    if study is None:
        raise NotFoundError("unknown study")
    if study.withdrawn_at is not None:
        raise ConflictError("the study's reports were withdrawn as another patient's")
    if study.identity_disputed_at is None:
        raise ConflictError("the study's patient identity is not disputed: nothing to correct")
    claim = study.claimed_patient
    if not claim:
        raise ConflictError(
            "radraft holds no patient to move the study to (the dispute came from a rejection"
            " note, or from an instance refused before this version); ask the PACS to send the"
            " study under the right patient, then correct it, or withdraw it"
        )
    if claim.get("patient_id") != patient_id:
        raise ConflictError(
            "the sender named another Patient ID than the one given: check it with the PACS"
        )
    delivered_as = _delivered_as(session, study)
    cutoff = session.scalar(
        select(func.max(OutboxMessage.id)).where(OutboxMessage.study_id == study.id)
    )
    stopped = stop_report_outputs(session, study.id, now, _settle_superseded)
    queued = [
        add_message(
            session,
            channel=channel,
            idempotency_key=f"study:{study.id}:{output}:correction:{study.patient_corrections + 1}",
            payload={"output": output, DELIVERED_AS: delivered_as},
            study_id=study.id,
        )
        for channel, output in WITHDRAWAL_OUTPUTS.items()
        if channel in stopped.used_channels
    ]
    moved = tuple(name for name in PATIENT_FIELDS if (getattr(study, name) or "") != claim[name])
    for name in PATIENT_FIELDS:
        setattr(study, name, claim[name] or None)
    study.patient_corrections += 1
    study.corrected_through_outbox_id = cutoff
    study.claimed_patient = None
    study.identity_disputed_at = None
    requeued = _queue_newest_revision(session, study)
    withdrawals = tuple(str(row.payload["output"]) for row in queued)
    session.add(
        AuditEntry(
            at=now, actor=actor, action=CORRECTED_ACTION, object_type="study",
            object_id=str(study.id),
            details={"corrections": study.patient_corrections, "moved": list(moved),
                     "stopped": stopped.stopped, "withdrawals": list(withdrawals),
                     "requeued_revision": requeued},
        )
    )  # fmt: skip
    log_event(logger, "study.patient_corrected", study_id=study.id, stopped=stopped.stopped,
              withdrawals=len(withdrawals))  # fmt: skip
    return PatientCorrection(
        study.id, study.patient_corrections, moved, patient_of(study), stopped.stopped,
        withdrawals,
        requeued,
    )  # fmt: skip


def _delivered_as(session: Session, study: Study) -> dict[str, Any]:
    """The patient and order the study's outputs have gone under since its last correction."""
    order = order_for_study(session, study).order
    return {
        "patient": patient_of(study),
        "order": order_numbers(order) if order is not None else None,
        "after_row": study.corrected_through_outbox_id or 0,
    }


def _queue_newest_revision(session: Session, study: Study) -> int | None:
    """Queue the study's newest report revision again (SR and ORU); its number, or None."""
    revision = session.scalar(
        select(ReportRevision)
        .join(Report, Report.id == ReportRevision.report_id)
        .where(Report.study_id == study.id)
        .order_by(ReportRevision.number.desc())
        .limit(1)
    )
    if revision is None:
        return None
    for channel, output in OUTPUTS:
        add_message(
            session,
            channel=channel,
            idempotency_key=(
                f"report-revision:{revision.id}:{output}:correction:{study.patient_corrections}"
            ),
            payload={"output": output, "report_revision_id": revision.id},
            study_id=study.id,
        )
    return revision.number


def spooled_instances(session: Session, study_id: int) -> list[Instance]:
    """The study's instances whose files radraft still holds (retention may have taken some)."""
    return list(
        session.scalars(
            select(Instance)
            .where(Instance.study_id == study_id, Instance.purged_at.is_(None))
            .order_by(Instance.id)
        )
    )
