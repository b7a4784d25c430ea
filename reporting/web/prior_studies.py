"""``GET /api/studies/{study_instance_uid}/priors``: the patient's earlier studies.

Which studies are the patient's priors, and what of them may be shown, is decided in
``reporting.priors``; this module only serves that and audits every prior report it shows (a
prior's report read for comparison is a view of that report like any other).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from radraft.errors import NotFoundError
from radraft.models import Study
from reporting.priors import Priors, prior_studies
from reporting.web.deps import DbSession
from reporting.web.security import Reader, audit

router = APIRouter(prefix="/api/studies", tags=["studies"])

VIEWED_AS_PRIOR = "report.viewed_as_prior"


class PriorReportOut(BaseModel):
    """A prior study's report at its newest signed revision."""

    id: int
    status: str
    signed_at: datetime
    findings: str
    impression: str


class PriorStudyOut(BaseModel):
    """An earlier study of the same patient; ``report`` is null until one is signed."""

    study_instance_uid: str
    study_date: str | None
    study_description: str | None
    accession_number: str | None
    status: str
    report: PriorReportOut | None


class PriorsOut(BaseModel):
    """The patient's earlier studies, newest first (at most 10)."""

    priors: list[PriorStudyOut]
    withheld: int
    """Earlier studies with this Patient ID left out: another Issuer of Patient ID or birth
    date, or a disputed or withdrawn identity."""
    unavailable: str | None
    """Why no priors were looked up (no Patient ID, or this study's identity is in question)."""


def shown_priors(session: DbSession, study: Study, actor: str) -> Priors:
    """The study's priors, each prior report shown audited as viewed by ``actor``."""
    priors = prior_studies(session, study)
    for prior in priors.priors:
        if prior.report is not None:
            audit(session, actor, VIEWED_AS_PRIOR, "report", str(prior.report.id))
    return priors


@router.get("/{study_instance_uid}/priors", response_model=PriorsOut)
def get_priors(study_instance_uid: str, session: DbSession, actor: Reader) -> PriorsOut:
    """The patient's earlier studies with their signed reports; 404 for an unknown study."""
    study = session.scalar(select(Study).where(Study.study_instance_uid == study_instance_uid))
    if study is None:
        raise NotFoundError("unknown study")
    return PriorsOut.model_validate(shown_priors(session, study, actor), from_attributes=True)
