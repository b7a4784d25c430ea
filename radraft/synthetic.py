"""Synthetic chest radiographs (DX, 12-bit) for the demo, tests and benchmarks.

They look like a chest film to the eye (body outline, lungs, mediastinum, spine, ribs, noise)
and carry the tags a real DX chest study has, but no patient: names are made up and every run
with the same seed yields the same pixels and UIDs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence

UID_ROOT = "1.2.826.0.1.3680043.10.1234."
"""Prefix of synthetic UIDs (deterministic per seed via ``pydicom.uid.generate_uid`` entropy)."""

ENCODABLE_TRANSFER_SYNTAXES = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.RLELossless,
    uid.JPEG2000Lossless,
)
"""Syntaxes pydicom and its plugins can write; dcmtk makes JPEG lossless in the tests."""

MAX_VALUE_12_BIT = 4095


@dataclass(frozen=True)
class SyntheticPatient:
    """Made-up identity of a synthetic study."""

    name: str = "SYNTHETIC^CHEST"
    patient_id: str = "SYN0001"
    birth_date: str = "19600101"
    sex: str = "F"


def synthetic_uid(seed: str) -> str:
    """A valid, deterministic UID under radraft's synthetic root."""
    return uid.generate_uid(prefix=UID_ROOT, entropy_srcs=[seed])


def chest_pixels(rows: int, columns: int, *, view: str, seed: int) -> np.ndarray:
    """A 12-bit chest-like image (MONOCHROME2: air dark, bone bright)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    y /= rows
    x /= columns
    image = np.full((rows, columns), 300.0, dtype=np.float32)
    body = ((x - 0.5) / 0.46) ** 2 + ((y - 0.55) / 0.55) ** 2 < 1
    image[body] = 2300.0
    if view == "LATERAL":
        lung = ((x - 0.5) / 0.25) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1
        image[lung] -= 1100
        spine = np.abs(x - 0.78) < 0.05
        heart = ((x - 0.38) / 0.14) ** 2 + ((y - 0.6) / 0.15) ** 2 < 1
    else:
        left = ((x - 0.32) / 0.14) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1
        right = ((x - 0.68) / 0.14) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1
        image[left | right] -= 1200
        spine = np.abs(x - 0.5) < 0.035
        heart = ((x - 0.55) / 0.12) ** 2 + ((y - 0.62) / 0.12) ** 2 < 1
        for rib in range(9):
            centre = 0.2 + rib * 0.065
            arc = np.abs(y - (centre + 0.08 * np.cos((x - 0.5) * 6))) < 0.008
            image[arc & (left | right)] += 450
    image[heart] += 700
    image[spine & body] += 1000
    image += rng.normal(0, 40, size=image.shape).astype(np.float32)
    return np.clip(image, 0, MAX_VALUE_12_BIT).astype(np.uint16)


def make_chest_instance(
    *,
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    view: str,
    accession_number: str,
    patient: SyntheticPatient,
    rows: int = 1024,
    columns: int = 1024,
    seed: int = 0,
    indication: str = "Cough and fever. Evaluate for pneumonia.",
    body_part: str | None = "CHEST",
    modality: str = "DX",
    series_number: int = 1,
) -> Dataset:
    """One DX For Presentation chest image, uncompressed explicit VR little endian."""
    ds = Dataset()
    ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    today = date(2026, 11, 1).strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = accession_number
    ds.StudyID = accession_number[-8:]
    ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
    ds.StudyDescription = "XR CHEST PA AND LATERAL"
    ds.RequestedProcedureDescription = "XR CHEST 2 VIEWS"
    ds.ReasonForTheRequestedProcedure = indication
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.SeriesDescription = "LAT" if view == "LATERAL" else view
    if body_part:
        ds.BodyPartExamined = body_part
    ds.ViewPosition = "LL" if view == "LATERAL" else view
    ds.PatientOrientation = ["A", "F"] if view == "LATERAL" else ["L", "F"]
    ds.ImageLaterality = "U"
    ds.Manufacturer = "radraft synthetic generator"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.ImagerPixelSpacing = [0.143, 0.143]
    ds.PixelSpacing = [0.143, 0.143]
    ds.DetectorType = "DIRECT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = (
        ("R-10232", "SRT") if view == "LATERAL" else ("R-10214", "SRT")
    )
    code.CodeMeaning = "lateral" if view == "LATERAL" else "postero-anterior"
    ds.ViewCodeSequence = DicomSequence([code])
    ds.PixelData = chest_pixels(rows, columns, view=view, seed=seed).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.ImplementationClassUID = uid.UID(UID_ROOT + "1")
    return ds


def encode(dataset: Dataset, transfer_syntax: str) -> Dataset:
    """Re-encode a synthetic image in ``transfer_syntax`` (in place; returns it)."""
    if transfer_syntax in (uid.RLELossless, uid.JPEG2000Lossless):
        dataset.compress(transfer_syntax)
    else:
        dataset.file_meta.TransferSyntaxUID = uid.UID(transfer_syntax)
    return dataset


def make_chest_study(
    seed: int,
    *,
    transfer_syntax: str = uid.ExplicitVRLittleEndian,
    views: Sequence[str] = ("PA", "LATERAL"),
    rows: int = 1024,
    columns: int = 1024,
    patient: SyntheticPatient | None = None,
    body_part: str | None = "CHEST",
    modality: str = "DX",
) -> list[Dataset]:
    """A synthetic study: one series and one image per view, deterministic in ``seed``."""
    patient = patient or SyntheticPatient(patient_id=f"SYN{seed:04d}")
    study_uid = synthetic_uid(f"study-{seed}")
    accession = "ACC" + hashlib.sha256(f"acc-{seed}".encode()).hexdigest()[:10].upper()
    datasets = []
    for index, view in enumerate(views):
        ds = make_chest_instance(
            study_instance_uid=study_uid,
            series_instance_uid=synthetic_uid(f"series-{seed}-{view}"),
            sop_instance_uid=synthetic_uid(f"instance-{seed}-{view}"),
            view=view,
            accession_number=accession,
            patient=patient,
            rows=rows,
            columns=columns,
            seed=seed * 10 + index,
            body_part=body_part,
            modality=modality,
            series_number=index + 1,
        )
        datasets.append(encode(ds, transfer_syntax))
    return datasets
