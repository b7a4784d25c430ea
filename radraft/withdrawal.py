"""Withdrawing a study's reports when radraft's copy turns out to be another patient's.

A disputed study (``radraft.identity_dispute``) ends one of two ways. Either the administrator
finds radraft's copy right and confirms it, or finds it wrong: the images here, the draft and
any report are filed under a patient they do not belong to. Holding stops new outputs, but a
report may already have reached the PACS and the RIS before the dispute came up (or, for a
mix-up found another way, without any dispute). ``withdraw_study`` records the decision and
queues the two messages that take those reports back where they were delivered:

- an HL7 ORU with result status W ("post original as wrong, e.g. transmitted for wrong
  patient", HL7 tables 0123 and 0085) to every RIS that acknowledged one of the study's ORUs,
  under the same patient and order as they were, so the RIS finds the result it filed;
- an IHE IOCM rejection note (``reporting.rejection_note``) to the PACS naming every SR of the
  study it stored.

Both are ordinary outbox rows, delivered by the relay behind any output of the study still in
flight (rows of a study and channel go in order), and built when they are sent, from what was
delivered by then; a withdrawal that finds nothing delivered is done with a note saying so.
From the decision on, the study's other outputs are never sent (done, with ``WITHDRAWN_NOTE``),
and its report cannot be changed or signed. Radraft does not move the study to the right
patient: the PACS holds the right copy, and the study is reported there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import OutboxChannel, OutboxStatus
from radraft.errors import ConflictError, NotFoundError
from radraft.identity_dispute import HELD_REASON
from radraft.logs import log_event
from radraft.models import AuditEntry, OutboxMessage, Study
from radraft.outbox import add_message
from radraft.report_outputs import is_report_output

logger = logging.getLogger(__name__)

WITHDRAWN_ACTION = "study.withdrawn"
WITHDRAWN_NOTE = "not sent: the study's reports were withdrawn (its copy here is another patient's)"
ORU_WITHDRAWAL = "oru-withdrawal"
SR_REJECTION = "sr-rejection"
WITHDRAWAL_OUTPUTS = {OutboxChannel.HL7: ORU_WITHDRAWAL, OutboxChannel.DICOM: SR_REJECTION}


@dataclass(frozen=True)
class Withdrawal:
    """What ``withdraw_study`` did: outputs stopped, and withdrawal messages queued."""

    stopped: int
    """Report outputs not delivered yet, which now never will be (a pending one that is being
    sent at this moment still arrives, and is then withdrawn with the others)."""
    queued: tuple[str, ...]


@dataclass(frozen=True)
class StoppedOutputs:
    """What ``stop_report_outputs`` found: how many outputs will never be sent, and the
    channels on which something of the study may have reached a peer (which a withdrawal
    must then cover)."""

    stopped: int
    used_channels: frozenset[OutboxChannel]


def stop_report_outputs(
    session: Session,
    study_id: int,
    now: datetime,
    settle: Callable[[OutboxMessage, datetime], None],
) -> StoppedOutputs:
    """Settle the study's failed report outputs with ``settle``, count the waiting ones (the
    relay settles those in their turn: one may be on its way to the peer now, so a withdrawal
    must come after it), and say which channels were used.

    A failed output counts as used unless it was held by a dispute before any peer had it: a
    send that failed may still have reached the peer (a timeout after the bytes left), and an
    ORU to several RIS fails after those that acknowledged it. A withdrawal queued for nothing
    costs only a row done with "not sent"; one not queued leaves a report at a peer under the
    wrong patient."""
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.study_id == study_id, OutboxMessage.channel != OutboxChannel.CELERY)
        .order_by(OutboxMessage.id)
    ).all()
    stopped, used = 0, set[OutboxChannel]()
    for row in rows:
        if not is_report_output(row):
            continue
        if row.status == OutboxStatus.FAILED:
            never_sent = row.last_error == HELD_REASON and not row.payload.get("delivered_to")
            settle(row, now)  # not in flight, and it would block the withdrawal behind it
            stopped += 1
            if never_sent:
                continue
        elif row.status == OutboxStatus.PENDING:
            stopped += 1
        used.add(OutboxChannel(row.channel))
    return StoppedOutputs(stopped, frozenset(used))


def stop_if_withdrawn(session: Session, row: OutboxMessage, now: datetime) -> bool:
    """Settle a report output of a withdrawn study unsent (done, ``WITHDRAWN_NOTE``); True if
    it was. The relay asks this of every row it would claim."""
    if row.study_id is None or not is_report_output(row):
        return False
    study = session.get(Study, row.study_id)  # the dispute hold then reads it from the session
    if study is None or study.withdrawn_at is None:
        return False
    _settle_unsent(row, now)
    log_event(logger, "delivery.withdrawn_not_sent", outbox_id=row.id, study_id=row.study_id)
    return True


def _settle_unsent(row: OutboxMessage, now: datetime) -> None:
    """Done without being sent, and saying why, as a withdrawn study's outputs end."""
    row.status = OutboxStatus.DONE
    row.delivered_at = now
    row.last_error = WITHDRAWN_NOTE


def withdraw_study(
    session: Session, study_instance_uid: str, *, actor: str, now: datetime
) -> Withdrawal:
    """Record that the study's copy here is another patient's; stop its outputs, queue the
    withdrawal of what was delivered, audit it with who decided.

    Raises
    ------
    NotFoundError
        If radraft has no such study.
    ConflictError
        If the study was already withdrawn.
    """
    study = session.scalar(
        select(Study).where(Study.study_instance_uid == study_instance_uid).with_for_update()
    )
    if study is None:
        raise NotFoundError("unknown study")
    if study.withdrawn_at is not None:
        raise ConflictError("the study's reports were already withdrawn")
    stopped = stop_report_outputs(session, study.id, now, _settle_unsent)
    queued = []
    for channel, output in WITHDRAWAL_OUTPUTS.items():
        if channel in stopped.used_channels:
            add_message(
                session,
                channel=channel,
                idempotency_key=f"study:{study.id}:{output}",
                payload={"output": output},
                study_id=study.id,
            )
            queued.append(output)
    study.withdrawn_at = now
    session.add(
        AuditEntry(
            at=now, actor=actor, action=WITHDRAWN_ACTION, object_type="study",
            object_id=str(study.id),
            details={"stopped": stopped.stopped, "queued": queued,
                     "identity_disputed": study.identity_disputed_at is not None},
        )
    )  # fmt: skip
    log_event(logger, "study.withdrawn", study_id=study.id, stopped=stopped.stopped,
              queued=len(queued))  # fmt: skip
    return Withdrawal(stopped.stopped, tuple(queued))
