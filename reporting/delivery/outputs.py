"""Builds a revision's outputs from the database: its SR and its ORU^R01.

Patient and study values come from the study row (validated by the gateway); the source files
are read only to confirm what the SR references, so an instance that vanished from the spool
fails the output with a reason instead of producing an SR about images nobody has. An instance
whose file spool retention deleted (``Instance.purged_at``) is referenced from its row: the
gateway confirmed that file when it stored it, and the PACS that sent it keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.sr.coding import Code
from sqlalchemy import not_, select
from sqlalchemy.orm import Session

from radraft.dicom_errors import UNREADABLE_DICOM_ERRORS
from radraft.enums import ReportState
from radraft.errors import RadraftError
from radraft.hl7ack import hl7_timestamp
from radraft.models import Instance, Order, Report, ReportRevision, Series, Study, User
from radraft.orders import order_for_study, order_numbers
from radraft.patient_correction import DELIVERED_AS, patient_of
from radraft.restore_epochs import epoch, revision_boundaries
from radraft.settings import Settings
from reporting.hl7 import CodedValue, OruContent, build_oru
from reporting.sr import (
    EvidenceReference,
    ModelIdentity,
    PatientAndStudy,
    ReportDocument,
    ReportSR,
    RequestedProcedure,
)


class MissingRevisionError(RadraftError):
    """The outbox row names a revision (or study) that no longer exists."""


class OutputBuildError(RadraftError):
    """An output cannot be built from what radraft holds; ``reason`` goes on the outbox row."""


HL7_TO_DICOM_SCHEME = {"CPT": "C4", "CPT4": "C4", "C4": "C4", "LOINC": "LN", "LN": "LN",
                       "SNOMED": "SCT", "SCT": "SCT", "SNM": "SNM", "RADLEX": "RADLEX"}  # fmt: skip
"""HL7 coding system names seen in OBR-4 and the DICOM Coding Scheme Designator of each; any
other is a local scheme, written with the private prefix ``99``."""
SINGLE_VIEW = CodedValue("36554-4", "XR Chest Single view", "LN")
TWO_VIEWS = CodedValue("36643-5", "XR Chest 2 Views", "LN")
CHEST_VIEWS = CodedValue("30745-4", "XR Chest Views", "LN")


@dataclass(frozen=True)
class DeliveredAs:
    """The patient and order a study's outputs went under before a patient correction, and the
    outbox rows after which they count (``radraft.patient_correction.DELIVERED_AS``)."""

    patient: dict[str, str]
    order: dict[str, str] | None
    after_row: int

    @classmethod
    def of(cls, payload: dict[str, Any]) -> DeliveredAs | None:
        """From a withdrawal row's payload; None for a withdrawal of the study as it stands."""
        value = payload.get(DELIVERED_AS)
        if not value:
            return None
        return cls(dict(value["patient"]), value.get("order"), int(value["after_row"]))


NOT_EVIDENCE = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.")
"""SOP Class UID roots of the study's documents, not its images: structured reports and key
object selections (radraft's own SRs a PACS sends back, its notes, IOCM rejection notes) and
presentation states. The SR's evidence is the images the report is about; a report listing
its predecessor, or the note that rejected an image, as evidence misleads whoever follows it
(the predecessors are named in the Predecessor Documents Sequence)."""


@dataclass(frozen=True)
class RevisionBundle:
    """A revision with everything its outputs need, read in one transaction."""

    revision: ReportRevision
    earlier: tuple[ReportRevision, ...]
    study: Study
    author: User | None
    order: Order | None
    sources: tuple[tuple[Path | None, EvidenceReference], ...]
    """Each source's spooled file (None: purged by retention) and what the SR says of it."""
    chest_views: tuple[str | None, ...]
    restore_boundaries: tuple[int, ...] = ()
    """Each restore's highest revision (``radraft.restore_epochs``), for the SR UIDs."""


