"""QIDO-RS: studies, series and instances matched from the database (PS3.18 10.6).

Matching, as PS3.4 C.2.2.2 describes it for the keys radraft stores: single values match
exactly, ``*`` and ``?`` are wildcards (person names case-insensitively), UID keys take a list,
dates take a range (``20240101-20241231``, ``-20241231``, ``20240101-``), and
``ModalitiesInStudy`` matches a study with any series of those modalities. Keys radraft does
not store are ignored and named in a ``Warning`` header, as PS3.18 asks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gateway.dicomweb.attributes import JsonDataset, attribute, dataset, keyword_of
from radraft.dicomweb_paths import instance_url, series_url, study_url
from radraft.errors import MalformedRequestError
from radraft.models import Instance, Series, Study

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CONTROL_KEYS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
DATE_RANGE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")


class Level(StrEnum):
    """What a query returns."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


STUDY_KEYS: Mapping[str, InstrumentedAttribute[Any]] = {
    "StudyInstanceUID": Study.study_instance_uid,
    "PatientID": Study.patient_id,
    "PatientName": Study.patient_name,
    "PatientBirthDate": Study.patient_birth_date,
    "PatientSex": Study.patient_sex,
    "AccessionNumber": Study.accession_number,
    "StudyDate": Study.study_date,
    "StudyTime": Study.study_time,
    "StudyDescription": Study.study_description,
    "ReferringPhysicianName": Study.referring_physician_name,
    "StudyID": Study.dicom_study_id,
}
SERIES_KEYS: Mapping[str, InstrumentedAttribute[Any]] = {
    "SeriesInstanceUID": Series.series_instance_uid,
    "Modality": Series.modality,
    "SeriesNumber": Series.series_number,
    "SeriesDescription": Series.series_description,
    "BodyPartExamined": Series.body_part_examined,
}
INSTANCE_KEYS: Mapping[str, InstrumentedAttribute[Any]] = {
    "SOPInstanceUID": Instance.sop_instance_uid,
    "SOPClassUID": Instance.sop_class_uid,
    "InstanceNumber": Instance.instance_number,
}
UID_KEYS = frozenset({"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"})
NAME_KEYS = frozenset({"PatientName", "ReferringPhysicianName"})
DATE_KEYS = frozenset({"StudyDate", "PatientBirthDate"})
KEYS_BY_LEVEL: Mapping[Level, tuple[Mapping[str, InstrumentedAttribute[Any]], ...]] = {
    Level.STUDY: (STUDY_KEYS,),
    Level.SERIES: (STUDY_KEYS, SERIES_KEYS),
    Level.INSTANCE: (STUDY_KEYS, SERIES_KEYS, INSTANCE_KEYS),
}


@dataclass(frozen=True)
class Query:
    """A parsed QIDO-RS query string."""

    matches: dict[str, str]
    modalities: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    ignored: list[str] = field(default_factory=list)
    """Keys and parameters radraft cannot match on; said in a Warning header."""


def parse_query(parameters: Sequence[tuple[str, str]], level: Level) -> Query:
    """Read the query parameters of one QIDO-RS request at ``level``."""
    known = {key for table in KEYS_BY_LEVEL[level] for key in table}
    matches: dict[str, str] = {}
    modalities: tuple[str, ...] = ()
    limit, offset = DEFAULT_LIMIT, 0
    ignored: list[str] = []
    for raw_key, value in parameters:
        if raw_key == "limit":
            limit = _count(raw_key, value, upper=MAX_LIMIT)
            continue
        if raw_key == "offset":
            offset = _count(raw_key, value, upper=2**31 - 1)
            continue
        if raw_key in CONTROL_KEYS:
            if raw_key == "fuzzymatching" and value.lower() == "true":
                ignored.append("fuzzymatching")
            continue  # includefield: every attribute radraft stores is always returned
        keyword = keyword_of(raw_key)
        if keyword == "ModalitiesInStudy" and level is Level.STUDY:
            modalities = tuple(_values(value))
        elif keyword in known:
            if keyword in DATE_KEYS and not DATE_RANGE.match(value):
                raise MalformedRequestError(f"{keyword}: not a date or date range: {value!r}")
            matches[keyword] = value
        else:
            ignored.append(raw_key)
    return Query(matches, modalities, limit, offset, ignored)


