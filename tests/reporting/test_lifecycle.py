"""Report lifecycle: transitions, roles, optimistic concurrency, audit and outputs together."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import OutboxChannel, Role, StudyStatus
from radraft.models import AuditEntry, OutboxMessage, Report, ReportRevision, Study, User
from radraft.timeutil import utcnow
from reporting.lifecycle import (
    AMEND,
    SEND_BACK,
    SIGN,
    SUBMIT,
    InvalidTextError,
    LifecycleError,
    StaleVersionError,
    Transition,
    apply_transition,
)
from tests.reporting.factories import drafted_study, make_user


@pytest.fixture
def drafted(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """A study with a model draft, a resident and an attending."""
    with session_scope(session_factory) as session:
        _study, report = drafted_study(session, "1.2.826.0.1.1")
        resident = make_user(session, "res", Role.RESIDENT, "Rita Resident")
        attending = make_user(session, "att", Role.ATTENDING, "Alan Attending")
        return {"report": report.id, "resident": resident.id, "attending": attending.id}


def act(
    factory: sessionmaker[Session],
    ids: dict[str, int],
    who: str,
    transition: Transition,
    version: int,
    impression: str = "Impression.",
) -> ReportRevision:
    with session_scope(factory) as session:
        user = session.get(User, ids[who])
        assert user is not None
        return apply_transition(
            session, ids["report"], transition, user=user, expected_version=version,
            findings="Findings.", impression=impression, now=utcnow(),
        )  # fmt: skip


def count(factory: sessionmaker[Session], model: type) -> int:
    with session_scope(factory) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_full_lifecycle_stores_revisions_audit_and_outputs(
    session_factory: sessionmaker[Session], drafted: dict[str, int]
) -> None:
    act(session_factory, drafted, "resident", SUBMIT, 1)
    act(session_factory, drafted, "attending", SEND_BACK, 2)
    act(session_factory, drafted, "resident", SUBMIT, 3)
    act(session_factory, drafted, "attending", SIGN, 4)
    final = act(session_factory, drafted, "attending", AMEND, 5)
    assert final.number == 6
    with session_scope(session_factory) as session:
        revisions = list(session.scalars(select(ReportRevision).order_by(ReportRevision.number)))
        audit = [a.action for a in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        outputs = session.scalar(
            select(func.count()).select_from(OutboxMessage)
            .where(OutboxMessage.channel.in_([OutboxChannel.DICOM, OutboxChannel.HL7]))
        )  # fmt: skip
        study = session.scalar(select(Study))
    assert [r.state for r in revisions] == [
        "DRAFTED", "PRELIMINARY", "DRAFTED", "PRELIMINARY", "FINAL", "AMENDED",
    ]  # fmt: skip
    assert [r.author_role for r in revisions[1:]] == [
        "resident", "attending", "resident", "attending", "attending",
    ]  # fmt: skip
    assert audit == [
        "report.submitted", "report.sent_back", "report.submitted", "report.signed",
        "report.amended",
    ]  # fmt: skip
    assert outputs == 2 * 6
    assert study is not None
    assert study.status == StudyStatus.AMENDED


@pytest.mark.parametrize(
    ("who", "transition", "message"),
    [
        ("resident", SIGN, "a resident cannot"),
        ("attending", SUBMIT, "an attending cannot"),
        ("attending", AMEND, "not possible from DRAFTED"),
    ],
)
def test_refused_transitions_change_nothing(
    session_factory: sessionmaker[Session],
    drafted: dict[str, int],
    who: str,
    transition: Transition,
    message: str,
) -> None:
    before = count(session_factory, ReportRevision), count(session_factory, OutboxMessage)
    with pytest.raises(LifecycleError, match=message.split()[-1]):
        act(session_factory, drafted, who, transition, 1)
    assert (count(session_factory, ReportRevision), count(session_factory, OutboxMessage)) == before
    assert count(session_factory, AuditEntry) == 0


def test_stale_version_and_bad_text_are_refused(
    session_factory: sessionmaker[Session], drafted: dict[str, int]
) -> None:
    act(session_factory, drafted, "resident", SUBMIT, 1)
    with pytest.raises(StaleVersionError) as stale:
        act(session_factory, drafted, "attending", SIGN, 1)
    assert stale.value.current_version == 2
    with pytest.raises(InvalidTextError, match="longer than"):
        act(session_factory, drafted, "attending", SIGN, 2, impression="x" * 20_001)
    with pytest.raises(InvalidTextError, match="empty"):
        act(session_factory, drafted, "attending", SIGN, 2, impression="  ")
    assert count(session_factory, ReportRevision) == 2


@pytest.mark.parametrize("backend", ["postgres"])
def test_fifty_concurrent_editors_lose_no_revision(
    session_factory: sessionmaker[Session], drafted: dict[str, int]
) -> None:
    act(session_factory, drafted, "resident", SUBMIT, 1)
    act(session_factory, drafted, "attending", SIGN, 2)
    errors: list[BaseException] = []
    stale_retries = [0]
    lock = threading.Lock()

    def editor(index: int) -> Callable[[], None]:
        def run() -> None:
            while True:
                with session_scope(session_factory) as session:
                    version = session.get(Report, drafted["report"]).version  # type: ignore[union-attr]
                try:
                    act(session_factory, drafted, "attending", AMEND, version, f"edit {index}")
                    return
                except StaleVersionError:
                    with lock:
                        stale_retries[0] += 1
                except Exception as error:
                    errors.append(error)
                    return

        return run

    threads = [threading.Thread(target=editor(i)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with session_scope(session_factory) as session:
        impressions = set(
            session.scalars(
                select(ReportRevision.impression).where(ReportRevision.state == "AMENDED")
            )
        )
        numbers = list(session.scalars(select(ReportRevision.number)))
        report = session.get(Report, drafted["report"])
    assert impressions == {f"edit {i}" for i in range(50)}, "every editor's revision is stored"
    assert sorted(numbers) == list(range(1, 54)), "revision numbers are unique and gapless"
    assert report is not None
    assert report.version == 53
    assert stale_retries[0] > 0, "the editors did collide (otherwise the test proves little)"
