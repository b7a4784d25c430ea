"""Reads the identifying, demographic and classification attributes of a received file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from gateway.selection import HeaderFacts
from radraft.errors import RadraftError


class UnreadableHeaderError(RadraftError):
    """pydicom could not parse the data set's header."""


class MissingIdentifierError(RadraftError):
    """A required UID is absent, or differs from the one the C-STORE request announced."""


@dataclass(frozen=True)
class InstanceHeader:
    """What the gateway stores about one instance, read once on receipt."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    study: dict[str, str | None]
    series: dict[str, str | None]
    facts: HeaderFacts
    photometric_interpretation: str | None
    rows: int | None
    columns: int | None
    instance_number: str | None


STUDY_ATTRIBUTES = {
    "accession_number": ("AccessionNumber", 64),
    "patient_id": ("PatientID", 64),
    "patient_name": ("PatientName", 324),
    "patient_birth_date": ("PatientBirthDate", 8),
    "patient_sex": ("PatientSex", 16),
    "study_date": ("StudyDate", 8),
    "study_time": ("StudyTime", 16),
    "study_description": ("StudyDescription", 64),
    "referring_physician_name": ("ReferringPhysicianName", 324),
    "reason_for_requested_procedure": ("ReasonForTheRequestedProcedure", 10240),
    "requested_procedure_description": ("RequestedProcedureDescription", 64),
    "admitting_diagnoses": ("AdmittingDiagnosesDescription", 10240),
}
SERIES_ATTRIBUTES = {
    "modality": ("Modality", 16),
    "series_number": ("SeriesNumber", 12),
    "series_description": ("SeriesDescription", 64),
    "body_part_examined": ("BodyPartExamined", 64),
}
REQUEST_FALLBACKS = ("ReasonForTheRequestedProcedure", "RequestedProcedureDescription")


def read_instance_header(path: Path, *, expected_sop_instance_uid: str) -> InstanceHeader:
    """Parse the header (no pixel data) and check the identifying UIDs.

    Raises
    ------
    UnreadableHeaderError
        If pydicom cannot parse the data set.
    MissingIdentifierError
        If a Study, Series or SOP Instance UID or the SOP Class UID is missing, or the SOP
        Instance UID differs from the request's Affected SOP Instance UID.
    """
    try:
        dataset = dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, ValueError, TypeError, EOFError, OSError, KeyError) as error:
        raise UnreadableHeaderError(type(error).__name__) from error
    uids = {
        keyword: _text(dataset, keyword, 64)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
    }
    missing = [keyword for keyword, value in uids.items() if not value]
    if missing:
        raise MissingIdentifierError("missing " + ", ".join(missing))
    if uids["SOPInstanceUID"] != expected_sop_instance_uid:
        raise MissingIdentifierError("SOP Instance UID differs from the C-STORE request")
    study = {
        name: _text(dataset, keyword, size) for name, (keyword, size) in STUDY_ATTRIBUTES.items()
    }
    _fill_from_request_attributes(dataset, study)
    series = {
        name: _text(dataset, keyword, size) for name, (keyword, size) in SERIES_ATTRIBUTES.items()
    }
    view_code = _first_item(dataset, "ViewCodeSequence")
    orientation = dataset.get("PatientOrientation")
    facts = HeaderFacts(
        modality=_upper(series["modality"]),
        body_part_examined=_upper(series["body_part_examined"]),
        view_position=_upper(_text(dataset, "ViewPosition", 16)),
        view_code_value=_upper(_text(view_code, "CodeValue", 64) if view_code else None),
        view_code_meaning=_upper(_text(view_code, "CodeMeaning", 64) if view_code else None),
        series_description=_upper(series["series_description"]),
        study_description=_upper(study["study_description"]),
        protocol_name=_upper(_text(dataset, "ProtocolName", 64)),
        patient_orientation=tuple(str(v).upper() for v in _as_list(orientation)),
    )
    return InstanceHeader(
        study_instance_uid=uids["StudyInstanceUID"] or "",
        series_instance_uid=uids["SeriesInstanceUID"] or "",
        sop_instance_uid=uids["SOPInstanceUID"] or "",
        sop_class_uid=uids["SOPClassUID"] or "",
        study=study,
        series=series,
        facts=facts,
        photometric_interpretation=_text(dataset, "PhotometricInterpretation", 16),
        rows=_int(dataset, "Rows"),
        columns=_int(dataset, "Columns"),
        instance_number=_text(dataset, "InstanceNumber", 12),
    )


def _fill_from_request_attributes(dataset: Dataset, study: dict[str, str | None]) -> None:
    """Modalities often put the order's reason in Request Attributes Sequence only."""
    request = _first_item(dataset, "RequestAttributesSequence")
    if request is None:
        return
    if not study["reason_for_requested_procedure"]:
        study["reason_for_requested_procedure"] = _text(
            request, "ReasonForTheRequestedProcedure", 10240
        )
    if not study["requested_procedure_description"]:
        study["requested_procedure_description"] = _text(
            request, "RequestedProcedureDescription", 64
        )


def _first_item(dataset: Dataset, keyword: str) -> Dataset | None:
    try:
        sequence = dataset.get(keyword)
    except (ValueError, TypeError):
        return None
    if sequence:
        item = sequence[0]
        return item if isinstance(item, Dataset) else None
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _text(dataset: Dataset | None, keyword: str, max_length: int) -> str | None:
    """A tolerant string read: bad values become None instead of failing the instance."""
    if dataset is None:
        return None
    try:
        value = dataset.get(keyword)
    except (ValueError, TypeError, KeyError):
        return None
    if value is None:
        return None
    if (
        not isinstance(value, str)
        and hasattr(value, "__iter__")
        and not hasattr(value, "family_name")
    ):
        value = "\\".join(str(item) for item in value)
    text = str(value).strip().strip("\x00").strip()
    return text[:max_length] or None


def _int(dataset: Dataset, keyword: str) -> int | None:
    try:
        value = dataset.get(keyword)
        return int(value) if value is not None else None
    except (ValueError, TypeError):
        return None


def _upper(value: str | None) -> str:
    return (value or "").upper()
