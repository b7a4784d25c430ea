"""DICOM SR of a report revision: TID 2000 Basic Diagnostic Imaging Report, with highdicom.

highdicom has no TID 2000 class (its issue 355), so the tree is composed from its content items
in a Comprehensive SR, following the template's table: the root container "Diagnostic Imaging
Report" (LOINC 18748-4) holds the Language of Content Item and Descendants (TID 1204), the
procedure reported where it is known, the observation context (TID 1001: the model as device
observer for a draft, the person for a human revision), and only heading containers from CID
7001 (Findings, Impressions), each with its text item from CID 7002.

Around the tree: the patient and study come from the database, as the gateway validated them,
so a missing type 2 attribute is written empty and never stops an SR; the Specific Character
Set is ISO_IR 192 whenever any value is not ASCII; the request the report answers is in the
Referenced Request Sequence; every earlier revision the text grew from is a Predecessor
Document (PS3.3 C.17.2.3); the model that wrote the first draft stays named as Contributing
Equipment in every revision after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import highdicom as hd
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.valuerep import DA, TM

from radraft import __version__
from radraft.enums import ReportState

RADRAFT_UID_PREFIX = "2.25."
MANUFACTURER = "radraft"
DOCUMENT_TITLE = Code("18748-4", "LN", "Diagnostic Imaging Report")
FINDINGS_SECTION = codes.cid7001.Findings
FINDING = codes.cid7002.Finding
IMPRESSIONS_SECTION = codes.cid7001.Impressions
IMPRESSION = codes.cid7002.Impression
PROCEDURE_REPORTED = codes.DCM.ProcedureReported
PERSON = Code("121006", "DCM", "Person")
DEVICE = Code("121007", "DCM", "Device")
PROCESSING_EQUIPMENT = Code("109102", "DCM", "Processing Equipment")
ENGLISH = Code("en-US", "RFC5646", "English (United States)")
SR_SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "radraft report"
DEMO_NOTICE = "Draft written by a demo model with random weights; not for clinical use."
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
UTF8 = "ISO_IR 192"


@dataclass(frozen=True)
class ModelIdentity:
    """The model that wrote a draft, named in its SR and in every revision that grew from it."""

    name: str
    version: str | None
    demo: bool

    @property
    def model_name(self) -> str:
        """Manufacturer's Model Name (LO, 64): the model's name and version."""
        return f"{self.name} {self.version or ''}".strip()[:64]


@dataclass(frozen=True)
class PatientAndStudy:
    """Patient and General Study module values, as the gateway validated them (may be empty)."""

    study_instance_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    referring_physician_name: str = ""
    study_description: str = ""


@dataclass(frozen=True)
class RequestedProcedure:
    """The request the report answers (Referenced Request Sequence, PS3.3 C.17.2)."""

    accession_number: str = ""
    placer_order_number: str = ""
    filler_order_number: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    procedure_code: Code | None = None


@dataclass(frozen=True)
class EvidenceReference:
    """One source instance the report is about."""

    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class ReportDocument:
    """Everything an SR of one revision says."""

    identity: PatientAndStudy
    revision_key: str
    """Stable identity of the revision (its database id): same key, same SOP Instance UID."""
    revision_number: int
    state: ReportState
    findings: str
    impression: str
    content_datetime: datetime
    """When the revision was made, aware, in the SR's timezone (Timezone Offset From UTC)."""
    author_name: str | None = None
    model: ModelIdentity | None = None
    """Set for a model draft: the device observer."""
    origin_model: ModelIdentity | None = None
    """The model whose draft the report started from: Contributing Equipment of every revision."""
    verifying_organization: str | None = None
    institution_name: str | None = None
    request: RequestedProcedure | None = None
    procedure_reported: Code | None = None
    predecessor_keys: tuple[str, ...] = field(default_factory=tuple)
    """Revision keys of the earlier revisions this one includes."""

    def __post_init__(self) -> None:
        if self.content_datetime.tzinfo is None:
            raise ValueError("the content date and time need a UTC offset")
        if self.state.is_signed and not (self.author_name and self.verifying_organization):
            raise ValueError("a signed report needs a verifying observer and organization")
        if self.model is None and self.author_name is None:
            raise ValueError("a report revision has a model or a person as its author")


