"""Chest classification and view detection from thin, real-world headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.header import parse_instance_header
from gateway.selection import (
    Classification,
    HeaderFacts,
    View,
    classify_instance,
    determine_view,
    study_eligibility,
)
from tests.support import cxr_file

DX = "1.2.840.10008.5.1.4.1.1.1.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.mark.parametrize(
    ("facts", "strict", "is_chest", "reason_part"),
    [
        (
            HeaderFacts(sop_class_uid=DX, modality="DX", body_part_examined="CHEST"),
            False,
            True,
            "body part CHEST",
        ),
        (
            HeaderFacts(sop_class_uid=CR, modality="CR", body_part_examined="THORAX"),
            True,
            True,
            "THORAX",
        ),
        (
            HeaderFacts(sop_class_uid=CR, modality="CR", body_part_examined="HIP"),
            False,
            False,
            "HIP is not chest",
        ),
        (
            HeaderFacts(sop_class_uid=CR, modality="CT", body_part_examined="CHEST"),
            False,
            False,
            "modality CT",
        ),
        (HeaderFacts(sop_class_uid=DX, modality="DX"), False, True, "no body part or description"),
        (HeaderFacts(sop_class_uid=DX, modality="DX"), True, False, "strict mode"),
        (
            HeaderFacts(sop_class_uid=CR, modality="CR", series_description="KNEE 2 VIEWS"),
            False,
            False,
            "description names KNEE",
        ),
        (
            HeaderFacts(sop_class_uid=CR, modality="CR", study_description="XR CHEST 1 VIEW"),
            False,
            True,
            "description names chest",
        ),
        (HeaderFacts(sop_class_uid=CR, modality=""), False, False, "modality none"),
        (
            HeaderFacts(sop_class_uid=CT, modality="DX", body_part_examined="CHEST"),
            False,
            False,
            "SOP class CT Image Storage is not a radiograph",
        ),
        (
            HeaderFacts(sop_class_uid=PDF, modality="DX", body_part_examined="CHEST"),
            False,
            False,
            "SOP class Encapsulated PDF Storage is not a radiograph",
        ),
        (
            HeaderFacts(sop_class_uid=COMPREHENSIVE_SR, modality="SR", manufacturer="RADRAFT"),
            False,
            False,
            "radraft's own report SR",
        ),
    ],
)
def test_classification_rules(
    facts: HeaderFacts, strict: bool, is_chest: bool, reason_part: str
) -> None:
    result = classify_instance(facts, strict=strict)
    assert result.is_chest is is_chest
    assert reason_part in result.reason


@pytest.mark.parametrize(
    ("facts", "view", "source"),
    [
        (HeaderFacts(view_position="PA"), View.PA, "ViewPosition"),
        (HeaderFacts(view_position="LL"), View.LATERAL, "ViewPosition"),
        (HeaderFacts(view_code_value="R-10206"), View.AP, "ViewCodeSequence"),
        (HeaderFacts(view_code_meaning="LEFT LATERAL"), View.LATERAL, "ViewCodeSequence"),
        (HeaderFacts(series_description="CHEST AP PORTABLE"), View.AP, "SeriesDescription"),
        (HeaderFacts(protocol_name="THORAX LAT"), View.LATERAL, "ProtocolName"),
        (HeaderFacts(patient_orientation=("P", "F")), View.LATERAL, "PatientOrientation"),
        (HeaderFacts(patient_orientation=("L", "F")), View.FRONTAL, "PatientOrientation"),
        (HeaderFacts(), None, None),
    ],
)
def test_view_fallbacks(facts: HeaderFacts, view: View | None, source: str | None) -> None:
    assert determine_view(facts) == (view, source)


def test_study_is_eligible_when_one_image_is_a_chest_radiograph() -> None:
    decision = study_eligibility([(True, "PA", "body part CHEST"), (False, None, "modality OT")])
    assert decision.eligible
    assert "1 chest radiograph(s) (PA)" in decision.reason
    refused = study_eligibility([(False, None, "modality CT is not CR or DX")])
    assert not refused.eligible
    assert "modality CT" in refused.reason


@pytest.mark.parametrize(
    ("name", "is_chest", "view"),
    [
        ("cr_chest_pa_philips_mono1_j2k-lossy.dcm", True, View.PA),
        ("cr_chest_pa_siim-nih_mono2_jpeg-baseline.dcm", True, View.PA),
        ("non_chest/cr_hip_fuji_mono2_rle.dcm", False, None),
        ("non_chest/cr_tibia_fuji_mono1_jpeg-lossless.dcm", False, View.AP),
    ],
)
def test_real_headers(name: str, is_chest: bool, view: View | None) -> None:
    path: Path = cxr_file(name)
    header = parse_instance_header(path)
    result: Classification = classify_instance(header.facts, strict=False)
    assert result.is_chest is is_chest, result.reason
    assert result.view == view
