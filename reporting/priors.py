"""The patient's earlier studies and their signed reports, for comparison.

A chest radiograph is read against the patient's previous ones ("Comparison: ..." opens most
reports): a nodule that was there two years ago, a line that has moved. radraft holds the
earlier studies it received, so the case page lists them. What counts as the same patient is
the one place here where a wrong answer shows a radiologist another patient's findings as this
patient's history, so the rule leans to leaving a study out and saying so:

- the same Patient ID, and where both studies give an Issuer of Patient ID or a birth date,
  the same one (a second assigning authority reusing the number, or a misfiled study);
- neither study disputed nor withdrawn (``radraft.identity_dispute``, ``radraft.withdrawal``):
  a study whose patient is in question has no priors, and is no one's prior;
- earlier than this study (by Study Date and Time where both have them, else by receipt).

Only a signed report (final or amended) is shown, at its newest signed revision: a model
draft or a resident's preliminary text is not a finding anyone stands behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import ReportState
from radraft.models import Report, ReportRevision, Study

MOST_CANDIDATES = 200
"""Studies with the Patient ID read per request, newest first: a bound on a long history."""
MOST_SHOWN = 10
"""Prior studies listed; the newest ones matter for comparison."""
SIGNED_STATES = tuple(state for state in ReportState if state.is_signed)


@dataclass(frozen=True)
class PriorReport:
    """A prior study's report at its newest signed revision (named as the API names it)."""

    id: int
    status: ReportState
    signed_at: datetime
    findings: str
    impression: str


@dataclass(frozen=True)
class PriorStudy:
    """An earlier study of the same patient; ``report`` is None until one is signed."""

    study_instance_uid: str
    study_date: str | None
    study_description: str | None
    accession_number: str | None
    status: str
    report: PriorReport | None


@dataclass(frozen=True)
class Priors:
    """What the case page shows as the patient's history, and what it left out."""

    priors: list[PriorStudy]
    withheld: int
    """Studies with this Patient ID left out: another issuer or birth date, or a disputed or
    withdrawn identity (counted so the page can say that the list is not the whole story)."""
    unavailable: str | None = None
    """Why no priors are looked up for this study at all (no Patient ID, identity in doubt)."""


def prior_studies(session: Session, study: Study) -> Priors:
    """The earlier studies of ``study``'s patient, newest first, with their signed reports."""
    patient_id = (study.patient_id or "").strip()
    if not patient_id:
        return Priors([], 0, "the study has no Patient ID")
    if study.withdrawn_at is not None or study.identity_disputed_at is not None:
        return Priors([], 0, "the study's patient identity is in question")
    candidates = session.scalars(
        select(Study)
        .where(Study.patient_id == study.patient_id, Study.id != study.id)
        .order_by(Study.first_received_at.desc())
        .limit(MOST_CANDIDATES)
    ).all()
    earlier = [other for other in candidates if _is_earlier(other, study)]
    same_patient = [other for other in earlier if _same_patient(other, study)]
    same_patient.sort(key=_moment, reverse=True)
    shown = same_patient[:MOST_SHOWN]
    return Priors(
        [_prior(session, other) for other in shown], withheld=len(earlier) - len(same_patient)
    )


def _same_patient(other: Study, study: Study) -> bool:
    """Same Patient ID (the query's) and nothing that says otherwise."""
    if other.withdrawn_at is not None or other.identity_disputed_at is not None:
        return False
    return all(
        not mine or not theirs or mine.strip() == theirs.strip()
        for mine, theirs in (
            (study.issuer_of_patient_id, other.issuer_of_patient_id),
            (study.patient_birth_date, other.patient_birth_date),
        )
    )


def _moment(study: Study) -> tuple[str, str, datetime]:
    """When the study was made, as far as the header says (Study Date, Study Time), then when
    radraft received it."""
    return (study.study_date or "", study.study_time or "", study.first_received_at)


def _is_earlier(other: Study, study: Study) -> bool:
    """Whether ``other`` was made before ``study``: by Study Date and Time where both have a
    date (a study sent late is still old), else by when radraft received each."""
    if other.study_date and study.study_date:
        return _moment(other)[:2] < _moment(study)[:2]
    return other.first_received_at < study.first_received_at


def _prior(session: Session, study: Study) -> PriorStudy:
    revision = session.scalar(
        select(ReportRevision)
        .join(Report, Report.id == ReportRevision.report_id)
        .where(Report.study_id == study.id, ReportRevision.state.in_(SIGNED_STATES))
        .order_by(Report.id.desc(), ReportRevision.number.desc())
        .limit(1)
    )
    report = None
    if revision is not None:
        report = PriorReport(
            revision.report_id,
            revision.state,
            revision.created_at,
            revision.findings,
            revision.impression,
        )
    return PriorStudy(
        study.study_instance_uid,
        study.study_date,
        study.study_description,
        study.accession_number,
        str(study.status),
        report,
    )