def sr_series_uid(study_instance_uid: str) -> str:
    """radraft's SR series of a study: one per study, the same for every revision."""
    return uid.generate_uid(prefix=RADRAFT_UID_PREFIX, entropy_srcs=[study_instance_uid, "sr"])


def sr_instance_uid(study_instance_uid: str, revision_key: str) -> str:
    """SOP Instance UID of a revision's SR: new per revision, stable for the same revision."""
    return uid.generate_uid(
        prefix=RADRAFT_UID_PREFIX, entropy_srcs=[study_instance_uid, "sr", revision_key]
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
    if document.model is not None:
        model = document.model
        device = hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept.from_code(DEVICE),
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=uid.generate_uid(
                    prefix=RADRAFT_UID_PREFIX, entropy_srcs=[model.name, model.version or ""]
                ),
                name=model.name[:64],
                manufacturer_name=MANUFACTURER,
                model_name=model.model_name,
            ),
        )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _heading(title: Code, item: Code, text: str) -> hd.sr.ContainerContentItem:
    heading = hd.sr.ContainerContentItem(
        name=title, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    heading.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=item,
                value=text or "(none)",
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        ]
    )
    return heading


def _content(document: ReportDocument) -> hd.sr.ContainerContentItem:
    """The TID 2000 tree: concept modifiers, observation context, then headings only."""
    root = hd.sr.ContainerContentItem(name=DOCUMENT_TITLE, template_id="2000")
    items: list[hd.sr.ContentItem] = [
        *hd.sr.LanguageOfContentItemAndDescendants(language=hd.sr.CodedConcept.from_code(ENGLISH)),
    ]
    if document.procedure_reported is not None:
        items.append(
            hd.sr.CodeContentItem(
                name=PROCEDURE_REPORTED,
                value=document.procedure_reported,
                relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
            )
        )
    items.extend([*_observer_context(document)])
    items.append(_heading(FINDINGS_SECTION, FINDING, document.findings))
    items.append(_heading(IMPRESSIONS_SECTION, IMPRESSION, document.impression))
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def identity_header(identity: PatientAndStudy, first: EvidenceReference) -> Dataset:
    """The header highdicom copies patient and study from: our values, type 2 present."""
    header = Dataset()
    header.StudyInstanceUID = identity.study_instance_uid
    header.SeriesInstanceUID = first.series_instance_uid
    header.SOPClassUID = first.sop_class_uid
    header.SOPInstanceUID = first.sop_instance_uid
    header.PatientID = identity.patient_id
    if identity.issuer_of_patient_id:
        header.IssuerOfPatientID = identity.issuer_of_patient_id
    header.PatientName = identity.patient_name
    header.PatientBirthDate = identity.patient_birth_date
    header.PatientSex = identity.patient_sex if identity.patient_sex in ("M", "F", "O") else ""
    header.AccessionNumber = identity.accession_number
    header.StudyID = identity.study_id
    header.StudyDate = identity.study_date
    header.StudyTime = identity.study_time
    header.ReferringPhysicianName = identity.referring_physician_name
    if identity.study_description:
        header.StudyDescription = identity.study_description
    return header


def reference_item(reference: EvidenceReference) -> Dataset:
    """An evidence item: the four UIDs highdicom files it under."""
    item = Dataset()
    item.StudyInstanceUID = reference.study_instance_uid
    item.SeriesInstanceUID = reference.series_instance_uid
    item.SOPClassUID = reference.sop_class_uid
    item.SOPInstanceUID = reference.sop_instance_uid
    return item


def _request_item(document: ReportDocument) -> Dataset:
    """One Referenced Request Sequence item; its type 2 attributes present even when empty (the
    issuer and identifier sequences are type 3 here and left out rather than sent empty)."""
    request = document.request or RequestedProcedure()
    item = Dataset()
    item.StudyInstanceUID = document.identity.study_instance_uid
    item.ReferencedStudySequence = []
    item.AccessionNumber = request.accession_number
    item.PlacerOrderNumberImagingServiceRequest = request.placer_order_number
    item.FillerOrderNumberImagingServiceRequest = request.filler_order_number
    item.RequestedProcedureID = request.requested_procedure_id
    item.RequestedProcedureDescription = request.requested_procedure_description
    code = request.procedure_code
    item.RequestedProcedureCodeSequence = [hd.sr.CodedConcept.from_code(code)] if code else []
    return item


