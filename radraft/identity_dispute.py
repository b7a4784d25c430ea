"""A study whose patient the sender has since contradicted: held from signing and delivery.

The gateway refuses an instance of a known study sent under another Patient ID (0x0111,
``gateway.identity``), and keeps its first copy. That refusal protects the files, but the reason
behind it is often a correction: the technologist or the PACS put the study under the right
patient and sent it again with the same UIDs. radraft's copy, its draft and its report then
belong to the wrong patient, and a signed report would go to the PACS and the RIS under that
patient. So the refusal also marks the study disputed (``Study.identity_disputed_at``): it cannot
be signed or amended, its SRs and ORUs are held (failed with ``HELD_REASON``), and the case page
says why, until an administrator has checked the patient with the PACS and confirmed radraft's
copy (``radraft study confirm-identity``), which re-queues the held outputs, or moved the study
to the patient the sender named (``radraft study correct-patient``, ``radraft.patient_correction``)
or withdrawn its reports (``radraft study withdraw``). Until then nobody signs it here.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from radraft.enums import OutboxStatus
from radraft.errors import ConflictError, NotFoundError
from radraft.logs import log_event
from radraft.models import AuditEntry, OutboxMessage, Study
from radraft.report_outputs import is_report_output

logger = logging.getLogger(__name__)

HELD_REASON = (  # compared with stored rows: the text stays as it is
    "held: this study's patient identity is disputed (the sender has since sent it under"
    " another Patient ID); check it with the PACS, then run radraft study confirm-identity"
)
"""The reason on a held SR or ORU row; ``confirm_identity`` re-queues the rows that carry it."""
CONFIRMED_ACTION = "study.identity_confirmed"


def mark_disputed(
    session: Session, study_id: int, now: datetime, *, claimed_patient: dict[str, str] | None
) -> None:
    """Mark the study disputed (since the first refusal) and keep the patient the refused
    instance named (the latest one), which ``radraft study correct-patient`` can adopt; None
    (a rejection note names no patient) keeps any claim already kept."""
    session.execute(
        update(Study)
        .where(Study.id == study_id, Study.identity_disputed_at.is_(None))
        .values(identity_disputed_at=now)
    )
    if claimed_patient is not None:
        session.execute(
            update(Study).where(Study.id == study_id).values(claimed_patient=claimed_patient)
        )


def hold_if_disputed(session: Session, row: OutboxMessage) -> bool:
    """Fail an SR or ORU row of a disputed study with ``HELD_REASON``; True if it was held.

    A withdrawal (``radraft.withdrawal``) is not held: it is how a disputed study's delivered
    reports are taken back."""
    if row.study_id is None or not is_report_output(row):
        return False
    study = session.get(Study, row.study_id)  # already in the session when the relay asked first
    if study is None or study.identity_disputed_at is None:
        return False
    row.status = OutboxStatus.FAILED
    row.last_error = HELD_REASON
    log_event(
        logger, "delivery.held_identity_disputed", logging.WARNING,
        outbox_id=row.id, study_id=row.study_id,
    )  # fmt: skip
    return True


def confirm_identity(
    session: Session, study_instance_uid: str, *, actor: str, now: datetime
) -> int:
    """Record that an administrator checked the study's patient and radraft's copy is right:
    the study may be signed again and its held outputs are re-queued (returns how many)."""
    study = session.scalar(select(Study).where(Study.study_instance_uid == study_instance_uid))
    if study is None:
        raise NotFoundError("unknown study")
    if study.identity_disputed_at is None:
        raise ConflictError("the study's patient identity is not disputed: nothing to confirm")
    if study.withdrawn_at is not None:
        raise ConflictError("the study's reports were withdrawn as another patient's")
    held = requeue_held(session, study.id, now)
    session.add(
        AuditEntry(
            at=now, actor=actor, action=CONFIRMED_ACTION, object_type="study",
            object_id=str(study.id),
            details={"disputed_since": study.identity_disputed_at.isoformat(),
                     "requeued": held},
        )
    )  # fmt: skip
    study.identity_disputed_at = None
    log_event(logger, "study.identity_confirmed", study_id=study.id, requeued=held)
    return held


def requeue_held(session: Session, study_id: int, now: datetime) -> int:
    """Queue again the study's outputs held by its dispute (once it is settled); how many."""
    held = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.study_id == study_id,
            OutboxMessage.status == OutboxStatus.FAILED,
            OutboxMessage.last_error == HELD_REASON,
        )
    ).all()
    for row in held:
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = now
        row.last_error = None
    return len(held)