def load_bundle(session: Session, revision_id: int, *, spool_dir: Path) -> RevisionBundle:
    """Read a revision and its study, author, earlier revisions, order and source images."""
    revision = session.get(ReportRevision, revision_id)
    if revision is None:
        raise MissingRevisionError(f"report revision {revision_id} is gone")
    report = session.get(Report, revision.report_id)
    study = session.get(Study, report.study_id) if report is not None else None
    if report is None or study is None:
        raise MissingRevisionError(f"the report of revision {revision_id} is gone")
    author = session.get(User, revision.author_user_id) if revision.author_user_id else None
    earlier = tuple(
        session.scalars(
            select(ReportRevision)
            .where(ReportRevision.report_id == report.id, ReportRevision.number < revision.number)
            .order_by(ReportRevision.number)
        )
    )
    rows = session.execute(
        select(Instance, Series.series_instance_uid)
        .join(Series, Series.id == Instance.series_id)
        .where(
            Instance.study_id == study.id,
            Instance.rejected_at.is_(None),  # IOCM rejected
            *(not_(Instance.sop_class_uid.startswith(prefix)) for prefix in NOT_EVIDENCE),
        )
        .order_by(Instance.id)
    ).all()
    sources = tuple(
        (
            spool_dir / instance.spool_path if instance.purged_at is None else None,
            EvidenceReference(
                study.study_instance_uid,
                series_uid,
                instance.sop_class_uid,
                instance.sop_instance_uid,
            ),
        )
        for instance, series_uid in rows
    )
    views = tuple(instance.view_position for instance, _ in rows if instance.is_chest)
    order = order_for_study(session, study).order  # only an order naming the study's patient
    return RevisionBundle(
        revision, earlier, study, author, order, sources, views, revision_boundaries(session)
    )


def person_name(full_name: str) -> str:
    """A DICOM PN (Family^Given) from a display name: the last word is taken as the family name."""
    if "^" in full_name or " " not in full_name.strip():
        return full_name.strip()
    *given, family = full_name.split()
    return f"{family}^{' '.join(given)}"


def _author_name(bundle: RevisionBundle) -> str | None:
    if bundle.revision.model_name is not None:
        return None
    author = bundle.author
    return person_name(author.full_name or author.username) if author else "unknown"


def _model(revision: ReportRevision) -> ModelIdentity | None:
    if revision.model_name is None:
        return None
    return ModelIdentity(revision.model_name, revision.model_revision, revision.demo_model)


def _origin_model(bundle: RevisionBundle) -> ModelIdentity | None:
    """The model of the newest model draft this revision grew from (itself, for a draft)."""
    for revision in (bundle.revision, *reversed(bundle.earlier)):
        model = _model(revision)
        if model is not None:
            return model
    return None


def study_offset(study: Study, settings: Settings, moment: datetime) -> timezone:
    """The UTC offset of the study's dates: the source's own, else the site's at ``moment``."""
    if study.timezone_offset:
        sign = -1 if study.timezone_offset[0] == "-" else 1
        hours, minutes = int(study.timezone_offset[1:3]), int(study.timezone_offset[3:5])
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    offset = moment.astimezone(settings.site_zone).utcoffset()
    return timezone(offset or timedelta(0))


def _dicom_code(code: str, meaning: str, scheme: str) -> Code | None:
    if not code:
        return None
    designator = HL7_TO_DICOM_SCHEME.get(scheme.upper(), f"99{scheme.upper()}"[:16] or "99LOCAL")
    return Code(code, designator, meaning or code)


def procedure_code(bundle: RevisionBundle) -> Code | None:
    """The procedure as a DICOM code: the standing order's OBR-4, else the study's own code."""
    if bundle.order is not None and bundle.order.procedure:
        procedure = bundle.order.procedure
        return _dicom_code(procedure["code"], procedure["meaning"], procedure["scheme"])
    if bundle.study.procedure_code:
        code = bundle.study.procedure_code
        return Code(code["code"], code["scheme"], code["meaning"] or code["code"])
    return None


