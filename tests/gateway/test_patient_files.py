"""A spooled file rewritten for a corrected patient keeps its other values, in any character set."""

from __future__ import annotations

import io
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from gateway.patient_files import with_patient
from gateway.spool import Spool

PATIENT = {"patient_id": "NEW-1", "issuer_of_patient_id": "", "patient_name": "Müller^Jürgen",
           "patient_birth_date": "19700101", "patient_sex": "M"}  # fmt: skip


def _written(dataset: Dataset) -> Dataset:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return dcmread(io.BytesIO(buffer.getvalue()))


def _japanese_file() -> Dataset:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    dataset.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    dataset.PatientID = "OLD-1"
    dataset.StudyDescription = "胸部単純X線"
    return _written(dataset)


def test_new_values_another_character_set_lacks_are_written_in_utf8_with_the_rest_kept() -> None:
    dataset = _japanese_file()
    with_patient(dataset, PATIENT)
    again = _written(dataset)
    assert again.SpecificCharacterSet == "ISO_IR 192"
    assert (again.PatientID, str(again.PatientName), again.PatientBirthDate) == (
        "NEW-1", "Müller^Jürgen", "19700101",
    )  # fmt: skip
    assert again.StudyDescription == "胸部単純X線", "a value in the old set survives the change"
    assert "IssuerOfPatientID" not in again, "an empty type 3 value is not added"


def test_ascii_values_keep_the_files_character_set() -> None:
    dataset = _japanese_file()
    with_patient(dataset, {**PATIENT, "patient_name": "Smith^John"})
    again = _written(dataset)
    assert again.SpecificCharacterSet == ["", "ISO 2022 IR 87"]
    assert str(again.PatientName) == "Smith^John"
    assert again.StudyDescription == "胸部単純X線"


def test_a_copy_kept_for_an_in_place_rewrite_is_cleaned_up_when_a_crash_left_it(
    tmp_path: Path,
) -> None:
    """The gateway's cleaning of partial receptions also drops the old content a crash left
    kept (the new content is in place); the spooled file itself stays."""
    spool = Spool(tmp_path / "spool", tmp_path / "incoming")
    received = tmp_path / "incoming" / "received.dcm"
    received.write_bytes(b"instance")
    relative, _ = spool.store(received, "identity")
    kept = spool.keep_previous(relative)
    assert kept.read_bytes() == b"instance"

    assert spool.clean_incoming(older_than_seconds=3600) == 0, "a fresh copy may be in use"
    assert spool.clean_incoming(older_than_seconds=0) == 1
    assert not kept.exists()
    assert spool.path_of(relative).read_bytes() == b"instance"
