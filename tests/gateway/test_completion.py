"""Late instances: a new draft job while nobody edits, none once editing started."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import JobStatus, ReportState, Role, StudyStatus
from radraft.models import DraftingJob, EditSession, Report, Study, User
from radraft.synthetic import make_chest_study
from tests.dicom_peers import storescu, write_study
from tests.support import wait_until


def study_row(factory: sessionmaker[Session]) -> Study:
    with session_scope(factory) as session:
        study: Study | None = session.scalar(select(Study))
        assert study is not None
        return study


def job_rows(factory: sessionmaker[Session]) -> list[DraftingJob]:
    with session_scope(factory) as session:
        return list(session.scalars(select(DraftingJob).order_by(DraftingJob.id)))


def test_late_instances_requeue_until_editing_starts(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    pa, lateral = make_chest_study(60, rows=128, columns=128)
    extra = make_chest_study(60, rows=128, columns=128, views=("AP",))[0]
    port = running_gateway.port

    assert storescu(write_study([pa], tmp_path / "1"), port=port).returncode == 0
    wait_until(lambda: len(job_rows(session_factory)) == 1, what="first job")
    assert storescu(write_study([lateral], tmp_path / "2"), port=port).returncode == 0
    wait_until(lambda: len(job_rows(session_factory)) == 2, what="second job")
    first, second = job_rows(session_factory)
    assert first.status == JobStatus.SUPERSEDED
    assert (first.content_version, second.content_version) == (1, 2)
    assert study_row(session_factory).status == StudyStatus.QUEUED

    with session_scope(session_factory) as session:
        study = session.scalar(select(Study))
        assert study is not None
        user = User(username="res1", role=Role.RESIDENT, password_hash="x")
        report = Report(study_id=study.id, state=ReportState.DRAFTED)
        session.add_all([user, report])
        session.flush()
        session.add(EditSession(report_id=report.id, user_id=user.id, role=Role.RESIDENT))

    assert storescu(write_study([extra], tmp_path / "3"), port=port).returncode == 0
    wait_until(lambda: study_row(session_factory).completed_version == 3, what="third decision")
    assert len(job_rows(session_factory)) == 2
    reason = study_row(session_factory).eligibility_reason or ""
    assert "after editing started" in reason
    assert study_row(session_factory).status == StudyStatus.DRAFTED
