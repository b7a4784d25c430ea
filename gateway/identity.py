"""Patient identity at the door: a UID that arrives again must mean the same patient and study.

A SOP Instance UID re-sent with another Patient ID, Study or Series Instance UID or SOP Class,
or a new instance of a known study under another Patient ID, is refused: accepting it would
either overwrite the first copy or file the second patient's image (and demographics) under
the first patient's study, and the study's SR would then go out with the wrong patient.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.header import InstanceHeader
from radraft.errors import RadraftError
from radraft.models import Instance, Series, Study

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

    @property
    def comment(self) -> str:
        """The C-STORE Error Comment (LO, 64 characters): what conflicts, never a value."""
        what = {"instance": "SOP Instance", "series": "Series", "study": "Study"}[self.object_type]
        labels = ", ".join(SHORT_LABELS.get(name, name) for name in self.differs)
        return f"{what} UID known with other {labels}"[:64]


def identity_key(header: InstanceHeader) -> str:
    """The identity an instance claims; it names the spool file, so conflicts never overwrite."""
    return "\x00".join(
        (
            header.sop_instance_uid,
            header.study_instance_uid,
            header.series_instance_uid,
            header.sop_class_uid,
            header.study.get("patient_id") or "",
        )
    )


def _same_patient(known: str | None, claimed: str | None) -> bool:
    """Patient IDs agree; a first copy without one accepts any (nothing to contradict)."""
    return not known or (known == claimed)


def find_conflict(session: Session, header: InstanceHeader) -> IdentityConflict | None:
    """The conflict between ``header`` and the database, or None if the instance fits."""
    patient_id = header.study.get("patient_id")
    row = session.execute(
        select(Instance.id, Instance.sop_class_uid, Study.study_instance_uid, Study.patient_id)
        .add_columns(Series.series_instance_uid)
        .join(Study, Study.id == Instance.study_id)
        .join(Series, Series.id == Instance.series_id)
        .where(Instance.sop_instance_uid == header.sop_instance_uid)
    ).first()
    if row is not None:
        instance_id, sop_class, study_uid, known_patient, series_uid = row
        differs = [
            name
            for name, same in (
                ("PatientID", _same_patient(known_patient, patient_id)),
                ("StudyInstanceUID", study_uid == header.study_instance_uid),
                ("SeriesInstanceUID", series_uid == header.series_instance_uid),
                ("SOPClassUID", sop_class == header.sop_class_uid),
            )
            if not same
        ]
        return IdentityConflict("instance", instance_id, tuple(differs)) if differs else None
    series = session.execute(
        select(Series.id, Study.study_instance_uid)
        .join(Study, Study.id == Series.study_id)
        .where(Series.series_instance_uid == header.series_instance_uid)
    ).first()
    if series is not None and series.study_instance_uid != header.study_instance_uid:
        return IdentityConflict("series", series.id, ("StudyInstanceUID",))
    study = session.execute(
        select(Study.id, Study.patient_id).where(
            Study.study_instance_uid == header.study_instance_uid
        )
    ).first()
    if study is not None and not _same_patient(study.patient_id, patient_id):
        return IdentityConflict("study", study.id, ("PatientID",))
    return None
