"""Patient identity at the door: a UID that arrives again must mean the same patient and study.

A SOP Instance UID re-sent with another Patient ID, Study or Series Instance UID or SOP Class,
or a new instance of a known study under another Patient ID, is refused: accepting it would
either overwrite the first copy or file the second patient's image (and demographics) under
the first patient's study, and the study's SR would then go out with the wrong patient.

A Patient ID that an ADT merge folded into the study's patient is the same patient
(``radraft.merge_history``): the instance is filed under the study's patient, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection, select

from gateway.header import InstanceHeader
from radraft.errors import RadraftError
from radraft.merge_history import merged_into
from radraft.models import Study

SHORT_LABELS = {
    "PatientID": "Patient ID",
    "StudyInstanceUID": "Study",
    "SeriesInstanceUID": "Series",
    "SOPClassUID": "SOP Class",
}
"""Words for the 64-character Error Comment; the audit row keeps the attribute keywords."""


class IdentityConflictError(RadraftError):
    """The instance contradicts what radraft already holds; ``differs`` names the attributes."""

    def __init__(self, conflict: IdentityConflict) -> None:
        super().__init__(conflict.comment)
        self.conflict = conflict


@dataclass(frozen=True)
class IdentityConflict:
    """Which known row the instance contradicts, and in which attributes (names, no values)."""

    object_type: str
    """``instance`` (a re-used SOP Instance UID), ``series`` (a known series of another study)
    or ``study`` (a known study of another patient)."""
    object_id: int
    differs: tuple[str, ...]
    disputed_study_id: int | None = None
    """The known study whose patient the instance contradicts (only when Patient ID differs)."""

    @property
    def comment(self) -> str:
        """The C-STORE Error Comment (LO, 64 characters): what conflicts, never a value."""
        what = {"instance": "SOP Instance", "series": "Series", "study": "Study"}[self.object_type]
        labels = ", ".join(SHORT_LABELS.get(name, name) for name in self.differs)
        return f"{what} UID known with other {labels}"[:64]


class KnownStudy(Protocol):
    """What the identity check reads of a study's row (an ORM object or a selected row)."""

    @property
    def id(self) -> int: ...
    @property
    def patient_id(self) -> str | None: ...


class KnownSeries(Protocol):
    """What the identity check reads of a series' row."""

    @property
    def id(self) -> int: ...
    @property
    def study_id(self) -> int: ...


class KnownInstance(Protocol):
    """What the identity check reads of an instance's row."""

    @property
    def id(self) -> int: ...
    @property
    def study_id(self) -> int: ...
    @property
    def series_id(self) -> int: ...
    @property
    def sop_class_uid(self) -> str: ...


def identity_key(header: InstanceHeader) -> str:
    """The identity an instance claims; it names the spool file, so conflicts never overwrite."""
    return identity_key_of(
        header.sop_instance_uid,
        header.study_instance_uid,
        header.series_instance_uid,
        header.sop_class_uid,
        header.study.get("patient_id") or "",
    )


def identity_key_of(
    sop_instance_uid: str,
    study_instance_uid: str,
    series_instance_uid: str,
    sop_class_uid: str,
    patient_id: str,
) -> str:
    """``identity_key`` from its parts (a stored instance's rows, after a patient correction)."""
    return "\x00".join(
        (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, patient_id)
    )


def _same_patient(known: str | None, claimed: str | None) -> bool:
    """Patient IDs agree; a first copy without one accepts any (nothing to contradict)."""
    return not known or (known == claimed)


def find_conflict(
    connection: Connection,
    header: InstanceHeader,
    *,
    study: KnownStudy | None,
    series: KnownSeries | None,
    instance: KnownInstance | None,
) -> IdentityConflict | None:
    """The conflict between ``header`` and the database, or None if the instance fits.

    ``study``, ``series`` and ``instance`` are the rows already found by the header's Study,
    Series and SOP Instance UIDs (None where there is none), so a clean instance costs no query;
    only an instance that belongs to another study reads that study.
    """
    patient_id = header.study.get("patient_id")
    if instance is not None:
        in_same_study = study is not None and instance.study_id == study.id
        owner: KnownStudy | None = (
            study if in_same_study else _study_by_id(connection, instance.study_id)
        )
        differs = [
            name
            for name, same in (
                ("PatientID", _same_patient(owner.patient_id if owner else None, patient_id)),
                ("StudyInstanceUID", in_same_study),
                ("SeriesInstanceUID", series is not None and instance.series_id == series.id),
                ("SOPClassUID", instance.sop_class_uid == header.sop_class_uid),
            )
            if not same
        ]
        if "PatientID" in differs and owner is not None and _merged(connection, header, owner):
            differs.remove("PatientID")
        if not differs:
            return None
        disputed = owner.id if owner is not None and "PatientID" in differs else None
        return IdentityConflict("instance", instance.id, tuple(differs), disputed)
    if series is not None and (study is None or series.study_id != study.id):
        return IdentityConflict("series", series.id, ("StudyInstanceUID",))
    if (
        study is not None
        and not _same_patient(study.patient_id, patient_id)
        and not _merged(connection, header, study)
    ):
        return IdentityConflict("study", study.id, ("PatientID",), study.id)
    return None


def _merged(connection: Connection, header: InstanceHeader, known: KnownStudy) -> bool:
    """Whether the instance's Patient ID was merged into the study's patient (an ADT merge
    radraft was told of): a view sent late under the prior identifier, not another patient."""
    return merged_into(
        connection,
        header.study.get("patient_id"),
        header.study.get("issuer_of_patient_id"),
        known.patient_id or "",
    )


def _study_by_id(connection: Connection, study_id: int) -> KnownStudy | None:
    """The study that holds a known instance of another study (only a conflict reads it)."""
    return connection.execute(
        select(Study.id, Study.patient_id).where(Study.id == study_id)
    ).first()
