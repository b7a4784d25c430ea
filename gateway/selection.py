"""Which received images are chest radiographs, and which view each one shows.

Real headers are thin: many CR/DX images carry no Body Part Examined. A CR or DX image routed to
radraft by the site's PACS counts as a chest radiograph unless a tag says otherwise; strict mode
asks for an explicit chest body part. Every decision carries a reason a person can read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydicom import uid


class View(StrEnum):
    """View of a chest radiograph (PS3.3 C.8.11.5 View Position, CID 4010 view codes)."""

    PA = "PA"
    """Postero-anterior frontal view."""
    AP = "AP"
    """Antero-posterior frontal view (portable, supine)."""
    LATERAL = "LATERAL"
    """Left or right lateral view."""
    FRONTAL = "FRONTAL"
    """Frontal, but no tag tells PA from AP (e.g. from Patient Orientation alone)."""


RADIOGRAPH_SOP_CLASSES: Mapping[str, str] = {
    uid.ComputedRadiographyImageStorage: "CR Image Storage",
    uid.DigitalXRayImageStorageForPresentation: "DX Image Storage - For Presentation",
    uid.DigitalXRayImageStorageForProcessing: "DX Image Storage - For Processing",
    uid.SecondaryCaptureImageStorage: "Secondary Capture Image Storage",
}
"""SOP classes a chest radiograph can arrive in; any other class is stored and never drafted,
whatever its Modality says (a CT slice or an encapsulated PDF labelled DX is not a radiograph)."""
RADIOGRAPHIC_MODALITIES = frozenset({"CR", "DX"})
OWN_MANUFACTURER = "RADRAFT"
"""Manufacturer (upper-cased) of radraft's own SRs, recognised when a PACS sends them back."""
CHEST_WORDS = re.compile(r"\b(CHEST|THORAX|THORAC\w*|TORAX|LUNGS?|CXR|RIBS?)\b")
OTHER_BODY_PART_WORDS = re.compile(
    r"\b(HIP|PELVIS|KNEE|TIBIA|FIBULA|FEMUR|SKULL|HEAD|HAND|FOOT|ANKLE|WRIST|ELBOW|SHOULDER|"
    r"HUMERUS|FOREARM|LEG|ARM|SPINE|[CLT]SPINE|ABDOMEN|ABD|KUB|BREAST|EXTREMITY|FINGER|TOE|"
    r"CLAVICLE|SACRUM|COCCYX|MANDIBLE|SINUS|NECK|CSPINE|LSPINE|TSPINE)\b"
)
VIEW_POSITION_MAP = {
    "PA": View.PA,
    "AP": View.AP,
    "LL": View.LATERAL,
    "RL": View.LATERAL,
    "LAT": View.LATERAL,
    "LATERAL": View.LATERAL,
}
VIEW_CODE_MAP = {
    "R-10214": View.PA,  # SRT postero-anterior
    "399348003": View.PA,  # SCT postero-anterior
    "R-10206": View.AP,  # SRT antero-posterior
    "272479006": View.AP,  # SCT antero-posterior
    "R-10232": View.LATERAL,  # SRT lateral
    "R-10236": View.LATERAL,  # SRT left lateral
    "R-10230": View.LATERAL,  # SRT right lateral (older code)
    "399173006": View.LATERAL,  # SCT left lateral
    "399198007": View.LATERAL,  # SCT right lateral
}
DESCRIPTION_VIEW_PATTERNS: Sequence[tuple[re.Pattern[str], View]] = (
    (re.compile(r"\b(LAT|LATERAL|LL|RL)\b"), View.LATERAL),
    (re.compile(r"\b(PA|POSTERO-?ANTERIOR|P/A)\b"), View.PA),
    (re.compile(r"\b(AP|ANTERO-?POSTERIOR|A/P|PORTABLE)\b"), View.AP),
)


@dataclass(frozen=True)
class HeaderFacts:
    """The header values the classifier reads from one instance (upper-cased, stripped)."""

    sop_class_uid: str = ""
    modality: str = ""
    manufacturer: str = ""
    body_part_examined: str = ""
    view_position: str = ""
    view_code_value: str = ""
    view_code_meaning: str = ""
    series_description: str = ""
    study_description: str = ""
    protocol_name: str = ""
    patient_orientation: Sequence[str] = ()