def _predecessor(document: ReportDocument, key: str) -> Dataset:
    study_uid = document.identity.study_instance_uid
    reference = Dataset()
    reference.SOPClassUID = COMPREHENSIVE_SR
    reference.SOPInstanceUID = sr_instance_uid(study_uid, key)
    reference.StudyInstanceUID = study_uid
    reference.SeriesInstanceUID = sr_series_uid(study_uid)
    return reference


def _all_text(document: ReportDocument) -> Sequence[str]:
    identity = document.identity
    return (
        *identity.__dict__.values(),
        document.findings,
        document.impression,
        document.author_name or "",
        document.institution_name or "",
        document.verifying_organization or "",
        *(m.model_name for m in (document.model, document.origin_model) if m is not None),
        *(str(value) for value in (document.request or RequestedProcedure()).__dict__.values()),
        document.procedure_reported.meaning if document.procedure_reported else "",
    )


def character_set_for(document: ReportDocument) -> str | None:
    """The Specific Character Set of the document's SR (``character_set_of``)."""
    return character_set_of(_all_text(document))


def character_set_of(texts: Iterable[str]) -> str | None:
    """ISO_IR 192 (UTF-8) when any of the values an object writes is not ASCII; None keeps the
    default repertoire."""
    return None if all(text.isascii() for text in texts) else UTF8


def _equipment(document: ReportDocument) -> list[hd.ContributingEquipment] | None:
    model = document.origin_model or document.model
    if model is None:
        return None
    return [
        hd.ContributingEquipment(
            manufacturer=MANUFACTURER,
            purpose_of_reference=PROCESSING_EQUIPMENT,
            manufacturer_model_name=model.name[:64],
            software_versions=[f"radraft {__version__}", (model.version or "")[:64]],
            contribution_description=(
                DEMO_NOTICE if model.demo else "Report draft generated by this model"
            ),
        )
    ]


class ReportSR(hd.sr.ComprehensiveSR):
    """A revision's SR. Everything is set in the constructor, so an instance is complete.

    highdicom stamps content, instance creation and verification times with the machine's
    local clock and has no parameter for Timezone Offset From UTC; the few attributes it cannot
    be told are set here, once, before the object is handed out.
    """

    def __init__(self, document: ReportDocument, evidence: Sequence[EvidenceReference]) -> None:
        if not evidence:
            raise ValueError("an SR needs at least one source instance")
        moment = document.content_datetime
        signed = document.state.is_signed
        origin = document.origin_model or document.model
        super().__init__(
            evidence=[
                identity_header(document.identity, evidence[0]),
                *(reference_item(reference) for reference in evidence[1:]),
            ],
            content=_content(document),
            series_instance_uid=sr_series_uid(document.identity.study_instance_uid),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=sr_instance_uid(
                document.identity.study_instance_uid, document.revision_key
            ),
            instance_number=document.revision_number,
            manufacturer=MANUFACTURER,
            is_complete=signed,
            is_final=signed,
            is_verified=signed,
            institution_name=document.institution_name,
            verifying_observer_name=document.author_name if signed else None,
            verifying_organization=document.verifying_organization if signed else None,
            requested_procedures=[_request_item(document)] if document.request else None,
            performed_procedure_codes=(
                [document.procedure_reported] if document.procedure_reported else None
            ),
            previous_versions=[_predecessor(document, key) for key in document.predecessor_keys]
            or None,
            contributing_equipment=_equipment(document),
            series_description=(
                f"{SERIES_DESCRIPTION} (DEMO MODEL, NOT FOR CLINICAL USE)"
                if origin is not None and origin.demo
                else SERIES_DESCRIPTION
            ),
            content_date=moment.date(),
            content_time=moment.time().replace(tzinfo=None, microsecond=0),
            specific_character_set=character_set_for(document),
        )
        self.TimezoneOffsetFromUTC = moment.strftime("%z")
        self.InstanceCreationDate = DA(moment.strftime("%Y%m%d"))
        self.InstanceCreationTime = TM(moment.strftime("%H%M%S"))
        if signed:
            self.VerifyingObserverSequence[0].VerificationDateTime = moment.strftime(
                "%Y%m%d%H%M%S%z"
            )