def _count(name: str, value: str, *, upper: int) -> int:
    if not value.isdigit() or int(value) > upper:
        raise MalformedRequestError(f"{name} must be a whole number up to {upper}")
    return int(value)


def _values(value: str) -> list[str]:
    """A list-of-values match: comma or backslash separated."""
    return [item for item in re.split(r"[,\\]", value) if item]


def _like(pattern: str) -> str:
    escaped = pattern.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return escaped.replace("*", "%").replace("?", "_")


def _condition(keyword: str, column: InstrumentedAttribute[Any], value: str) -> ColumnElement[bool]:
    if keyword in UID_KEYS:
        return column.in_(_values(value))
    if keyword in DATE_KEYS:
        match = DATE_RANGE.match(value)
        if match is None:
            raise MalformedRequestError(f"{keyword}: not a date or date range: {value!r}")
        start, dash, end = match.groups()
        if not dash:
            return column == start
        bounds = [column >= start] if start else []
        bounds += [column <= end] if end else []
        return and_(column.is_not(None), *bounds)
    if "*" in value or "?" in value:
        if keyword in NAME_KEYS:
            return func.lower(column).like(_like(value.lower()), escape="!")
        return column.like(_like(value), escape="!")
    if keyword in NAME_KEYS:
        return func.lower(column) == value.lower()
    return column == value


ORDER = {Level.STUDY: Study.id, Level.SERIES: Series.id, Level.INSTANCE: Instance.id}
"""Results come in the order they were first stored, so limit and offset page steadily."""


Columns = TypeVarTuple("Columns")


def _filtered(statement: Select[*Columns], query: Query, level: Level) -> Select[*Columns]:
    # A withdrawn study is another patient's copy: hidden, as an IOCM archive hides what it
    # rejected (every level's statement has the study in it).
    statement = statement.where(Study.withdrawn_at.is_(None))
    for table in KEYS_BY_LEVEL[level]:
        for keyword, column in table.items():
            if keyword in query.matches:
                statement = statement.where(_condition(keyword, column, query.matches[keyword]))
    if query.modalities:
        statement = statement.where(
            exists().where(Series.study_id == Study.id, Series.modality.in_(query.modalities))
        )
    return statement.order_by(ORDER[level]).limit(query.limit).offset(query.offset)


def find_studies(session: Session, query: Query, root: str) -> list[JsonDataset]:
    """Matching studies, with their modalities and series and instance counts."""
    studies = list(session.scalars(_filtered(select(Study), query, Level.STUDY)))
    ids = [study.id for study in studies]
    modalities: dict[int, set[str]] = {}
    series_counts: dict[int, int] = {}
    for study_id, modality in session.execute(
        select(Series.study_id, Series.modality).where(Series.study_id.in_(ids))
    ):
        series_counts[study_id] = series_counts.get(study_id, 0) + 1
        if modality:
            modalities.setdefault(study_id, set()).add(modality)
    instance_counts = dict(
        session.execute(
            select(Instance.study_id, func.count())
            .where(Instance.study_id.in_(ids), Instance.rejected_at.is_(None))
            .group_by(Instance.study_id)
        ).all()
    )
    return [
        dataset(
            *study_attributes(study, root),
            attribute("ModalitiesInStudy", *sorted(modalities.get(study.id, ()))),
            attribute("NumberOfStudyRelatedSeries", series_counts.get(study.id, 0)),
            attribute("NumberOfStudyRelatedInstances", instance_counts.get(study.id, 0)),
        )
        for study in studies
    ]


