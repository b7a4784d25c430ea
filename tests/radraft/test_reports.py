"""One owner per rule: the study-status table and the single writer of report revisions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import ReportState, Role, StudyStatus
from radraft.models import DraftingJob, Report, ReportRevision, Study, User
from radraft.study_status import ALLOWED_MOVES, StudyStatusError, can_move, move_study
from radraft.timeutil import utcnow
from reporting.lifecycle import SUBMIT, LifecycleError, apply_transition
from worker.drafting import DraftOutcome, store_draft
from worker.runtimes.base import ModelInfo


def test_every_status_has_a_row_and_unplanned_moves_raise() -> None:
    assert set(ALLOWED_MOVES) == set(StudyStatus)
    study = Study(study_instance_uid="1.2.3", status=StudyStatus.FINAL)
    with pytest.raises(StudyStatusError, match="final -> receiving is not allowed"):
        move_study(study, StudyStatus.RECEIVING)
    assert study.status == StudyStatus.FINAL
    move_study(study, StudyStatus.FINAL)  # staying is always allowed (a redelivered task)
    move_study(study, StudyStatus.AMENDED)
    assert StudyStatus(study.status).value == "amended"
    assert not can_move(StudyStatus.NOT_ELIGIBLE, StudyStatus.DRAFTED)
    assert can_move(StudyStatus.DRAFTING, StudyStatus.PRELIMINARY), "people never wait"


def run_together(actions: list[Callable[[], None]]) -> list[BaseException]:
    """Start every action at once on its own thread; return what they raised."""
    barrier = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def run(action: Callable[[], None]) -> None:
        barrier.wait()
        try:
            action()
        except BaseException as error:  # collected and asserted on below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_concurrent_drafts_and_a_submit_append_to_one_report_without_gaps(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        study = Study(study_instance_uid="1.2.826.0.1.55", status=StudyStatus.DRAFTING,
                      content_version=2)  # fmt: skip
        session.add(study)
        session.flush()
        jobs = [DraftingJob(study_id=study.id, content_version=v) for v in (1, 2)]
        resident = User(username="rita", role=Role.RESIDENT, password_hash="-")
        session.add_all([*jobs, resident])
        session.flush()
        study_id, job_ids, resident_id = study.id, [j.id for j in jobs], resident.id
    info = ModelInfo(name="demo", revision="1", weights_hash="x", backend="test", demo=True)

    def draft(job_id: int) -> Callable[[], None]:
        def action() -> None:
            outcome = DraftOutcome(f"findings {job_id}", "impression", "prompt", (), ())
            with session_scope(session_factory) as session:
                store_draft(session, job_id, outcome, info, now=utcnow())

        return action

    def submit() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until a draft exists and our version is current
            try:
                with session_scope(session_factory) as session:
                    report = session.scalar(select(Report).where(Report.study_id == study_id))
                    user = session.get(User, resident_id)
                    if report is not None and user is not None:
                        apply_transition(session, report.id, SUBMIT, user=user,
                                         expected_version=report.version, findings="Read.",
                                         impression="Normal.", now=utcnow())  # fmt: skip
                        return
            except LifecycleError:
                pass
            # SQLite has one writer: retrying at once can keep the drafts from ever committing.
            time.sleep(0.01)
        raise AssertionError("the resident never got to submit")

    assert run_together([draft(job_ids[0]), draft(job_ids[1]), submit]) == []
    with session_scope(session_factory) as session:
        reports = session.scalars(select(Report).where(Report.study_id == study_id)).all()
        assert len(reports) == 1, "one report per study"
        revisions = session.scalars(
            select(ReportRevision)
            .where(ReportRevision.report_id == reports[0].id)
            .order_by(ReportRevision.number)
        ).all()
        numbers = [revision.number for revision in revisions]
        assert numbers == list(range(1, len(numbers) + 1)), "gapless"
        assert reports[0].version == len(revisions)
        assert revisions[-1].state == ReportState.PRELIMINARY
        assert reports[0].state == ReportState.PRELIMINARY
        reported = session.get(Study, study_id)
        assert reported is not None
        assert reported.status == StudyStatus.PRELIMINARY
        # A draft that lost the race to the submit was superseded, never written over the read.
        assert all(r.state == ReportState.DRAFTED for r in revisions[:-1])
