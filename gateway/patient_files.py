"""The spool's half of a patient correction: the study's files carry the corrected patient.

``radraft.patient_correction`` moves a disputed study to the patient its sender named in the
database. The spooled files still carry the old Patient module, and DICOMweb serves them as
they are, so a viewer would show the old patient's name over the images. Each file is rewritten
with the new values and stored under the spool name of its new identity (the name is a hash of
the identity, the Patient ID included, so that a re-send of the corrected study from the PACS
lands on the same file), in the transaction that moves the rows: a failure keeps the old files
and rows, and the old files go only once the rows point at the new ones.

A demographics update (ADT^A08) keeps the Patient ID, so the spool name stays and the file is
replaced under it; its old content is kept under a second name until the transaction ends, and
put back if it fails.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.identity import identity_key_of
from gateway.spool import Spool, SpoolError, spool_relative_path
from radraft.db import session_scope
from radraft.dicom_errors import UNREADABLE_DICOM_ERRORS
from radraft.errors import RadraftError
from radraft.logs import log_event
from radraft.models import AuditEntry, Instance, Study
from radraft.patient_correction import (
    PatientCorrection,
    correct_patient,
    patient_of,
    spooled_instances,
)

logger = logging.getLogger(__name__)

PATIENT_KEYWORDS = {
    "patient_id": "PatientID",
    "issuer_of_patient_id": "IssuerOfPatientID",
    "patient_name": "PatientName",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
}
"""Where each of ``radraft.patient_correction.PATIENT_FIELDS`` lives in a data set."""
UTF8 = "ISO_IR 192"
ADT_PATIENT_ACTION = "instance.adt_patient_applied"
"""Audit action: an instance came under a merged-away Patient ID, or with demographics the ADT
feed has since corrected, and was filed under the patient as the ADT has it (the study; the
instance's row id, no identifier or name)."""
REWRITE_ERRORS: tuple[type[Exception], ...] = (*UNREADABLE_DICOM_ERRORS, SpoolError)


class PatientFileMove:
    """Files rewritten for a new patient inside one transaction (``transaction``): the new
    files are removed (and those rewritten in place restored) if it fails, the ones the rows no
    longer name once it committed."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._written: list[str] = []
        self._replaced: list[str] = []
        self._previous: list[tuple[str, Path]] = []

    @property
    def files(self) -> int:
        """How many files were rewritten (under a new name or in place)."""
        return len(self._written) + len(self._previous)

    @contextmanager
    def transaction(self, session_factory: sessionmaker[Session]) -> Iterator[Session]:
        """A session whose commit the files follow (``rewrite`` inside it)."""
        try:
            with session_scope(session_factory) as session:
                yield session
        except BaseException:
            for relative in self._written:
                self._spool.discard(relative)
            for relative, previous in self._previous:
                try:
                    self._spool.restore_previous(relative, previous)
                except OSError as error:  # the change's own failure is the one to report
                    log_event(logger, "gateway.patient_file_not_restored", logging.ERROR,
                              error=type(error).__name__)  # fmt: skip
            raise
        for relative in self._replaced:
            self._spool.discard(relative)
        for _, previous in self._previous:
            previous.unlink(missing_ok=True)

    def rewrite(self, session: Session, study_id: int, patient: dict[str, str]) -> None:
        """Rewrite the study's spooled files with ``patient`` and point its rows at them."""
        for instance in spooled_instances(session, study_id):
            self.rewrite_instance(instance, patient)

    def rewrite_instance(self, instance: Instance, patient: dict[str, str]) -> None:
        """Rewrite one instance's spooled file with ``patient`` and point its row at it."""
        identity = _identity(instance, patient)
        with _as_rewrite_failure():
            if spool_relative_path(identity) == instance.spool_path:
                previous = self._spool.keep_previous(instance.spool_path)
                self._previous.append((instance.spool_path, previous))
            relative, size = _rewrite(self._spool, instance, patient, identity)
        if relative != instance.spool_path:
            self._written.append(relative)
            self._replaced.append(instance.spool_path)
        instance.spool_path, instance.size_bytes = relative, size


def correct_study_patient(
    session_factory: sessionmaker[Session],
    spool: Spool,
    study_instance_uid: str,
    *,
    patient_id: str,
    actor: str,
    now: datetime,
) -> PatientCorrection:
    """Correct the study's patient (``radraft.patient_correction.correct_patient``) and its
    spooled files, in one transaction; the old files are deleted after it commits."""
    move = PatientFileMove(spool)
    with move.transaction(session_factory) as session:
        correction = correct_patient(
            session, study_instance_uid, patient_id=patient_id, actor=actor, now=now
        )
        move.rewrite(session, correction.study_id, correction.patient)
    log_event(logger, "gateway.patient_files_rewritten", study_id=correction.study_id,
              files=move.files)  # fmt: skip
    return correction


def file_under_study_patient(
    session_factory: sessionmaker[Session],
    spool: Spool,
    sop_instance_uid: str,
    *,
    actor: str,
    now: datetime,
) -> None:
    """Rewrite a received instance's file with its study's patient, audited.

    The instance came under an identifier an ADT merge folded into that patient, or with
    demographics an ADT update has since corrected (``gateway.recording`` filed its rows under
    the study's); its file still says what it came with, which DICOMweb would serve over the
    images.

    Raises
    ------
    PatientFilesError
        If the file cannot be rewritten (the instance stays stored, its file as it came).
    """
    move = PatientFileMove(spool)
    with move.transaction(session_factory) as session:
        instance = session.scalars(
            select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
        ).one()
        study = session.scalars(
            select(Study).where(Study.id == instance.study_id).with_for_update()
        ).one()
        if instance.purged_at is None:
            move.rewrite_instance(instance, patient_of(study))
        session.add(
            AuditEntry(at=now, actor=actor, action=ADT_PATIENT_ACTION, object_type="study",
                       object_id=str(study.id), details={"instance_id": instance.id})
        )  # fmt: skip


class PatientFilesError(RadraftError):
    """A spooled file of the study could not be rewritten; nothing was changed."""


def _identity(instance: Instance, patient: dict[str, str]) -> str:
    """The instance's identity key under ``patient`` (its spool name derives from it)."""
    return identity_key_of(
        instance.sop_instance_uid,
        instance.study.study_instance_uid,
        instance.series.series_instance_uid,
        instance.sop_class_uid,
        patient["patient_id"],
    )


@contextmanager
def _as_rewrite_failure() -> Iterator[None]:
    """A file that cannot be read, kept, written or stored stops the whole change.

    Raises
    ------
    PatientFilesError
        For any of ``REWRITE_ERRORS``.
    """
    try:
        yield
    except REWRITE_ERRORS as error:
        raise PatientFilesError(
            f"a spooled file of the study cannot be rewritten ({type(error).__name__}); nothing"
            " was changed: send the study again from the PACS, then try again"
        ) from error


def _rewrite(
    spool: Spool, instance: Instance, patient: dict[str, str], identity: str
) -> tuple[str, int]:
    """Store a copy of the instance's file with ``patient``'s values; (relative path, size)."""
    scratch = spool.incoming / f"correction-{uuid.uuid4().hex}.dcm"
    try:
        dataset = dcmread(spool.path_of(instance.spool_path))
        with_patient(dataset, patient)
        dataset.save_as(scratch)
        return spool.store(scratch, identity)
    finally:
        Path(scratch).unlink(missing_ok=True)


def with_patient(dataset: Dataset, patient: dict[str, str]) -> None:
    """Set the Patient module values; text is re-encoded as UTF-8 where the new values need it
    (the data set's own character set may not have their characters)."""
    dataset.decode()  # every text value as str, so it is written again in the set chosen here
    for name, keyword in PATIENT_KEYWORDS.items():
        value = patient.get(name, "")
        if value or keyword in dataset or name != "issuer_of_patient_id":
            setattr(dataset, keyword, value)
    if not all(value.isascii() for value in patient.values()):
        dataset.SpecificCharacterSet = UTF8
