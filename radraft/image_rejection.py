"""Images rejected at the source: radraft follows an IHE IOCM rejection note it receives.

When a technologist finds an image bad (a re-take follows) or sent under the wrong patient or
order, the modality or the PACS sends a rejection note: a Key Object Selection document in the
same study whose title gives the reason and whose evidence names the instances. A PACS hides
them; radraft had stored the note as one more object and kept drafting from the images, so a
draft could describe a rejected image, or another patient's.

Now the named instances of the note's own study are rejected here too: never drafted from (they
stop counting as radiographs), never served over DICOMweb, and a re-send does not bring them
back; an instance the note names before it arrived is rejected as it arrives (a forwarding
PACS may send the note first). If a rejected image was one the model could draft from, the
study is re-opened, so the completion decides again on what is left: a new draft from the
remaining images (until editing starts, as for late images), or "not eligible" when none is
left. A rejection for the wrong patient or order (113037, 113038) of a study that already has a
report or a draft on its way also holds it as disputed (``radraft.identity_dispute``): the
draft may describe another patient's image, so no one signs it and nothing of it leaves until
an administrator confirms or withdraws it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from radraft.enums import JobStatus, StudyStatus
from radraft.identity_dispute import mark_disputed
from radraft.logs import log_event
from radraft.models import (
    AuditEntry,
    AwaitedRejection,
    DraftingJob,
    Instance,
    Report,
    ReportRevision,
    Study,
)
from radraft.study_status import STATUSES_RESET_BY_NEW_INSTANCES, move_study

logger = logging.getLogger(__name__)

REJECTION_TITLES = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
"""IOCM rejection note titles (DCM codes, CID 7011)."""
WRONG_PATIENT_CODES = frozenset({"113037", "113038"})
REJECTED_ACTION = "study.images_rejected"


@dataclass(frozen=True)
class RejectionNote:
    """What a received rejection note says: its reason and the instances of its study."""

    code: str
    study_instance_uid: str
    sop_instance_uids: frozenset[str]


@dataclass(frozen=True)
class Rejection:
    """What ``reject_instances`` did to the study (nothing when it holds none of them)."""

    study_id: int | None
    rejected: int
    reopened: bool
    disputed: bool
    awaited: int = 0
    """Named instances not received yet and newly remembered: rejected as they arrive."""


def reject_instances(
    session: Session, note: RejectionNote, *, actor: str, now: datetime
) -> Rejection:
    """Reject the note's instances of its study radraft holds; re-open the study for the
    completion if one was a radiograph; hold it as disputed for a wrong-patient reason if a
    draft exists or is coming. Audited (the code and a count). The caller commits."""
    study = session.scalar(
        select(Study).where(Study.study_instance_uid == note.study_instance_uid).with_for_update()
    )
    if study is None or not note.sop_instance_uids:
        return Rejection(None, 0, False, False)
    held = session.scalars(
        select(Instance).where(
            Instance.study_id == study.id, Instance.sop_instance_uid.in_(note.sop_instance_uids)
        )
    ).all()
    awaited = _await_the_rest(session, study, note, {i.sop_instance_uid for i in held}, now)
    instances = [instance for instance in held if instance.rejected_at is None]
    if not instances:
        if awaited:  # a re-sent note that adds nothing is not audited again
            _audit(session, study, note, actor, now, instances=0, awaited=awaited)
        return Rejection(study.id, 0, False, False, awaited)
    reopened = any(instance.is_chest for instance in instances)
    title = REJECTION_TITLES[note.code]
    for instance in instances:
        instance.rejected_at = now
        instance.rejection_code = note.code
        instance.is_chest = False
        instance.classification_reason = f"rejected at the source: {title} (IOCM rejection note)"
    if reopened:
        _reopen(study, now)
    disputed = (
        note.code in WRONG_PATIENT_CODES
        and study.withdrawn_at is None
        and study.identity_disputed_at is None
        and _has_or_expects_a_draft(session, study.id)
    )
    if disputed:
        mark_disputed(session, study.id, now, claimed_patient=None)
    _audit(session, study, note, actor, now, instances=len(instances), awaited=awaited,
           reopened=reopened, disputed=disputed)  # fmt: skip
    return Rejection(study.id, len(instances), reopened, disputed, awaited)


def rejected_on_arrival_reason(code: str) -> str:
    """The classification reason of an instance a rejection note named before it arrived."""
    return f"rejected at the source: {REJECTION_TITLES[code]} (IOCM rejection note, received first)"


def _await_the_rest(
    session: Session, study: Study, note: RejectionNote, held: set[str], now: datetime
) -> int:
    """Remember the named instances radraft does not hold yet, so each is rejected as it
    arrives (``gateway.recording``); how many were not awaited already. An SR radraft made
    (a PACS rejecting the draft SR it stored) is not awaited: it would never arrive, and the
    study would ask for it with every new instance for ever."""
    missing = note.sop_instance_uids - held
    if missing:  # radraft's own SRs are never received here unless a PACS sends them back
        missing -= set(
            session.scalars(
                select(ReportRevision.sr_sop_instance_uid).where(
                    ReportRevision.sr_sop_instance_uid.in_(missing)
                )
            )
        )
    if not missing:
        return 0
    known = set(
        session.scalars(
            select(AwaitedRejection.sop_instance_uid).where(
                AwaitedRejection.study_id == study.id,
                AwaitedRejection.sop_instance_uid.in_(missing),
            )
        )
    )
    session.add_all(
        AwaitedRejection(study_id=study.id, sop_instance_uid=uid, rejection_code=note.code,
                         noted_at=now)
        for uid in sorted(missing - known)
    )  # fmt: skip
    study.awaited_rejections += len(missing - known)
    return len(missing - known)


def _audit(
    session: Session,
    study: Study,
    note: RejectionNote,
    actor: str,
    now: datetime,
    *,
    instances: int,
    awaited: int,
    reopened: bool = False,
    disputed: bool = False,
) -> None:
    session.add(
        AuditEntry(
            at=now, actor=actor, action=REJECTED_ACTION, object_type="study",
            object_id=str(study.id),
            details={"code": note.code, "instances": instances, "awaited": awaited,
                     "reopened": reopened, "disputed": disputed},
        )
    )  # fmt: skip
    log_event(logger, "study.images_rejected", study_id=study.id, code=note.code,
              instances=instances, awaited=awaited, disputed=disputed)  # fmt: skip


def _reopen(study: Study, now: datetime) -> None:
    """What a new image does: the completion decides the study again once it is stable."""
    study.content_version += 1
    study.last_received_at = now
    current = StudyStatus(study.status)
    if current in STATUSES_RESET_BY_NEW_INSTANCES:
        move_study(study, StudyStatus.RECEIVING)


def _has_or_expects_a_draft(session: Session, study_id: int) -> bool:
    report = exists().where(Report.study_id == study_id)
    job = exists().where(
        DraftingJob.study_id == study_id,
        DraftingJob.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
    )
    return bool(session.scalar(select(report | job)))
