"""Accepting one received instance: verify it, spool it durably, record it, then say so.

The order matters: the file is fsync'd into the spool before the database row commits, and the
SCP answers success only after both. A crash in between leaves at most an unreferenced spool
file of an instance that was never acknowledged, which the sender re-sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.early_header import confirmed_header, take_early_read
from gateway.header import (
    InstanceHeader,
    MissingIdentifierError,
    UnreadableHeaderError,
    check_request_uids,
    parse_instance_header,
)
from gateway.identity import IdentityConflict, IdentityConflictError, identity_key
from gateway.integrity import (
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_MAX_INFLATED_BYTES,
    IncompleteDatasetError,
    VerifiedFile,
    verify_part10_file,
)
from gateway.patient_files import PatientFilesError, file_under_study_patient
from gateway.receiving import early_sync, reception_failure
from gateway.recording import PurgedWhileStoredError, record_instance
from gateway.rejection_notes import apply_rejection_note, read_rejection_note
from gateway.spool import Spool, SpoolError
from gateway.statuses import StoreStatus
from radraft.db import connection_scope, session_scope
from radraft.enums import AuditAction
from radraft.errors import RadraftError
from radraft.free_space import nearly_full
from radraft.identity_dispute import mark_disputed
from radraft.logs import log_event
from radraft.models import AuditEntry
from radraft.patient_correction import claimed_patient
from radraft.settings import Settings
from radraft.timeutil import Clock, utcnow

logger = logging.getLogger(__name__)


class PixelDataMismatchError(RadraftError):
    """Native Pixel Data is shorter than its Image Pixel module says (a cut or forged image)."""


@dataclass(frozen=True)
class IntakeLimits:
    """What one received instance may cost before it is refused (settings, documented there)."""

    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
    max_elements: int = DEFAULT_MAX_ELEMENTS
    min_free_bytes: int = 0
    target_free_bytes: int | None = None
    """Below this the gateway purges for space (``gateway.space_purge``); the intake says so."""


@dataclass(frozen=True)
class StoreOutcome:
    """The C-STORE answer: a status and, on failure, an Error Comment (0000,0902)."""

    status: StoreStatus
    comment: str = ""


@dataclass(frozen=True)
class ReceivedInstance:
    """One C-STORE request whose data set pynetdicom wrote to ``path`` (a Part 10 file)."""

    path: Path
    calling_ae_title: str
    sop_class_uid: str
    sop_instance_uid: str


def intake_for(
    settings: Settings,
    session_factory: sessionmaker[Session],
    spool: Spool,
    on_short_of_space: Callable[[], None] | None = None,
) -> InstanceIntake:
    """The intake as the settings configure it; C-STORE and STOW-RS both take this one.

    ``on_short_of_space``: called when an instance finds the spool's free space below
    ``RADRAFT_SPOOL_TARGET_FREE_BYTES`` (the full gateway wakes its janitor).
    """
    return InstanceIntake(
        session_factory,
        spool,
        strict_body_part=settings.strict_body_part,
        limits=IntakeLimits(
            max_inflated_bytes=settings.dicom_max_inflated_bytes,
            max_elements=settings.dicom_max_elements,
            min_free_bytes=settings.spool_min_free_bytes,
            target_free_bytes=settings.spool_target_free_bytes,
        ),
        origin=settings.dicomweb_base_url,
        on_short_of_space=on_short_of_space,
    )


class InstanceIntake:
    """Turns received files into spooled, recorded instances and a DIMSE status."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        spool: Spool,
        *,
        strict_body_part: bool,
        limits: IntakeLimits | None = None,
        origin: str | None = None,
        clock: Clock = utcnow,
        on_short_of_space: Callable[[], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._origin = origin
        self._spool = spool
        self._strict = strict_body_part
        self._limits = limits or IntakeLimits()
        self._clock = clock
        self._on_short_of_space = on_short_of_space

    @property
    def limits(self) -> IntakeLimits:
        """What one instance may cost here (STOW-RS applies them before it reads a part)."""
        return self._limits

    def accept(self, received: ReceivedInstance) -> StoreOutcome:
        """Verify, spool and record one instance; never raises, answers a status instead."""
        early_read = take_early_read(received.path)
        failure = reception_failure(received.path)
        if failure is not None:
            return self._refuse(received, StoreStatus.OUT_OF_RESOURCES, failure)
        free = self._spool.free_bytes()
        target = self._limits.target_free_bytes
        if self._on_short_of_space is not None and target is not None and free < target:
            self._on_short_of_space()
        if free < self._limits.min_free_bytes:
            return self._refuse(
                received,
                StoreStatus.OUT_OF_RESOURCES,
                f"spool {nearly_full(free)}",
            )
        try:
            verified = verify_part10_file(
                str(received.path),
                max_inflated_bytes=self._limits.max_inflated_bytes,
                max_elements=self._limits.max_elements,
            )
            header = confirmed_header(
                early_read, received.path, verified.pixel_data_offset
            ) or parse_instance_header(received.path)
            check_request_uids(
                header,
                expected_sop_instance_uid=received.sop_instance_uid,
                expected_sop_class_uid=received.sop_class_uid,
            )
            check_pixel_data_length(header, verified)
        except IncompleteDatasetError as error:
            return self._refuse(received, StoreStatus.CANNOT_UNDERSTAND, error.reason)
        except UnreadableHeaderError as error:
            return self._refuse(received, StoreStatus.CANNOT_UNDERSTAND, f"header: {error}")
        except (MissingIdentifierError, PixelDataMismatchError) as error:
            return self._refuse(received, StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, str(error))
        synced = early_sync(received.path)
        if synced.failure is not None:  # the spool's own fsync would not be told of it
            return self._refuse(received, StoreStatus.OUT_OF_RESOURCES, synced.failure)
        # Identity is checked once, under the study's row lock as the rows are written: a copy
        # that conflicts is spooled under a name of its own (its claimed identity), so removing
        # it again never touches the first copy, and a clean instance costs no extra query.
        try:
            relative_path, size = self._spool.store(
                received.path, identity_key(header), durable=synced.durable
            )
        except SpoolError as error:
            return self._refuse(received, StoreStatus.OUT_OF_RESOURCES, str(error))
        try:
            under_adt_patient = self._record_with_retry(
                header, relative_path, size, verified.transfer_syntax, received
            )
        except IdentityConflictError as error:
            self._spool.discard(relative_path)
            return self._refuse_conflict(received, error.conflict, header)
        except PurgedWhileStoredError as error:
            return self._refuse(received, StoreStatus.OUT_OF_RESOURCES, f"{error}; send it again")
        except SQLAlchemyError as error:
            return self._refuse(
                received, StoreStatus.OUT_OF_RESOURCES, f"database: {type(error).__name__}"
            )
        note = read_rejection_note(self._spool.path_of(relative_path), header.sop_class_uid)
        if note is not None:
            try:
                apply_rejection_note(
                    self._session_factory, note,
                    calling_ae_title=received.calling_ae_title, now=self._clock(),
                )  # fmt: skip
            except SQLAlchemyError as error:  # the KOS is kept; its re-send applies it
                return self._refuse(
                    received, StoreStatus.OUT_OF_RESOURCES,
                    f"rejection note not applied: database: {type(error).__name__}",
                )  # fmt: skip
        if under_adt_patient:
            self._file_under_adt_patient(header, received)
        log_event(
            logger,
            "gateway.instance_stored",
            calling_ae=received.calling_ae_title,
            sop_class=header.sop_class_uid,
            transfer_syntax=verified.transfer_syntax,
            size=size,
        )
        return StoreOutcome(StoreStatus.SUCCESS)

    def _refuse(self, received: ReceivedInstance, status: StoreStatus, reason: str) -> StoreOutcome:
        log_event(
            logger,
            "gateway.instance_refused",
            logging.WARNING,
            calling_ae=received.calling_ae_title,
            sop_class=received.sop_class_uid,
            status=status.name,
            reason=reason,
        )
        return StoreOutcome(status, reason[:64])

    def _refuse_conflict(
        self, received: ReceivedInstance, conflict: IdentityConflict, header: InstanceHeader
    ) -> StoreOutcome:
        """Refuse, record the conflict in the audit log (names of attributes, no values), and
        mark a study whose Patient ID it contradicts disputed (``radraft.identity_dispute``),
        keeping the patient the instance named for a correction to adopt."""
        try:
            with session_scope(self._session_factory) as session:
                if conflict.disputed_study_id is not None:
                    mark_disputed(
                        session, conflict.disputed_study_id, self._clock(),
                        claimed_patient=claimed_patient(header.study),
                    )  # fmt: skip
                session.add(
                    AuditEntry(
                        at=self._clock(),
                        actor=f"dicom:{received.calling_ae_title}",
                        action=AuditAction.IDENTITY_CONFLICT,
                        object_type=conflict.object_type,
                        object_id=str(conflict.object_id),
                        details={"differs": list(conflict.differs)},
                    )
                )
        except SQLAlchemyError as error:
            log_event(logger, "gateway.audit_failed", logging.ERROR, error=type(error).__name__)
        return self._refuse(received, StoreStatus.DUPLICATE_SOP_INSTANCE, conflict.comment)

    def _file_under_adt_patient(self, header: InstanceHeader, received: ReceivedInstance) -> None:
        """Rewrite the file of an instance filed under the patient the ADT feed decided (a
        merged-away Patient ID, older demographics). Its rows are committed, so a failure here
        loses nothing: the file keeps what it came with (said in the log) and a re-send, or
        the patient's next merge or update, rewrites it."""
        try:
            file_under_study_patient(
                self._session_factory, self._spool, header.sop_instance_uid,
                actor=f"dicom:{received.calling_ae_title}", now=self._clock(),
            )  # fmt: skip
        except (PatientFilesError, SQLAlchemyError) as error:
            log_event(logger, "gateway.adt_patient_file_not_rewritten", logging.ERROR,
                      error=type(error).__name__)  # fmt: skip

    def _record_with_retry(
        self,
        header: InstanceHeader,
        relative_path: str,
        size: int,
        transfer_syntax: str,
        received: ReceivedInstance,
    ) -> bool:
        """Record the instance (``record_instance``: whether it was filed under the ADT's
        patient); a concurrent first insert of the same study or series retries."""
        attempts = 0
        while True:
            try:
                with connection_scope(self._session_factory) as connection:
                    return record_instance(
                        connection,
                        header,
                        relative_path=relative_path,
                        size=size,
                        transfer_syntax=transfer_syntax,
                        calling_ae_title=received.calling_ae_title,
                        origin=self._origin,
                        strict_body_part=self._strict,
                        now=self._clock(),
                        still_spooled=lambda relative: self._spool.path_of(relative).is_file(),
                    )
            except IntegrityError:
                attempts += 1
                if attempts == 3:
                    raise


def check_pixel_data_length(header: InstanceHeader, verified: VerifiedFile) -> None:
    """Refuse native Pixel Data shorter than Rows x Columns x Samples x Frames x Bits Allocated.

    dcmtk's storescp accepts such a file; radraft refuses it so that the sender, which keeps its
    copy only when we refuse, still has the whole image.
    """
    if not verified.is_native or verified.pixel_data_length is None:
        return
    expected = header.pixels.native_length()
    if expected is not None and verified.pixel_data_length < expected:
        raise PixelDataMismatchError(
            f"Pixel Data is {verified.pixel_data_length} bytes, the header needs {expected}"
        )
