"""Report rows for the output tests: a drafted study and its human revisions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radraft.enums import ReportState, Role, StudyStatus
from radraft.models import DraftingJob, Report, ReportRevision, Study, User
from radraft.reports import ModelAuthorship, NewRevision, append_revision, lock_report, lock_study
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
    """A revision with its outbox rows, written by the core's ``append_revision`` as the worker
    and the lifecycle write theirs (one transaction)."""
    locked_study = lock_study(session, study.id)
    report = lock_report(session, study.id)
    authorship = None
    if model:
        authorship = ModelAuthorship(
            name="radraft-demo-llava-tiny", revision="1", weights_hash=None, demo=True,
            prompt=None, generation=None, drafting_job_id=None,
        )  # fmt: skip
    existing = session.scalar(select(func.count()).select_from(ReportRevision).join(Report).where(
        Report.study_id == study.id))  # fmt: skip
    return append_revision(
        session,
        locked_study,
        report,
        NewRevision(state, findings, impression, author=author, model=authorship),
        now=utcnow() + timedelta(seconds=(existing or 0) + 1),
        update_study_status=False,
    )


def queued_job(session: Session, study_instance_uid: str) -> int:
    """A queued study (no instances) with its drafting job for content version 1; the job's id."""
    study = Study(study_instance_uid=study_instance_uid, status=StudyStatus.QUEUED,
                  content_version=1)  # fmt: skip
    session.add(study)
    session.flush()
    job = DraftingJob(study_id=study.id, content_version=1)
    session.add(job)
    session.flush()
    return job.id


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
