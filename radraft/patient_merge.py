"""Patient merges and updates announced over HL7 (ADT): radraft follows what the RIS and the
PACS did.

A patient registered twice (an emergency under a temporary number, then found to be a known
patient) is merged at the ADT system, which tells every system on its feed: the RIS and the
PACS move the results and images they hold from the prior identifier (MRG-1) to the surviving
patient (PID). radraft's studies under the prior identifier must follow, or the next amendment
would go out under a number that no longer exists, the patient's priors would be split, and a
re-send from the merged PACS would be refused as another patient's (a dispute).

Unlike a correction (``radraft.patient_correction``), nothing delivered is withdrawn: the
receivers merged what they hold themselves, under the same SOP Instance UIDs and order
numbers. Outputs not yet sent are built when they go, so they go under the surviving patient.
A study disputed because its sender already named the surviving patient is settled by the
merge: the contradiction was the merge arriving at the PACS first, and its held outputs go.

An ADT^A47 (the patient's identifier changed) is followed as a merge. An ADT^A08 or A31 (the
patient's name, birth date or sex corrected at registration) gives every study of the
identifier the demographics the ADT system has now, so later outputs match what the RIS and
the PACS show; a study it does not change gets no audit row (A08s are frequent).

Only studies whose Issuer of Patient ID is empty or the identifier's assigning authority follow:
the same number from another authority is another patient. A study the feed set is marked
(``Study.patient_from_adt``), so an image that arrives later with the modality's older values
does not take it back (``gateway.recording``); the merge itself is kept
(``radraft.merge_history``) for images and orders that arrive under the prior identifier later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.identity_dispute import requeue_held
from radraft.logs import log_event
from radraft.merge_history import same_authority
from radraft.models import AuditEntry, PatientMergeRecord, Study
from radraft.patient_correction import PATIENT_FIELDS, patient_of

logger = logging.getLogger(__name__)

MERGED_ACTION = "study.patient_merged"
UPDATED_ACTION = "study.patient_updated"


@dataclass(frozen=True)
class PatientMerge:
    """What an ADT^A40 (or A47) says: the prior identifier and the surviving patient's module."""

    prior_patient_id: str
    prior_issuer: str
    """MRG-1's assigning authority (empty: not given)."""
    patient: dict[str, str]
    """``PATIENT_FIELDS`` of the surviving patient; an empty value leaves a study's own."""
    event: str = "A40"


@dataclass(frozen=True)
class PatientUpdate:
    """What an ADT^A08 (or A31) says: the patient's module as the ADT system has it now."""

    patient: dict[str, str]
    """``PATIENT_FIELDS``; an empty value leaves a study's own."""
    event: str = "A08"


@dataclass(frozen=True)
class MergedStudy:
    """One study a merge moved; ``moved`` names the attributes that changed."""

    study_id: int
    moved: tuple[str, ...]
    dispute_settled: bool
    patient: dict[str, str]
    """The study's Patient module now (for its files)."""


def merge_patient(
    session: Session, merge: PatientMerge, *, actor: str, now: datetime
) -> list[MergedStudy]:
    """Move every study of the prior identifier to the surviving patient (the caller commits
    and rewrites the files, ``gateway.patient_merges``); one audit row per study. The merge is
    kept (``radraft.merge_history``) for what arrives under the prior identifier later."""
    if merge.prior_patient_id == merge.patient["patient_id"] and not merge.prior_issuer:
        return []
    session.add(
        PatientMergeRecord(prior_patient_id=merge.prior_patient_id, prior_issuer=merge.prior_issuer,
                           patient=dict(merge.patient), event=merge.event, merged_at=now)
    )  # fmt: skip
    merged = []
    for study in _studies_of(session, merge.prior_patient_id, merge.prior_issuer):
        moved = _take_patient(study, merge.patient)
        study.patient_from_adt = True
        settled = _settle_dispute(session, study, merge, now)
        details = {"event": merge.event, "moved": list(moved), "dispute_settled": settled}
        _audit(session, study, MERGED_ACTION, actor, now, details)
        log_event(logger, "study.patient_merged", study_id=study.id, dispute_settled=settled)
        merged.append(MergedStudy(study.id, moved, settled, patient_of(study)))
    return merged


def update_patient(
    session: Session, update: PatientUpdate, *, actor: str, now: datetime
) -> list[MergedStudy]:
    """Give every study of the patient's identifier the ADT system's demographics (the caller
    commits and rewrites the files); the studies that changed, one audit row each."""
    patient = update.patient
    updated = []
    for study in _studies_of(session, patient["patient_id"], patient["issuer_of_patient_id"]):
        moved = _take_patient(study, patient)
        study.patient_from_adt = True  # a late image's older values no longer overwrite them
        if not moved:
            continue
        details = {"event": update.event, "moved": list(moved)}
        _audit(session, study, UPDATED_ACTION, actor, now, details)
        log_event(logger, "study.patient_updated", study_id=study.id)
        updated.append(MergedStudy(study.id, moved, False, patient_of(study)))
    return updated


def _studies_of(session: Session, patient_id: str, issuer: str) -> list[Study]:
    """The studies filed under the identifier (locked), but not those withdrawn or issued by
    another authority."""
    studies = session.scalars(
        select(Study)
        .where(Study.patient_id == patient_id, Study.withdrawn_at.is_(None))
        .order_by(Study.id)
        .with_for_update()
    ).all()
    return [study for study in studies if same_authority(issuer, study.issuer_of_patient_id)]


def _take_patient(study: Study, patient: dict[str, str]) -> tuple[str, ...]:
    """Set the non-empty values that differ; their attribute names."""
    moved = tuple(
        name
        for name in PATIENT_FIELDS
        if patient[name] and patient[name] != (getattr(study, name) or "")
    )
    for name in moved:
        setattr(study, name, patient[name])
    return moved


def _audit(
    session: Session, study: Study, action: str, actor: str, now: datetime, details: dict[str, Any]
) -> None:
    """One audit row for the study: attribute names, never values."""
    session.add(
        AuditEntry(at=now, actor=actor, action=action, object_type="study",
                   object_id=str(study.id), details=details)
    )  # fmt: skip


def _settle_dispute(session: Session, study: Study, merge: PatientMerge, now: datetime) -> bool:
    """End a dispute whose refused instance named the surviving patient; re-queue what it held."""
    claim = study.claimed_patient or {}
    if study.identity_disputed_at is None or claim.get("patient_id") != merge.patient["patient_id"]:
        return False
    study.identity_disputed_at = None
    study.claimed_patient = None
    requeue_held(session, study.id, now)
    return True
