"""Report rows for the output tests: a drafted study and its human revisions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import ReportState, Role, StudyStatus
from radraft.models import Report, ReportRevision, Study, User
from radraft.report_outputs import queue_outputs
from radraft.revisions import next_revision_number
from radraft.timeutil import utcnow


def make_user(session: Session, username: str, role: Role, full_name: str) -> User:
    user = User(username=username, role=role, full_name=full_name, password_hash="unused")
    session.add(user)
    session.flush()
    return user


def add_revision(
    session: Session,
    study: Study,
    state: ReportState,
    *,
    findings: str,
    impression: str,
    author: User | None = None,
    model: bool = False,
) -> ReportRevision:
    """A revision with its outbox rows, as the lifecycle writes them (one transaction)."""
    report = session.scalar(select(Report).where(Report.study_id == study.id))
    if report is None:
        report = Report(study_id=study.id, state=state)
        session.add(report)
        session.flush()
    number = next_revision_number(session, report.id)
    revision = ReportRevision(
        report_id=report.id,
        number=number,
        state=state,
        findings=findings,
        impression=impression,
        author_user_id=author.id if author else None,
        author_role=author.role if author else None,
        model_name="radraft-demo-llava-tiny" if model else None,
        model_revision="1" if model else None,
        demo_model=model,
        created_at=utcnow() + timedelta(seconds=number),
    )
    session.add(revision)
    report.state = state
    session.flush()
    queue_outputs(session, revision, study_id=study.id)
    return revision


def drafted_study(session: Session, study_instance_uid: str) -> tuple[Study, Report]:
    """A study whose report holds one model draft at version 1, as the worker leaves it."""
    study = Study(study_instance_uid=study_instance_uid, status=StudyStatus.DRAFTED)
    session.add(study)
    session.flush()
    revision = add_revision(session, study, ReportState.DRAFTED, model=True,
                            findings="Draft findings.", impression="Draft impression.")  # fmt: skip
    report = session.get(Report, revision.report_id)
    assert report is not None
    report.version = 1
    return study, report


def full_history(session: Session, study: Study) -> list[ReportRevision]:
    """Draft (demo model), preliminary (resident), final and amended (attending)."""
    resident = make_user(session, "res", Role.RESIDENT, "Rita Resident")
    attending = make_user(session, "att", Role.ATTENDING, "Alan Attending")
    return [
        add_revision(session, study, ReportState.DRAFTED, model=True,
                     findings="[DEMO MODEL, RANDOM WEIGHTS, NOT FOR CLINICAL USE] lungs | clear",
                     impression="[DEMO MODEL, RANDOM WEIGHTS, NOT FOR CLINICAL USE] normal"),
        add_revision(session, study, ReportState.PRELIMINARY, author=resident,
                     findings="Lungs are clear.\nNo effusion.", impression="No acute disease."),
        add_revision(session, study, ReportState.FINAL, author=attending,
                     findings="Lungs are clear. No effusion.", impression="Normal chest."),
        add_revision(session, study, ReportState.AMENDED, author=attending,
                     findings="Lungs are clear. No effusion. Small nodule right apex.",
                     impression="Right apical nodule; CT advised."),
    ]  # fmt: skip
