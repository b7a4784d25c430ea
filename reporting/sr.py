"""DICOM SR of a report revision: a narrative report in the shape of TID 2000, with highdicom.

highdicom has no TID 2000 class (its issue 355), so the tree is composed from its content items
in a Comprehensive SR: document title "Diagnostic Imaging Report" (LOINC 18748-4), observation
context (a device observer naming the model for a draft, a person observer for a human author),
and Findings and Impressions sections of text items. Every source image is referenced in the
Current Requested Procedure Evidence Sequence; patient and study come from the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from radraft import __version__
from radraft.enums import ReportState

RADRAFT_UID_PREFIX = "2.25."
DOCUMENT_TITLE = Code("18748-4", "LN", "Diagnostic Imaging Report")
FINDINGS_SECTION = Code("121070", "DCM", "Findings")
FINDING = Code("121071", "DCM", "Finding")
IMPRESSIONS_SECTION = Code("121072", "DCM", "Impressions")
IMPRESSION = Code("121073", "DCM", "Impression")
COMMENT = Code("121106", "DCM", "Comment")
PERSON = Code("121006", "DCM", "Person")
DEVICE = Code("121007", "DCM", "Device")
PROCESSING_EQUIPMENT = Code("109102", "DCM", "Processing Equipment")
SR_SERIES_NUMBER = 9901
DEMO_NOTICE = "Draft written by a demo model with random weights; not for clinical use."


@dataclass(frozen=True)
class ReportDocument:
    """Everything an SR of one revision says besides what the source images say."""

    study_instance_uid: str
    revision_key: str
    """Stable identity of the revision (e.g. its database id): same key, same SOP Instance UID."""
    revision_number: int
    state: ReportState
    findings: str
    impression: str
    author_name: str | None = None
    model_name: str | None = None
    model_revision: str | None = None
    demo: bool = False
    verifying_observer_name: str | None = None
    verifying_organization: str | None = None
    verified_at: datetime | None = None
    institution_name: str | None = None
    predecessor: Dataset | None = None

    def __post_init__(self) -> None:
        signed = self.state in (ReportState.FINAL, ReportState.AMENDED)
        if signed and not (self.verifying_observer_name and self.verifying_organization):
            raise ValueError("a signed report needs a verifying observer and organization")
        if self.model_name is None and self.author_name is None:
            raise ValueError("a report revision has a model or a person as its author")


def sr_series_uid(study_instance_uid: str) -> str:
    """radraft's SR series of a study: one per study, the same for every revision."""
    return uid.generate_uid(prefix=RADRAFT_UID_PREFIX, entropy_srcs=[study_instance_uid, "sr"])


def sr_instance_uid(document: ReportDocument) -> str:
    """SOP Instance UID of a revision's SR: new per revision, stable for the same revision."""
    return uid.generate_uid(
        prefix=RADRAFT_UID_PREFIX,
        entropy_srcs=[document.study_instance_uid, "sr", document.revision_key],
    )


def _observer_context(document: ReportDocument) -> hd.sr.ObservationContext:
    person = None
    device = None
    if document.author_name:
        person = hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept.from_code(PERSON),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=document.author_name
            ),
        )
    if document.model_name:
        device = hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept.from_code(DEVICE),
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=uid.generate_uid(
                    prefix=RADRAFT_UID_PREFIX,
                    entropy_srcs=[document.model_name, document.model_revision or ""],
                ),
                name=document.model_name[:64],
                manufacturer_name="radraft",
                model_name=f"{document.model_name} {document.model_revision or ''}".strip()[:64],
            ),
        )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _section(title: Code, item: Code, text: str) -> hd.sr.ContainerContentItem:
    section = hd.sr.ContainerContentItem(
        name=title, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    section.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=item,
                value=text or "(none)",
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        ]
    )
    return section


def build_report_sr(document: ReportDocument, evidence: Sequence[Dataset]) -> hd.sr.ComprehensiveSR:
    """The SR of one revision; ``evidence`` are the source images' headers.

    Draft and preliminary: PRELIMINARY / PARTIAL / UNVERIFIED. Signed (final, amended): FINAL /
    COMPLETE / VERIFIED with the Verifying Observer Sequence; an amendment lists the SR it
    replaces in Predecessor Documents.
    """
    signed = document.state in (ReportState.FINAL, ReportState.AMENDED)
    root = hd.sr.ContainerContentItem(name=DOCUMENT_TITLE, template_id="2000")
    items: list[hd.sr.ContentItem] = [*_observer_context(document)]
    if document.demo:
        items.append(
            hd.sr.TextContentItem(
                name=COMMENT,
                value=DEMO_NOTICE,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    items.append(_section(FINDINGS_SECTION, FINDING, document.findings))
    items.append(_section(IMPRESSIONS_SECTION, IMPRESSION, document.impression))
    root.ContentSequence = hd.sr.ContentSequence(items)
    equipment = []
    if document.model_name:
        equipment.append(
            hd.ContributingEquipment(
                manufacturer="radraft",
                purpose_of_reference=PROCESSING_EQUIPMENT,
                manufacturer_model_name=document.model_name[:64],
                software_versions=[f"radraft {__version__}", (document.model_revision or "")[:64]],
                contribution_description=(
                    DEMO_NOTICE if document.demo else "Report draft generated by this model"
                ),
            )
        )
    sr = hd.sr.ComprehensiveSR(
        evidence=list(evidence),
        content=root,
        series_instance_uid=sr_series_uid(document.study_instance_uid),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sr_instance_uid(document),
        instance_number=document.revision_number,
        manufacturer="radraft",
        is_complete=signed,
        is_final=signed,
        is_verified=signed,
        institution_name=document.institution_name,
        verifying_observer_name=document.verifying_observer_name if signed else None,
        verifying_organization=document.verifying_organization if signed else None,
        previous_versions=[document.predecessor] if document.predecessor is not None else None,
        contributing_equipment=equipment or None,
    )
    sr.SeriesDescription = "radraft report"
    if signed and document.verified_at is not None:
        sr.VerifyingObserverSequence[0].VerificationDateTime = document.verified_at.strftime(
            "%Y%m%d%H%M%S"
        )
    return sr