def find_series(
    session: Session, query: Query, root: str, *, study_instance_uid: str | None = None
) -> list[JsonDataset]:
    """Matching series (of one study, or of all), with their instance counts."""
    statement = select(Series, Study).join(Study, Study.id == Series.study_id)
    if study_instance_uid is not None:
        statement = statement.where(Study.study_instance_uid == study_instance_uid)
    rows = session.execute(_filtered(statement, query, Level.SERIES)).all()
    counts = dict(
        session.execute(
            select(Instance.series_id, func.count())
            .where(
                Instance.series_id.in_([series.id for series, _ in rows]),
                Instance.rejected_at.is_(None),
            )
            .group_by(Instance.series_id)
        ).all()
    )
    return [
        dataset(
            *study_attributes(study, root),
            *series_attributes(series, study, root),
            attribute("NumberOfSeriesRelatedInstances", counts.get(series.id, 0)),
        )
        for series, study in rows
    ]


def find_instances(
    session: Session,
    query: Query,
    root: str,
    *,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
) -> list[JsonDataset]:
    """Matching instances (of one series, one study, or all)."""
    statement = (
        select(Instance, Series, Study)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Instance.study_id)
        .where(Instance.rejected_at.is_(None))  # an IOCM rejection note hid it
    )
    if study_instance_uid is not None:
        statement = statement.where(Study.study_instance_uid == study_instance_uid)
    if series_instance_uid is not None:
        statement = statement.where(Series.series_instance_uid == series_instance_uid)
    rows = session.execute(_filtered(statement, query, Level.INSTANCE)).all()
    return [
        dataset(
            *study_attributes(study, root),
            *series_attributes(series, study, root),
            *instance_attributes(instance, series, study, root),
        )
        for instance, series, study in rows
    ]


def study_attributes(study: Study, root: str) -> list[tuple[str, dict[str, Any]]]:
    """The study-level return keys (PS3.18 table 10.6.3-3) radraft stores."""
    return [
        attribute("StudyDate", study.study_date),
        attribute("StudyTime", study.study_time),
        attribute("AccessionNumber", study.accession_number),
        attribute("ReferringPhysicianName", study.referring_physician_name),
        attribute("StudyDescription", study.study_description),
        attribute("PatientName", study.patient_name),
        attribute("PatientID", study.patient_id),
        attribute("PatientBirthDate", study.patient_birth_date),
        attribute("PatientSex", study.patient_sex),
        attribute("StudyInstanceUID", study.study_instance_uid),
        attribute("StudyID", study.dicom_study_id),
        attribute("RetrieveURL", study_url(root, study.study_instance_uid)),
    ]


def series_attributes(series: Series, study: Study, root: str) -> list[tuple[str, dict[str, Any]]]:
    """The series-level return keys radraft stores (RetrieveURL is the series')."""
    return [
        attribute("Modality", series.modality),
        attribute("SeriesDescription", series.series_description),
        attribute("BodyPartExamined", series.body_part_examined),
        attribute("SeriesInstanceUID", series.series_instance_uid),
        attribute("SeriesNumber", series.series_number),
        attribute(
            "RetrieveURL", series_url(root, study.study_instance_uid, series.series_instance_uid)
        ),
    ]


def instance_attributes(
    instance: Instance, series: Series, study: Study, root: str
) -> list[tuple[str, dict[str, Any]]]:
    """The instance-level return keys radraft stores (RetrieveURL is the instance's).

    Instance Availability (0008,0056) is UNAVAILABLE once spool retention deleted the file (the
    row stays, so the study's history still lists it; WADO-RS answers 410 for it).
    """
    return [
        attribute("SOPClassUID", instance.sop_class_uid),
        attribute("SOPInstanceUID", instance.sop_instance_uid),
        attribute(
            "InstanceAvailability", "ONLINE" if instance.purged_at is None else "UNAVAILABLE"
        ),
        attribute("AvailableTransferSyntaxUID", instance.transfer_syntax_uid),
        attribute("InstanceNumber", instance.instance_number),
        attribute("Rows", instance.rows),
        attribute("Columns", instance.columns),
        attribute(
            "RetrieveURL",
            instance_url(
                root,
                study.study_instance_uid,
                series.series_instance_uid,
                instance.sop_instance_uid,
            ),
        ),
    ]
