"""Builds a revision's outputs from the database: its SR and its ORU^R01."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import ReportState
from radraft.errors import RadraftError
from radraft.models import Instance, Order, Report, ReportRevision, Study, User
from radraft.settings import Settings
from reporting.hl7 import OruContent, build_oru
from reporting.sr import ReportDocument, build_report_sr, sr_instance_uid, sr_series_uid


class MissingRevisionError(RadraftError):
    """The outbox row names a revision (or study) that no longer exists."""


@dataclass(frozen=True)
class RevisionBundle:
    """A revision with everything its outputs need."""

    revision: ReportRevision
    study: Study
    author: User | None
    previous_signed: ReportRevision | None
    order: Order | None
    instance_paths: tuple[Path, ...]


def load_bundle(session: Session, revision_id: int, *, spool_dir: Path) -> RevisionBundle:
    """Read a revision and its study, author, predecessor and source images."""
    revision = session.get(ReportRevision, revision_id)
    if revision is None:
        raise MissingRevisionError(f"report revision {revision_id} is gone")
    report = session.get(Report, revision.report_id)
    assert report is not None  # revisions are deleted with their report
    study = session.get(Study, report.study_id)
    assert study is not None
    author = session.get(User, revision.author_user_id) if revision.author_user_id else None
    previous_signed = session.scalar(
        select(ReportRevision)
        .where(
            ReportRevision.report_id == report.id,
            ReportRevision.number < revision.number,
            ReportRevision.state.in_([ReportState.FINAL, ReportState.AMENDED]),
        )
        .order_by(ReportRevision.number.desc())
    )
    order = None
    if study.accession_number:
        order = session.scalar(
            select(Order)
            .where(Order.accession_number == study.accession_number)
            .order_by(Order.id.desc())
        )
    paths = tuple(
        spool_dir / path
        for path in session.scalars(
            select(Instance.spool_path).where(Instance.study_id == study.id).order_by(Instance.id)
        )
    )
    return RevisionBundle(revision, study, author, previous_signed, order, paths)


def person_name(full_name: str) -> str:
    """A DICOM PN (Family^Given) from a display name: the last word is taken as the family name."""
    if "^" in full_name or " " not in full_name.strip():
        return full_name.strip()
    *given, family = full_name.split()
    return f"{family}^{' '.join(given)}"


def _document(
    bundle: RevisionBundle, settings: Settings, revision: ReportRevision
) -> ReportDocument:
    state = ReportState(revision.state)
    author_name = None
    if revision.model_name is None:
        author = bundle.author
        author_name = person_name(author.full_name or author.username) if author else "unknown"
    signed = state in (ReportState.FINAL, ReportState.AMENDED)
    return ReportDocument(
        study_instance_uid=bundle.study.study_instance_uid,
        revision_key=str(revision.id),
        revision_number=revision.number,
        state=state,
        findings=revision.findings,
        impression=revision.impression,
        author_name=author_name,
        model_name=revision.model_name,
        model_revision=revision.model_revision,
        demo=revision.demo_model,
        verifying_observer_name=author_name if signed else None,
        verifying_organization=settings.institution_name if signed else None,
        verified_at=revision.created_at if signed else None,
        institution_name=settings.institution_name,
    )


def build_sr_dataset(bundle: RevisionBundle, settings: Settings) -> Dataset:
    """The revision's SR; an amendment names the signed SR it replaces as predecessor."""
    evidence = [dcmread(path, stop_before_pixels=True) for path in bundle.instance_paths]
    document = _document(bundle, settings, bundle.revision)
    if bundle.previous_signed is not None and document.state == ReportState.AMENDED:
        predecessor = Dataset()
        predecessor.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
        predecessor.SOPInstanceUID = sr_instance_uid(
            _document(bundle, settings, bundle.previous_signed)
        )
        predecessor.StudyInstanceUID = bundle.study.study_instance_uid
        predecessor.SeriesInstanceUID = sr_series_uid(bundle.study.study_instance_uid)
        document = ReportDocument(**{**document.__dict__, "predecessor": predecessor})
    return build_report_sr(document, evidence)


def build_oru_message(
    bundle: RevisionBundle, settings: Settings, *, control_id: str, now: datetime
) -> str:
    """The revision's ORU^R01."""
    revision, study = bundle.revision, bundle.study
    interpreter = ""
    if bundle.author is not None:
        # OBR-32 (NDL): its first component is a CNN, ID & family name & given name.
        family, _, given = person_name(bundle.author.full_name or bundle.author.username).partition(
            "^"
        )
        interpreter = f"{bundle.author.username}&{family}&{given}"
    return build_oru(
        OruContent(
            control_id=control_id,
            sent_at=now,
            state=ReportState(revision.state),
            findings=revision.findings,
            impression=revision.impression,
            accession_number=study.accession_number or "",
            patient_id=study.patient_id or "",
            patient_name=study.patient_name or "",
            birth_date=study.patient_birth_date or "",
            sex=study.patient_sex or "",
            placer_order_number=(bundle.order.placer_order_number or "") if bundle.order else "",
            filler_order_number=(bundle.order.filler_order_number or "") if bundle.order else "",
            observed_at=study.first_received_at,
            interpreter=interpreter,
            sending_application=settings.hl7_sending_application,
            sending_facility=settings.hl7_sending_facility,
            receiving_application=settings.hl7_receiving_application,
            receiving_facility=settings.hl7_receiving_facility,
        )
    )