@dataclass(frozen=True)
class Classification:
    """Whether an instance is a chest radiograph, its view, and why."""

    is_chest: bool
    view: View | None
    view_source: str | None
    reason: str


def classify_instance(facts: HeaderFacts, *, strict: bool) -> Classification:
    """Classify one instance from its header facts."""
    view, view_source = determine_view(facts)
    if facts.sop_class_uid not in RADIOGRAPH_SOP_CLASSES:
        if facts.manufacturer == OWN_MANUFACTURER and facts.modality == "SR":
            return Classification(False, None, None, "radraft's own report SR, sent back")
        name = uid.UID(facts.sop_class_uid).name if facts.sop_class_uid else "none"
        return Classification(False, view, view_source, f"SOP class {name} is not a radiograph")
    if facts.modality not in RADIOGRAPHIC_MODALITIES:
        modality = facts.modality or "none"
        return Classification(False, view, view_source, f"modality {modality} is not CR or DX")
    body_part = facts.body_part_examined
    if body_part:
        if CHEST_WORDS.search(body_part.replace("_", " ")):
            return Classification(True, view, view_source, f"body part {body_part}")
        return Classification(False, view, view_source, f"body part {body_part} is not chest")
    if strict:
        return Classification(
            False, view, view_source, "strict mode needs an explicit chest Body Part Examined"
        )
    descriptions = " ".join(
        (facts.series_description, facts.study_description, facts.protocol_name)
    )
    if CHEST_WORDS.search(descriptions):
        return Classification(True, view, view_source, "no body part; description names chest")
    other = OTHER_BODY_PART_WORDS.search(descriptions)
    if other:
        return Classification(
            False, view, view_source, f"no body part; description names {other.group(1)}"
        )
    return Classification(
        True, view, view_source, f"no body part or description; {facts.modality} sent to radraft"
    )


def determine_view(facts: HeaderFacts) -> tuple[View | None, str | None]:
    """The view and the tag that told it, trying the most specific tags first."""
    mapped = VIEW_POSITION_MAP.get(facts.view_position)
    if mapped:
        return mapped, "ViewPosition"
    if facts.view_code_value in VIEW_CODE_MAP:
        return VIEW_CODE_MAP[facts.view_code_value], "ViewCodeSequence"
    meaning = facts.view_code_meaning
    if "LATERAL" in meaning:
        return View.LATERAL, "ViewCodeSequence"
    if "POSTERO-ANTERIOR" in meaning or "POSTEROANTERIOR" in meaning:
        return View.PA, "ViewCodeSequence"
    if "ANTERO-POSTERIOR" in meaning or "ANTEROPOSTERIOR" in meaning:
        return View.AP, "ViewCodeSequence"
    for source, text in (
        ("SeriesDescription", facts.series_description),
        ("ProtocolName", facts.protocol_name),
        ("StudyDescription", facts.study_description),
    ):
        for pattern, view in DESCRIPTION_VIEW_PATTERNS:
            if pattern.search(text):
                return view, source
    return _view_from_orientation(facts.patient_orientation)


def _view_from_orientation(orientation: Sequence[str]) -> tuple[View | None, str | None]:
    """Patient Orientation (0020,0020): rows toward A/P means a lateral, toward L/R a frontal."""
    if not orientation:
        return None, None
    row_direction = orientation[0][:1]
    if row_direction in ("A", "P"):
        return View.LATERAL, "PatientOrientation"
    if row_direction in ("L", "R"):
        return View.FRONTAL, "PatientOrientation"
    return None, None


@dataclass(frozen=True)
class StudyEligibility:
    """Whether a study gets a draft, and the reason shown to people."""

    eligible: bool
    reason: str


def study_eligibility(classifications: Iterable[tuple[bool, str | None, str]]) -> StudyEligibility:
    """Decide a study from its instances' (is_chest, view, reason) triples.

    A study is drafted when at least one instance is a chest radiograph; the others are kept.
    """
    items = list(classifications)
    if not items:
        return StudyEligibility(False, "no instances")
    chest = [(view, reason) for is_chest, view, reason in items if is_chest]
    if chest:
        views = ", ".join(sorted({view or "view unknown" for view, _ in chest}))
        return StudyEligibility(True, f"{len(chest)} chest radiograph(s) ({views})")
    reasons = "; ".join(sorted({reason for _, _, reason in items}))
    return StudyEligibility(False, f"no chest radiograph: {reasons}")