def patient_and_study(study: Study) -> PatientAndStudy:
    """The patient and study as radraft's outputs state them (type 2 values empty if absent)."""
    return PatientAndStudy(
        study_instance_uid=study.study_instance_uid,
        patient_id=study.patient_id or "",
        issuer_of_patient_id=study.issuer_of_patient_id or "",
        patient_name=study.patient_name or "",
        patient_birth_date=study.patient_birth_date or "",
        patient_sex=study.patient_sex or "",
        accession_number=study.accession_number or "",
        study_id=study.dicom_study_id or "",
        study_date=study.study_date or "",
        study_time=study.study_time or "",
        referring_physician_name=study.referring_physician_name or "",
        study_description=study.study_description or "",
    )


def revision_key(revision_id: int, study: Study, restore_boundaries: tuple[int, ...] = ()) -> str:
    """What a revision's SR SOP Instance UID is derived from: the revision, and after a patient
    correction the correction's number too, so the SR issued again for the corrected patient
    (and every later one) is a new instance rather than the one the PACS was told to reject;
    for a revision numbered after a restore, the restores below it (``radraft.restore_epochs``),
    so it does not take the UID of a revision the restore lost."""
    key = str(revision_id)
    if study.patient_corrections:
        key += f".p{study.patient_corrections}"
    restores = epoch(revision_id, restore_boundaries)
    return f"{key}.r{restores}" if restores else key


def _document(bundle: RevisionBundle, settings: Settings) -> ReportDocument:
    revision, study, order = bundle.revision, bundle.study, bundle.order
    state = ReportState(revision.state)
    moment = revision.created_at.astimezone(study_offset(study, settings, revision.created_at))
    code = procedure_code(bundle)
    request = None
    if study.accession_number or order is not None:
        request = RequestedProcedure(
            accession_number=study.accession_number or "",
            placer_order_number=(order.placer_order_number or "") if order else "",
            filler_order_number=(order.filler_order_number or "") if order else "",
            requested_procedure_id=study.requested_procedure_id or "",
            requested_procedure_description=study.requested_procedure_description or "",
            procedure_code=code,
        )
    return ReportDocument(
        identity=patient_and_study(study),
        revision_key=revision_key(revision.id, study, bundle.restore_boundaries),
        revision_number=revision.number,
        state=state,
        findings=revision.findings,
        impression=revision.impression,
        content_datetime=moment,
        author_name=_author_name(bundle),
        model=_model(revision),
        origin_model=_origin_model(bundle),
        verifying_organization=settings.institution_name if state.is_signed else None,
        institution_name=settings.institution_name,
        request=request,
        procedure_reported=code,
        predecessor_keys=tuple(
            revision_key(earlier.id, study, bundle.restore_boundaries) for earlier in bundle.earlier
        ),
    )


def _evidence(bundle: RevisionBundle) -> list[EvidenceReference]:
    """The source instances, each confirmed in the spool (header only) unless purged."""
    references = []
    for path, reference in bundle.sources:
        if path is None:
            references.append(reference)
            continue
        try:
            header = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except FileNotFoundError as error:
            raise OutputBuildError("a source instance is missing from the spool") from error
        except UNREADABLE_DICOM_ERRORS as error:
            raise OutputBuildError(
                f"a source instance cannot be read: {type(error).__name__}"
            ) from error
        if str(header.get("SOPInstanceUID", "")) != reference.sop_instance_uid:
            raise OutputBuildError("a spooled file does not hold the instance it should")
        references.append(reference)
    if not references:
        raise OutputBuildError("the study has no source instances")
    return references


def build_sr_dataset(bundle: RevisionBundle, settings: Settings) -> ReportSR:
    """The revision's SR."""
    return ReportSR(_document(bundle, settings), _evidence(bundle))


