"""Every SR radraft writes passes dciodvfy, renders with dsr2html, and reads back right."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.models import Study
from radraft.settings import Settings
from reporting.delivery.outputs import build_sr_dataset, load_bundle
from reporting.rejection_note import RejectionNote
from reporting.sr import (
    COMPREHENSIVE_SR,
    EvidenceReference,
    PatientAndStudy,
    sr_instance_uid,
    sr_series_uid,
)
from tests.reporting.factories import full_history
from tests.support import require_tool

EXPECTED_FLAGS = {
    "DRAFTED": ("PRELIMINARY", "PARTIAL", "UNVERIFIED"),
    "PRELIMINARY": ("PRELIMINARY", "PARTIAL", "UNVERIFIED"),
    "FINAL": ("FINAL", "COMPLETE", "VERIFIED"),
    "AMENDED": ("FINAL", "COMPLETE", "VERIFIED"),
}


def concept_meanings(dataset: object) -> list[str]:
    """Code meanings of a content tree, depth first."""
    out = []
    for item in getattr(dataset, "ContentSequence", []):
        out.append(item.ConceptNameCodeSequence[0].CodeMeaning)
        out.extend(concept_meanings(item))
    return out


def texts(dataset: object) -> list[str]:
    out = []
    for item in getattr(dataset, "ContentSequence", []):
        if item.ValueType == "TEXT":
            out.append(item.TextValue)
        out.extend(texts(item))
    return out


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sr_of_every_state_is_valid_and_says_what_it_should(
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    dciodvfy = require_tool("dciodvfy")
    dsr2html = require_tool("dsr2html")
    with session_scope(session_factory) as session:
        study = session.get(Study, received_study.id)
        assert study is not None
        revision_ids = [revision.id for revision in full_history(session, study)]
    written = []
    for revision_id in revision_ids:
        with session_scope(session_factory) as session:
            bundle = load_bundle(session, revision_id, spool_dir=settings.spool_dir)
            state = bundle.revision.state
            path = tmp_path / f"{state}.dcm"
            build_sr_dataset(bundle, settings).save_as(path, enforce_file_format=True)
        written.append((state, path))

        result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if "Error" in line]
        assert errors == [], f"{state}: {errors}"
        rendered = subprocess.run([dsr2html, str(path)], capture_output=True, text=True)
        assert rendered.returncode == 0, rendered.stderr
        assert "Diagnostic Imaging Report" in rendered.stdout

        sr = dcmread(path)
        flags = (sr.PreliminaryFlag, sr.CompletionFlag, sr.VerificationFlag)
        assert flags == EXPECTED_FLAGS[state]
        assert sr.StudyInstanceUID == received_study.study_instance_uid
        assert sr.PatientID == received_study.patient_id
        assert sr.AccessionNumber == received_study.accession_number
        assert sr.ContentTemplateSequence[0].TemplateIdentifier == "2000"
        assert sr.ConceptNameCodeSequence[0].CodeValue == "18748-4"
        evidence = {
            item.ReferencedSOPInstanceUID
            for series in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
            for item in series.ReferencedSOPSequence
        }
        assert len(evidence) == 2
        meanings = concept_meanings(sr)
        assert "Findings" in meanings
        assert "Impressions" in meanings
        if state == "DRAFTED":
            assert "Device Observer Name" in meanings
            assert any("demo model" in text.lower() for text in texts(sr))
            equipment = next(
                item for item in sr.ContributingEquipmentSequence if item.Manufacturer == "radraft"
            )
            assert equipment.ManufacturerModelName == "radraft-demo-llava-tiny"
        else:
            assert "Person Observer Name" in meanings
        if state in ("FINAL", "AMENDED"):
            verifier = sr.VerifyingObserverSequence[0]
            assert str(verifier.VerifyingObserverName) == "Attending^Alan"
            assert verifier.VerifyingOrganization == settings.institution_name
        # PS3.3 C.17.2.3: each revision names every earlier SR its text grew from.
        earlier_uids = [dcmread(path).SOPInstanceUID for _, path in written[:-1]]
        predecessors = [
            item.ReferencedSOPInstanceUID
            for study in sr.get("PredecessorDocumentsSequence", [])
            for series in study.ReferencedSeriesSequence
            for item in series.ReferencedSOPSequence
        ]
        assert predecessors == earlier_uids
    uids = {dcmread(path).SOPInstanceUID for _, path in written}
    series = {dcmread(path).SeriesInstanceUID for _, path in written}
    assert len(uids) == 4, "a new SOP Instance UID per revision"
    assert len(series) == 1, "one radraft SR series per study"


@pytest.mark.parametrize("institution", ["Radiology Dept", "Hôpital Saint-Éloi"])
def test_a_rejection_note_declares_utf8_for_any_value_it_writes_outside_ascii(
    institution: str, tmp_path: Path
) -> None:
    """The note writes the institution beside the identity; a name outside ASCII there alone
    must declare ISO_IR 192, or its bytes mean nothing to the PACS."""
    study_uid = "1.2.826.0.1.3680043.9.3811.92"
    identity = PatientAndStudy(study_uid, "P1", "", "Doe^Jane", "", "F", "A1", "", "", "", "", "")
    rejected = [EvidenceReference(study_uid, sr_series_uid(study_uid), COMPREHENSIVE_SR,
                                  sr_instance_uid(study_uid, "1"))]  # fmt: skip
    note = RejectionNote(identity, rejected, moment=datetime.now(UTC), institution_name=institution)
    note.save_as(tmp_path / "note.dcm", enforce_file_format=True)
    read = dcmread(tmp_path / "note.dcm")
    assert read.InstitutionName == institution
    expected = None if institution.isascii() else "ISO_IR 192"
    assert read.get("SpecificCharacterSet") == expected
