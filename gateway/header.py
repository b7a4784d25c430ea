"""Reads the identifying, demographic and classification attributes of a received file.

Reading is tolerant where a bad value costs nothing (a malformed description becomes missing)
and strict where it would mislead: a UID that is too long or not a UID refuses the instance,
because truncating it could merge two patients' studies; a date that is not a date is stored
as missing, so it never reaches an SR or an ORU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException

from gateway.selection import HeaderFacts
from radraft.dicom_errors import UNREADABLE_DICOM_ERRORS
from radraft.errors import RadraftError

HEADER_READ_ERRORS: tuple[type[Exception], ...] = (
    *UNREADABLE_DICOM_ERRORS,
    TypeError,
    EOFError,
    KeyError,
)
"""What reading a header may raise: a file pydicom cannot read, or values it cannot parse."""

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
"""PS3.5 9.1: digits in dot-separated components (leading zeros, which some vendors write,
are tolerated)."""
MAX_UID_LENGTH = 64
DATE_PATTERN = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
"""DA is YYYYMMDD; the ACR-NEMA form YYYY.MM.DD is still seen and normalised."""
TIME_PATTERN = re.compile(r"^([01]\d|2[0-3])([0-5]\d([0-5]\d|60)?)?(\.\d{1,6})?$")
"""TM (PS3.5 6.2): HH, HHMM, HHMMSS or HHMMSS.F{1,6}; 60 seconds allows a leap second."""
OFFSET_PATTERN = re.compile(r"^[+-](0\d|1[0-4])[0-5]\d$")


class UnreadableHeaderError(RadraftError):
    """pydicom could not parse the data set's header."""


class MissingIdentifierError(RadraftError):
    """A required UID is absent, malformed, too long, or differs from the C-STORE request's."""


@dataclass(frozen=True)
class PixelModule:
    """The Image Pixel attributes that fix how long native Pixel Data must be."""

    rows: int | None
    columns: int | None
    bits_allocated: int | None
    samples_per_pixel: int
    number_of_frames: int

    def native_length(self) -> int | None:
        """Bytes of uncompressed Pixel Data these attributes call for; None if they are absent."""
        if not (self.rows and self.columns and self.bits_allocated):
            return None
        bits = (
            self.rows
            * self.columns
            * self.samples_per_pixel
            * self.number_of_frames
            * self.bits_allocated
        )
        return (bits + 7) // 8


@dataclass(frozen=True)
class InstanceHeader:
    """What the gateway stores about one instance, read once on receipt."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    study: dict[str, Any]
    series: dict[str, str | None]
    facts: HeaderFacts
    photometric_interpretation: str | None
    pixels: PixelModule
    instance_number: str | None

    @property
    def rows(self) -> int | None:
        """Rows (0028,0010)."""
        return self.pixels.rows

    @property
    def columns(self) -> int | None:
        """Columns (0028,0011)."""
        return self.pixels.columns


STUDY_TEXT = {
    "accession_number": ("AccessionNumber", 64),
    "patient_id": ("PatientID", 64),
    "issuer_of_patient_id": ("IssuerOfPatientID", 64),
    "patient_name": ("PatientName", 324),
    "patient_sex": ("PatientSex", 16),
    "study_description": ("StudyDescription", 64),
    "referring_physician_name": ("ReferringPhysicianName", 324),
    "reason_for_requested_procedure": ("ReasonForTheRequestedProcedure", 10240),
    "requested_procedure_description": ("RequestedProcedureDescription", 64),
    "requested_procedure_id": ("RequestedProcedureID", 16),
    "dicom_study_id": ("StudyID", 16),
    "admitting_diagnoses": ("AdmittingDiagnosesDescription", 10240),
}
SERIES_ATTRIBUTES = {
    "modality": ("Modality", 16),
    "series_number": ("SeriesNumber", 12),
    "series_description": ("SeriesDescription", 64),
    "body_part_examined": ("BodyPartExamined", 64),
}
IDENTIFYING_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def check_request_uids(
    header: InstanceHeader, *, expected_sop_instance_uid: str, expected_sop_class_uid: str | None
) -> None:
    """``MissingIdentifierError`` if the data set's SOP Instance or Class UID is not the
    request's (a sender that mixes up its files would otherwise file one image as another)."""
    if header.sop_instance_uid != expected_sop_instance_uid:
        raise MissingIdentifierError("SOP Instance UID differs from the C-STORE request")
    if expected_sop_class_uid is not None and header.sop_class_uid != expected_sop_class_uid:
        raise MissingIdentifierError("SOP Class UID differs from the C-STORE request")


