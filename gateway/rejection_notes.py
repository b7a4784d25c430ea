"""IHE IOCM rejection notes received (C-STORE or STOW-RS): read them and reject what they name.

A rejection note is an ordinary Key Object Selection document (stored like any instance first)
whose document title is one of the rejection codes; ``radraft.image_rejection`` decides what
rejecting means. Only the evidence of the note's own study is read: IOCM puts one note in each
study it rejects from, and a note must not reach into another study (or patient) it does not
belong to. A note is recorded after the KOS itself, in its own transaction, before the sender
is answered: if that fails the sender is told to send it again, and a re-sent note is applied
again (rejecting is idempotent).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import KeyObjectSelectionDocumentStorage
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.dicom_errors import UNREADABLE_DICOM_ERRORS
from radraft.image_rejection import (
    REJECTION_TITLES,
    Rejection,
    RejectionNote,
    reject_instances,
)
from radraft.logs import log_event

logger = logging.getLogger(__name__)

NOT_A_READABLE_NOTE: tuple[type[Exception], ...] = (
    *UNREADABLE_DICOM_ERRORS, AttributeError, KeyError, IndexError, TypeError,
)  # fmt: skip
MAX_REJECTED_INSTANCES = 10_000
"""More than any study holds; a note naming more is read up to this many."""


def read_rejection_note(path: Path, sop_class_uid: str) -> RejectionNote | None:
    """The note's reason and the instances of its own study it names; None for any other
    instance (another SOP class, a KOS with another title, one that cannot be read)."""
    if sop_class_uid != KeyObjectSelectionDocumentStorage:
        return None
    try:
        dataset = dcmread(path, stop_before_pixels=True)
        code = _title_code(dataset)
        if code not in REJECTION_TITLES:
            return None
        study_uid = str(dataset.StudyInstanceUID)
        return RejectionNote(code, study_uid, _named_instances(dataset, study_uid))
    except NOT_A_READABLE_NOTE:
        return None  # stored as an ordinary KOS: what cannot be read is not a rejection


def _title_code(dataset: Dataset) -> str | None:
    titles = dataset.get("ConceptNameCodeSequence") or []
    if len(titles) != 1 or titles[0].get("CodingSchemeDesignator") != "DCM":
        return None
    return str(titles[0].get("CodeValue", ""))


def _named_instances(dataset: Dataset, study_uid: str) -> frozenset[str]:
    named: list[str] = []
    for study in dataset.get("CurrentRequestedProcedureEvidenceSequence") or []:
        if str(study.get("StudyInstanceUID", "")) != study_uid:
            continue
        for series in study.get("ReferencedSeriesSequence") or []:
            for sop in series.get("ReferencedSOPSequence") or []:
                named.append(str(sop.get("ReferencedSOPInstanceUID", "")))
                if len(named) >= MAX_REJECTED_INSTANCES:
                    return frozenset(filter(None, named))
    return frozenset(filter(None, named))


def apply_rejection_note(
    session_factory: sessionmaker[Session],
    note: RejectionNote,
    *,
    calling_ae_title: str,
    now: datetime,
) -> Rejection:
    """Reject what the note names, in one transaction (a database error propagates)."""
    with session_scope(session_factory) as session:
        done = reject_instances(session, note, actor=f"dicom:{calling_ae_title}", now=now)
    log_event(logger, "gateway.rejection_note_applied", code=note.code, instances=done.rejected,
              disputed=done.disputed)  # fmt: skip
    return done
