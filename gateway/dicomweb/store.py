"""STOW-RS: instances posted as multipart/related parts, through the C-STORE intake.

Each part is a Part 10 file written to the spool's ``incoming`` folder as it arrives, then
handed to ``InstanceIntake.accept`` exactly as a C-STORE data set is: the same checks, the same
durable spooling and database record, the same status. The response lists what was stored
(Referenced SOP Sequence) and what was not with its status as the Failure Reason (Failed SOP
Sequence); a part the body ended in the middle of, one over the size limit, or one the disk did
not take (full, or below the spool's free space floor) is a failure and leaves nothing behind.
HTTP status (PS3.18 10.5.3): 200 all stored, 202 some, 409 none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.filereader import read_file_meta_info

from gateway.dicomweb.attributes import JsonDataset, attribute, dataset, sequence
from gateway.intake import InstanceIntake, IntakeLimits, ReceivedInstance
from gateway.integrity import IncompleteDatasetError, verify_part10_file
from gateway.statuses import StoreStatus
from radraft.dicom_errors import UNREADABLE_DICOM_ERRORS
from radraft.dicomweb_paths import instance_url
from radraft.logs import log_event
from radraft.multipart import MediaType, ReceivedPart

PART_READ_ERRORS: tuple[type[Exception], ...] = (
    IncompleteDatasetError,
    *UNREADABLE_DICOM_ERRORS,
    EOFError,
    KeyError,
)
"""What verifying and identifying a received part may raise."""

logger = logging.getLogger(__name__)

STOW_CALLER = "STOW-RS"
"""Recorded as the calling AE title of instances stored over DICOMweb."""


@dataclass
class StowResult:
    """What became of each part, in the order the parts came."""

    stored: list[JsonDataset] = field(default_factory=list)
    failed: list[JsonDataset] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        if not self.failed:
            return 200
        return 202 if self.stored else 409

    def body(self, study_url: str | None) -> JsonDataset:
        elements = [sequence("FailedSOPSequence", self.failed)] if self.failed else []
        elements.append(sequence("ReferencedSOPSequence", self.stored))
        if study_url is not None:
            elements.append(attribute("RetrieveURL", study_url))
        return dataset(*elements)


@dataclass(frozen=True)
class PartIdentity:
    """What a part's file meta and header say it is (empty where unreadable)."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""


def identify(path: Path, limits: IntakeLimits) -> PartIdentity | None:
    """The UIDs of a Part 10 file, or None if it has no readable file meta or is not a whole
    data set within the intake's limits.

    The file is walked before pydicom reads it, as the intake does: pydicom reads up to the
    Study UID through every element before it, so an element flood would cost memory and
    sequences nested thousands deep would raise RecursionError here, before the intake's own
    walk could refuse them.
    """
    try:
        verify_part10_file(
            str(path),
            max_inflated_bytes=limits.max_inflated_bytes,
            max_elements=limits.max_elements,
        )
        meta = read_file_meta_info(path)
        header = dcmread(
            path, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID"]
        )
    except PART_READ_ERRORS:
        return None
    return PartIdentity(
        str(meta.get("MediaStorageSOPClassUID", "")),
        str(meta.get("MediaStorageSOPInstanceUID", "")),
        str(header.get("StudyInstanceUID", "")),
        str(header.get("SeriesInstanceUID", "")),
    )


def store_parts(
    parts: list[ReceivedPart],
    intake: InstanceIntake,
    *,
    study_instance_uid: str | None,
    root: str,
) -> StowResult:
    """Accept each part through the intake; stored ones are named by their WADO-RS URL."""
    result = StowResult()
    for part in parts:
        identity = (
            identify(part.path, intake.limits)
            if part.complete and not (part.too_large or part.unwritten)
            else None
        )
        reason = _refusal(part, identity, study_instance_uid)
        if reason is not None or identity is None:
            status = reason or StoreStatus.CANNOT_UNDERSTAND
            result.failed.append(_failure(identity or PartIdentity(), status))
            continue
        outcome = intake.accept(
            ReceivedInstance(
                path=part.path,
                calling_ae_title=STOW_CALLER,
                sop_class_uid=identity.sop_class_uid,
                sop_instance_uid=identity.sop_instance_uid,
            )
        )
        if outcome.status is StoreStatus.SUCCESS:
            result.stored.append(
                dataset(
                    attribute("ReferencedSOPClassUID", identity.sop_class_uid),
                    attribute("ReferencedSOPInstanceUID", identity.sop_instance_uid),
                    attribute(
                        "RetrieveURL",
                        instance_url(
                            root,
                            identity.study_instance_uid,
                            identity.series_instance_uid,
                            identity.sop_instance_uid,
                        ),
                    ),
                )
            )
        else:
            result.failed.append(_failure(identity, outcome.status))
    return result


def _refusal(
    part: ReceivedPart, identity: PartIdentity | None, study_instance_uid: str | None
) -> StoreStatus | None:
    """Why a part cannot even be offered to the intake, or None."""
    if part.too_large or part.unwritten:
        log_event(
            logger,
            "gateway.stow_part_refused",
            logging.WARNING,
            reason=part.unwritten or "larger than the part limit",
        )
        return StoreStatus.OUT_OF_RESOURCES
    if not part.complete or identity is None:
        return StoreStatus.CANNOT_UNDERSTAND
    if MediaType.parse(part.content_type or "application/dicom").name != "application/dicom":
        return StoreStatus.CANNOT_UNDERSTAND
    if study_instance_uid is not None and identity.study_instance_uid != study_instance_uid:
        return StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    return None


def _failure(identity: PartIdentity, status: StoreStatus) -> JsonDataset:
    return dataset(
        attribute("ReferencedSOPClassUID", identity.sop_class_uid or None),
        attribute("ReferencedSOPInstanceUID", identity.sop_instance_uid or None),
        attribute("FailureReason", int(status)),
    )