def parse_instance_header(source: Path | BinaryIO) -> InstanceHeader:
    """Parse the header (no pixel data) of a Part 10 file or of its bytes up to Pixel Data.

    Raises
    ------
    UnreadableHeaderError
        If pydicom cannot parse the data set.
    MissingIdentifierError
        If a Study, Series or SOP Instance UID or the SOP Class UID is missing, longer than 64
        characters or not a UID.
    """
    try:
        dataset = dcmread(source, stop_before_pixels=True)
    except HEADER_READ_ERRORS as error:
        raise UnreadableHeaderError(type(error).__name__) from error
    except RecursionError as error:
        raise UnreadableHeaderError("sequences nested too deeply") from error
    uids = {keyword: _uid(dataset, keyword) for keyword in IDENTIFYING_UIDS}
    study: dict[str, Any] = {
        name: _text(dataset, keyword, size) for name, (keyword, size) in STUDY_TEXT.items()
    }
    study["patient_birth_date"] = _date(dataset, "PatientBirthDate")
    study["study_date"] = _date(dataset, "StudyDate")
    study["study_time"] = _time(dataset, "StudyTime")
    study["timezone_offset"] = _offset(dataset)
    _fill_from_request_attributes(dataset, study)
    series = {
        name: _text(dataset, keyword, size) for name, (keyword, size) in SERIES_ATTRIBUTES.items()
    }
    view_code = _first_item(dataset, "ViewCodeSequence")
    orientation = _get(dataset, "PatientOrientation")
    facts = HeaderFacts(
        sop_class_uid=uids["SOPClassUID"],
        modality=_upper(series["modality"]),
        manufacturer=_upper(_text(dataset, "Manufacturer", 64)),
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
        study_instance_uid=uids["StudyInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        study=study,
        series=series,
        facts=facts,
        photometric_interpretation=_text(dataset, "PhotometricInterpretation", 16),
        pixels=PixelModule(
            rows=_int(dataset, "Rows"),
            columns=_int(dataset, "Columns"),
            bits_allocated=_int(dataset, "BitsAllocated"),
            samples_per_pixel=_int(dataset, "SamplesPerPixel") or 1,
            number_of_frames=_int(dataset, "NumberOfFrames") or 1,
        ),
        instance_number=_text(dataset, "InstanceNumber", 12),
    )


def _uid(dataset: Dataset, keyword: str) -> str:
    """A required UID, whole and well formed; never truncated (that could merge two studies)."""
    raw = _get(dataset, keyword)
    value = str(raw).strip().strip("\x00").strip() if raw is not None else ""
    if not value:
        raise MissingIdentifierError(f"missing {keyword}")
    if len(value) > MAX_UID_LENGTH:
        raise MissingIdentifierError(f"{keyword} is longer than {MAX_UID_LENGTH} characters")
    if not UID_PATTERN.match(value):
        raise MissingIdentifierError(f"{keyword} is not a UID")
    return value


def _fill_from_request_attributes(dataset: Dataset, study: dict[str, Any]) -> None:
    """Modalities often put the order's details in Request Attributes Sequence only."""
    request = _first_item(dataset, "RequestAttributesSequence")
    for name, (keyword, size) in (
        ("reason_for_requested_procedure", ("ReasonForTheRequestedProcedure", 10240)),
        ("requested_procedure_description", ("RequestedProcedureDescription", 64)),
        ("requested_procedure_id", ("RequestedProcedureID", 16)),
    ):
        if not study[name] and request is not None:
            study[name] = _text(request, keyword, size)
    code = _first_item(dataset, "ProcedureCodeSequence")
    if code is None:
        code = _first_item(dataset, "RequestedProcedureCodeSequence")
    if code is None and request is not None:
        code = _first_item(request, "RequestedProcedureCodeSequence")
    study["procedure_code"] = _code(code) if code is not None else None


def _code(item: Dataset) -> dict[str, str] | None:
    """A code item as ``code``, ``scheme`` and ``meaning``; None without a value and a scheme."""
    value = _text(item, "CodeValue", 64) or _text(item, "LongCodeValue", 1024)
    scheme = _text(item, "CodingSchemeDesignator", 16)
    if not (value and scheme):
        return None
    return {"code": value, "scheme": scheme, "meaning": _text(item, "CodeMeaning", 64) or ""}


def _get(dataset: Dataset | None, keyword: str) -> Any:
    """An element's value, or None when it is absent or pydicom cannot convert it."""
    if dataset is None:
        return None
    try:
        return dataset.get(keyword)
    except (ValueError, TypeError, KeyError, LookupError, BytesLengthException):
        return None  # BytesLengthException: a value whose length does not fit its VR


def _first_item(dataset: Dataset, keyword: str) -> Dataset | None:
    sequence = _get(dataset, keyword)
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
    value = _get(dataset, keyword)
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


def _date(dataset: Dataset, keyword: str) -> str | None:
    """A DA value as YYYYMMDD if it is a real calendar date, else None (stored as missing)."""
    match = DATE_PATTERN.match(_text(dataset, keyword, 10) or "")
    if match is None:
        return None
    try:
        return date(*(int(part) for part in match.groups())).strftime("%Y%m%d")
    except ValueError:
        return None


def _time(dataset: Dataset, keyword: str) -> str | None:
    """A TM value if it is one (colons of the old form removed), else None."""
    text = (_text(dataset, keyword, 16) or "").replace(":", "")
    return text if TIME_PATTERN.match(text) else None


def _offset(dataset: Dataset) -> str | None:
    """Timezone Offset From UTC (0008,0201) as ``+HHMM``/``-HHMM``, else None."""
    text = _text(dataset, "TimezoneOffsetFromUTC", 5) or ""
    return text if OFFSET_PATTERN.match(text) else None


def _int(dataset: Dataset, keyword: str) -> int | None:
    value = _get(dataset, keyword)
    try:
        return int(value) if value is not None and value != "" else None
    except (ValueError, TypeError):
        return None


def _upper(value: str | None) -> str:
    return (value or "").upper()
