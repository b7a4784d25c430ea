"""Accepting one received instance: verify it, spool it durably, record it, then say so.

The order matters: the file is fsync'd into the spool before the database row commits, and the
SCP answers success only after both. A crash in between leaves at most an unreferenced spool
file of an instance that was never acknowledged, which the sender re-sends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.header import (
    InstanceHeader,
    MissingIdentifierError,
    UnreadableHeaderError,
    read_instance_header,
)
from gateway.integrity import IncompleteDatasetError, verify_part10_file
from gateway.selection import classify_instance
from gateway.spool import Spool, SpoolError
from gateway.statuses import StoreStatus
from radraft.db import session_scope
from radraft.enums import StudyStatus
from radraft.logs import log_event
from radraft.models import Instance, Series, Study
from radraft.timeutil import Clock, utcnow

logger = logging.getLogger(__name__)

STATUSES_RESET_BY_NEW_INSTANCES = frozenset(
    {
        StudyStatus.RECEIVING,
        StudyStatus.NOT_ELIGIBLE,
        StudyStatus.QUEUED,
        StudyStatus.DRAFTING,
        StudyStatus.DRAFTED,
        StudyStatus.FAILED,
    }
)


@dataclass(frozen=True)
class ReceivedInstance:
    """One C-STORE request whose data set pynetdicom wrote to ``path`` (a Part 10 file)."""

    path: Path
    calling_ae_title: str
    sop_class_uid: str
    sop_instance_uid: str


class InstanceIntake:
    """Turns received files into spooled, recorded instances and a DIMSE status."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        spool: Spool,
        *,
        strict_body_part: bool,
        clock: Clock = utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._spool = spool
        self._strict = strict_body_part
        self._clock = clock

    def accept(self, received: ReceivedInstance) -> StoreStatus:
        """Verify, spool and record one instance; never raises, answers a status instead."""
        try:
            transfer_syntax = verify_part10_file(str(received.path))
            header = read_instance_header(
                received.path, expected_sop_instance_uid=received.sop_instance_uid
            )
        except IncompleteDatasetError as error:
            return self._refuse(received, StoreStatus.CANNOT_UNDERSTAND, error.reason)
        except UnreadableHeaderError as error:
            return self._refuse(received, StoreStatus.CANNOT_UNDERSTAND, f"header: {error}")
        except MissingIdentifierError as error:
            return self._refuse(received, StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, str(error))
        try:
            relative_path, size = self._spool.store(received.path, header.sop_instance_uid)
        except SpoolError as error:
            return self._refuse(received, StoreStatus.OUT_OF_RESOURCES, str(error))
        try:
            self._record_with_retry(header, relative_path, size, transfer_syntax, received)
        except SQLAlchemyError as error:
            return self._refuse(
                received, StoreStatus.OUT_OF_RESOURCES, f"database: {type(error).__name__}"
            )
        log_event(
            logger,
            "gateway.instance_stored",
            calling_ae=received.calling_ae_title,
            sop_class=header.sop_class_uid,
            transfer_syntax=transfer_syntax,
            size=size,
        )
        return StoreStatus.SUCCESS

    def _refuse(self, received: ReceivedInstance, status: StoreStatus, reason: str) -> StoreStatus:
        log_event(
            logger,
            "gateway.instance_refused",
            logging.WARNING,
            calling_ae=received.calling_ae_title,
            sop_class=received.sop_class_uid,
            status=status.name,
            reason=reason,
        )
        return status

    def _record_with_retry(
        self,
        header: InstanceHeader,
        relative_path: str,
        size: int,
        transfer_syntax: str,
        received: ReceivedInstance,
    ) -> None:
        """Record the instance; a concurrent first insert of the same study or series retries."""
        for attempt in range(3):
            try:
                with session_scope(self._session_factory) as session:
                    record_instance(
                        session,
                        header,
                        relative_path=relative_path,
                        size=size,
                        transfer_syntax=transfer_syntax,
                        calling_ae_title=received.calling_ae_title,
                        strict_body_part=self._strict,
                        now=self._clock(),
                    )
                return
            except IntegrityError:
                if attempt == 2:
                    raise


def record_instance(
    session: Session,
    header: InstanceHeader,
    *,
    relative_path: str,
    size: int,
    transfer_syntax: str,
    calling_ae_title: str,
    strict_body_part: bool,
    now: datetime,
) -> Instance:
    """Insert or update the study, series and instance rows of one received instance.

    A new SOP Instance UID bumps the study's ``content_version`` and its ``last_received_at``,
    which restarts the stability timer; a re-sent instance only refreshes its own row.
    """
    study = session.scalar(
        select(Study).where(Study.study_instance_uid == header.study_instance_uid).with_for_update()
    )
    if study is None:
        study = Study(study_instance_uid=header.study_instance_uid, first_received_at=now)
        session.add(study)
    for name, value in header.study.items():
        if value is not None:
            setattr(study, name, value)
    session.flush()

    series = session.scalar(
        select(Series).where(Series.series_instance_uid == header.series_instance_uid)
    )
    if series is None:
        series = Series(series_instance_uid=header.series_instance_uid, study_id=study.id)
        session.add(series)
    for name, value in header.series.items():
        if value is not None:
            setattr(series, name, value)
    session.flush()

    classification = classify_instance(header.facts, strict=strict_body_part)
    instance = session.scalar(
        select(Instance).where(Instance.sop_instance_uid == header.sop_instance_uid)
    )
    if instance is None:
        instance = Instance(
            sop_instance_uid=header.sop_instance_uid, study_id=study.id, series_id=series.id
        )
        session.add(instance)
        study.content_version += 1
        study.last_received_at = now
        if study.status in STATUSES_RESET_BY_NEW_INSTANCES:
            study.status = StudyStatus.RECEIVING
    else:
        instance.receive_count += 1
    instance.sop_class_uid = header.sop_class_uid
    instance.transfer_syntax_uid = transfer_syntax
    instance.spool_path = relative_path
    instance.size_bytes = size
    instance.modality = header.series["modality"]
    instance.body_part_examined = header.series["body_part_examined"]
    instance.view_position = classification.view
    instance.view_source = classification.view_source
    instance.is_chest = classification.is_chest
    instance.classification_reason = classification.reason
    instance.photometric_interpretation = header.photometric_interpretation
    instance.rows = header.rows
    instance.columns = header.columns
    instance.instance_number = header.instance_number
    instance.calling_ae_title = calling_ae_title
    instance.received_at = now
    session.flush()
    return instance