def oru_procedure(bundle: RevisionBundle) -> CodedValue:
    """OBR-4: the order's procedure, else the study's code, else its description, else the views.

    A study described by nothing gets the LOINC chest X-ray code that matches what arrived:
    single view, two views (a frontal and a lateral), or views unspecified.
    """
    order, study = bundle.order, bundle.study
    if order is not None and order.procedure:
        return CodedValue(
            order.procedure["code"], order.procedure["meaning"], order.procedure["scheme"]
        )
    if study.procedure_code:
        code = study.procedure_code
        return CodedValue(code["code"], code["meaning"], code["scheme"])
    description = study.requested_procedure_description or study.study_description
    if description:
        return CodedValue("", description, "")
    views = bundle.chest_views
    if len(views) == 1:
        return SINGLE_VIEW
    if len(views) == 2 and "LATERAL" in views and any(v != "LATERAL" for v in views):
        return TWO_VIEWS
    return CHEST_VIEWS


def observed_at(bundle: RevisionBundle, settings: Settings) -> str:
    """OBR-7: the study's date and time with its UTC offset, else when radraft received it."""
    study = bundle.study
    if study.study_date:
        clock = (study.study_time or "").split(".")[0].ljust(6, "0")[:6]
        try:
            local = datetime.strptime(study.study_date + clock, "%Y%m%d%H%M%S")
        except ValueError:
            local = None
        if local is not None:
            offset = study_offset(study, settings, local.replace(tzinfo=settings.site_zone))
            return hl7_timestamp(local.replace(tzinfo=offset))
    received = study.first_received_at
    return hl7_timestamp(received.astimezone(study_offset(study, settings, received)))


def build_oru_message(
    bundle: RevisionBundle,
    settings: Settings,
    *,
    control_id: str,
    now: datetime,
    withdrawn: bool = False,
    delivered_as: DeliveredAs | None = None,
    sent_order: dict[str, str] | None = None,
) -> str:
    """The revision's ORU^R01; ``withdrawn``: the same result posted as wrong (status W);
    ``delivered_as``: under the patient and order it went under before a patient correction;
    ``sent_order``: the order numbers a result already went out with
    (``reporting.delivery.result_history.SENT_ORDER``), so every copy of it, its withdrawal
    and its correction name the order the RIS filed it under.

    Raises
    ------
    OutputBuildError
        If the study has no Patient ID: PID-3 is required, and a RIS cannot file a result
        without it (it would refuse it, or file it under nobody).
    """
    revision, study = bundle.revision, bundle.study
    patient = delivered_as.patient if delivered_as else patient_of(study)
    order = sent_order if sent_order is not None else _order_numbers(bundle, delivered_as)
    if not patient["patient_id"].strip():
        raise OutputBuildError(
            "the study has no Patient ID, which an ORU needs in PID-3: set it at the modality or"
            " PACS and send the study again"
        )
    interpreter = None
    if bundle.author is not None:
        family, _, given = person_name(bundle.author.full_name or bundle.author.username).partition(
            "^"
        )
        interpreter = (bundle.author.username, family, given)
    return build_oru(
        OruContent(
            control_id=control_id,
            sent_at=now.astimezone(settings.site_zone),
            state=ReportState(revision.state),
            findings=revision.findings,
            impression=revision.impression,
            accession_number=study.accession_number or "",
            patient_id=patient["patient_id"],
            procedure=oru_procedure(bundle),
            patient_name=patient["patient_name"],
            assigning_authority=(
                settings.hl7_assigning_authority or patient["issuer_of_patient_id"]
            ),
            birth_date=patient["patient_birth_date"],
            sex=patient["patient_sex"],
            patient_class=order.get("patient_class") or "U",
            placer_order_number=order.get("placer_order_number", ""),
            filler_order_number=order.get("filler_order_number", ""),
            observed_at=observed_at(bundle, settings),
            interpreter=interpreter,
            sending_application=settings.hl7_sending_application,
            sending_facility=settings.hl7_sending_facility,
            receiving_application=settings.hl7_receiving_application,
            receiving_facility=settings.hl7_receiving_facility,
            character_set=settings.hl7_character_set,
            withdrawn=withdrawn,
        )
    )


def _order_numbers(bundle: RevisionBundle, delivered_as: DeliveredAs | None) -> dict[str, str]:
    """PV1-2 and the order numbers of the ORU (empty without an order)."""
    if delivered_as is not None:
        return dict(delivered_as.order or {})
    return order_numbers(bundle.order)
