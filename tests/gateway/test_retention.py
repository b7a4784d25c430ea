"""Spool retention: only settled, idle studies lose their files; nothing acknowledged is lost.

Studies are sent by dcmtk's storescu to the running gateway, then moved to the state each case
needs (signed, unsigned, disputed, an output on its way) and made idle by backdating their
receipt, as the years of a real spool would.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.intake import InstanceIntake, ReceivedInstance
from gateway.retention import (
    PURGED_ACTION,
    RetentionRule,
    purge_study,
    recover_set_aside,
    run_retention,
)
from gateway.service import Gateway
from gateway.spool import Spool
from gateway.statuses import StoreStatus
from radraft.db import session_scope
from radraft.enums import Arm, JobStatus, OutboxStatus, ReadStatus, Role, StudyStatus
from radraft.models import (
    AuditEntry,
    DraftingJob,
    Instance,
    OutboxMessage,
    ReaderStudy,
    Study,
    StudyCase,
    StudyRead,
    StudyReader,
)
from radraft.settings import Settings, settings_to_environment
from radraft.timeutil import utcnow
from reporting.users import create_user
from tests.conftest import RecordingPublisher
from tests.dicom_peers import storescu, synthetic_study_files
from tests.support import free_port, wait_until

RETENTION_DAYS = 30
IDLE = timedelta(days=RETENTION_DAYS + 10)


def current_rule() -> RetentionRule:
    """The retention rule as of now, with SRs sent to a PACS."""
    return RetentionRule(utcnow() - timedelta(days=RETENTION_DAYS), sr_deliveries=True)


def receive_studies(
    gateway: Gateway, factory: sessionmaker[Session], folder: Path, *seeds: int, size: int = 64
) -> dict[int, list[Path]]:
    """Send one PA + lateral study per seed (images ``size`` pixels square) with storescu; wait
    until each is decided."""
    sent = {seed: synthetic_study_files(seed, folder / str(seed), size=size) for seed in seeds}
    for files in sent.values():
        assert storescu(files, port=gateway.port).returncode == 0

    def decided() -> bool:
        with session_scope(factory) as session:
            studies = session.scalars(select(Study)).all()
            return len(studies) == len(seeds) and all(s.eligible is not None for s in studies)

    wait_until(decided, what="every study stored and decided")
    return sent


def study_id_of(factory: sessionmaker[Session], files: list[Path]) -> int:
    from pydicom import dcmread

    uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    with session_scope(factory) as session:
        return session.scalars(select(Study.id).where(Study.study_instance_uid == uid)).one()


@contextmanager
def second_gateway(
    settings: Settings,
    factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    **overrides: object,
) -> Iterator[Gateway]:
    """Another full gateway on the same spool and database, with ``overrides`` to its settings:
    its janitor's first round runs as it starts."""
    gateway = Gateway(settings.model_copy(update={**overrides, "dicom_port": free_port()}),
                      factory, publisher)  # fmt: skip
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def settle(
    factory: sessionmaker[Session], study_id: int, status: StudyStatus, idle: timedelta = IDLE
) -> None:
    """The study at ``status``, its job done, its outputs delivered, nothing for ``idle``."""
    since = utcnow() - idle
    with session_scope(factory) as session:
        session.execute(update(Study).where(Study.id == study_id)
                        .values(status=status, last_received_at=since))  # fmt: skip
        session.execute(update(Instance).where(Instance.study_id == study_id)
                        .values(received_at=since))  # fmt: skip
        session.execute(update(DraftingJob).where(DraftingJob.study_id == study_id)
                        .values(status=JobStatus.SUCCEEDED))  # fmt: skip
        session.execute(update(OutboxMessage).where(OutboxMessage.study_id == study_id)
                        .values(status=OutboxStatus.DONE))  # fmt: skip


def spooled_files(factory: sessionmaker[Session], spool: Spool, study_id: int) -> dict[str, bool]:
    """Each instance's spool path and whether its file is there."""
    with session_scope(factory) as session:
        paths = session.scalars(select(Instance.spool_path).where(Instance.study_id == study_id))
        return {path: spool.path_of(path).is_file() for path in paths}


def purged_marks(factory: sessionmaker[Session], study_id: int) -> list[datetime | None]:
    with session_scope(factory) as session:
        return list(
            session.scalars(select(Instance.purged_at).where(Instance.study_id == study_id))
        )


def test_only_settled_studies_idle_past_the_period_lose_their_files_and_keep_their_rows(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    sent = receive_studies(running_gateway, session_factory, tmp_path, 501, 502, 503, 504, 505, 506)
    ids = {seed: study_id_of(session_factory, files) for seed, files in sent.items()}
    settle(session_factory, ids[501], StudyStatus.FINAL)
    settle(session_factory, ids[502], StudyStatus.NOT_ELIGIBLE)
    settle(session_factory, ids[503], StudyStatus.DRAFTED)  # unsigned: a reader needs it
    settle(session_factory, ids[504], StudyStatus.FINAL, idle=timedelta(days=5))
    settle(session_factory, ids[505], StudyStatus.AMENDED)
    settle(session_factory, ids[506], StudyStatus.FINAL)
    with session_scope(session_factory) as session:
        session.add(OutboxMessage(channel="dicom", idempotency_key="sr-505", study_id=ids[505],
                                  payload={}, status=OutboxStatus.PENDING))  # fmt: skip
        session.add(OutboxMessage(channel="hl7", idempotency_key="oru-501", study_id=ids[501],
                                  payload={}, status=OutboxStatus.PENDING))  # fmt: skip
        session.execute(update(Study).where(Study.id == ids[506])
                        .values(identity_disputed_at=utcnow()))  # fmt: skip
    spool = running_gateway.spool
    held = {seed: spooled_files(session_factory, spool, study_id) for seed, study_id in ids.items()}
    assert all(all(files.values()) for files in held.values())

    done = run_retention(
        session_factory, spool, retention_days=RETENTION_DAYS, now=utcnow(), sr_deliveries=True
    )

    assert sorted(study.study_id for study in done.purged) == sorted([ids[501], ids[502]])
    assert done.files == 4
    assert not done.more_waiting
    for seed in (501, 502):
        assert spooled_files(session_factory, spool, ids[seed]) == dict.fromkeys(held[seed], False)
        assert all(at is not None for at in purged_marks(session_factory, ids[seed]))
    for seed in (503, 504, 505, 506):
        assert spooled_files(session_factory, spool, ids[seed]) == held[seed], seed
        assert purged_marks(session_factory, ids[seed]) == [None, None], seed
    with session_scope(session_factory) as session:
        sizes = sum(session.scalars(select(Instance.size_bytes).where(
            Instance.study_id.in_([ids[501], ids[502]]))))  # fmt: skip
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == PURGED_ACTION)).all()
        assert sorted(
            (entry.object_id, (entry.details or {})["files"]) for entry in audit
        ) == sorted([(str(ids[501]), 2), (str(ids[502]), 2)])
        assert all(entry.actor == "gateway" for entry in audit)
    assert done.bytes == sizes > 0
    assert not any(spool.set_aside_dir.iterdir()), "nothing left aside"
    again = run_retention(
        session_factory, spool, retention_days=RETENTION_DAYS, now=utcnow(), sr_deliveries=True
    )
    assert again.purged == ()
    no_pacs = run_retention(session_factory, spool, retention_days=RETENTION_DAYS, now=utcnow(),
                            sr_deliveries=False)  # fmt: skip
    assert [study.study_id for study in no_pacs.purged] == [ids[505]], (
        "an SR for no configured PACS waits for one, and names purged sources from their rows"
    )


def test_a_resent_instance_brings_its_file_back_and_restarts_the_studys_clock(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    sent = receive_studies(running_gateway, session_factory, tmp_path, 511)
    study_id = study_id_of(session_factory, sent[511])
    settle(session_factory, study_id, StudyStatus.FINAL)
    spool = running_gateway.spool
    run_retention(
        session_factory, spool, retention_days=RETENTION_DAYS, now=utcnow(), sr_deliveries=True
    )
    assert not any(spooled_files(session_factory, spool, study_id).values())

    assert storescu(sent[511], port=running_gateway.port).returncode == 0

    assert all(spooled_files(session_factory, spool, study_id).values())
    assert purged_marks(session_factory, study_id) == [None, None]
    with session_scope(session_factory) as session:
        assert session.get(Study, study_id).status == StudyStatus.FINAL  # type: ignore[union-attr]
    later = run_retention(
        session_factory, spool, retention_days=RETENTION_DAYS, now=utcnow(), sr_deliveries=True
    )
    assert later.purged == (), "a re-send is activity: the period starts again"


class SpoolPurgedMidStore(Spool):
    """A spool on which a purge of the study runs right after each file is put in place, before
    the gateway records it: the race between a re-send and a purge, made certain."""

    def __init__(self, spool: Spool, purge: object) -> None:
        super().__init__(spool.root, spool.incoming)
        self._purge = purge

    def store(self, received_path: Path, identity: str, *, durable: bool = False) -> (
        tuple[str, int]
    ):  # fmt: skip
        stored = super().store(received_path, identity, durable=durable)
        assert callable(self._purge)
        self._purge()
        return stored


def test_a_resent_instance_a_purge_takes_while_it_is_stored_is_refused_not_acknowledged(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """The purge moves the file just put in place; the gateway, under the study's lock, finds
    its row purged and its file gone, and answers 0xA700 so the sender keeps its copy and sends
    it again, which then succeeds."""
    sent = receive_studies(running_gateway, session_factory, tmp_path, 521)
    study_id = study_id_of(session_factory, sent[521])
    settle(session_factory, study_id, StudyStatus.FINAL)
    spool = running_gateway.spool
    purged: list[object] = []
    racing = SpoolPurgedMidStore(spool, lambda: purged.append(purge_study(
        session_factory, spool, study_id, rule=current_rule(),
        now=utcnow(), actor="test")))  # fmt: skip
    intake = InstanceIntake(session_factory, racing, strict_body_part=False)

    def received(path: Path) -> ReceivedInstance:
        from pydicom import dcmread

        header = dcmread(path, stop_before_pixels=True)
        copy = spool.incoming / f"resent-{path.name}"
        shutil.copyfile(path, copy)
        return ReceivedInstance(copy, "PACS", str(header.SOPClassUID), str(header.SOPInstanceUID))

    outcome = intake.accept(received(sent[521][0]))

    assert len(purged) == 1, "the purge ran between the rename and the record"
    assert purged[0] is not None
    assert outcome.status == StoreStatus.OUT_OF_RESOURCES
    assert "retention purge" in outcome.comment
    assert "send it again" in outcome.comment
    assert not any(spooled_files(session_factory, spool, study_id).values())
    assert all(at is not None for at in purged_marks(session_factory, study_id))

    calm = InstanceIntake(session_factory, spool, strict_body_part=False)
    assert calm.accept(received(sent[521][0])).status == StoreStatus.SUCCESS
    assert sorted(spooled_files(session_factory, spool, study_id).values()) == [False, True]


@pytest.fixture
def failing_commits(session_factory: sessionmaker[Session]) -> Iterator[list[str]]:
    """Every commit of the factory's sessions fails while the list holds "fail"."""
    switch: list[str] = []

    def refuse(_session: Session) -> None:
        if switch:
            raise OperationalError("COMMIT", {}, Exception("database went away (simulated)"))

    event.listen(session_factory, "before_commit", refuse)
    yield switch
    event.remove(session_factory, "before_commit", refuse)


def test_a_purge_whose_rows_do_not_commit_puts_every_file_back(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    failing_commits: list[str],
    tmp_path: Path,
) -> None:
    sent = receive_studies(running_gateway, session_factory, tmp_path, 531)
    study_id = study_id_of(session_factory, sent[531])
    settle(session_factory, study_id, StudyStatus.FINAL)
    spool = running_gateway.spool
    failing_commits.append("fail")
    with pytest.raises(OperationalError):
        purge_study(session_factory, spool, study_id, now=utcnow(), actor="test",
                    rule=current_rule())  # fmt: skip
    failing_commits.clear()
    assert all(spooled_files(session_factory, spool, study_id).values())
    assert purged_marks(session_factory, study_id) == [None, None]
    assert not any(spool.set_aside_dir.iterdir())


def test_files_a_crash_left_aside_go_back_or_go_by_what_their_rows_say(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """A purge killed after moving files aside: rows not purged (it never committed) get their
    files back; rows purged (it committed, then died before deleting) lose them."""
    sent = receive_studies(running_gateway, session_factory, tmp_path, 541, 542)
    uncommitted, committed = (study_id_of(session_factory, sent[seed]) for seed in (541, 542))
    spool = running_gateway.spool
    for study_id in (uncommitted, committed):
        for relative in spooled_files(session_factory, spool, study_id):
            assert spool.set_aside(relative)
    with session_scope(session_factory) as session:
        session.execute(update(Instance).where(Instance.study_id == committed)
                        .values(purged_at=utcnow()))  # fmt: skip

    assert recover_set_aside(session_factory, spool) == 2

    assert all(spooled_files(session_factory, spool, uncommitted).values())
    assert not any(spooled_files(session_factory, spool, committed).values())
    assert not any(spool.set_aside_dir.iterdir())


def test_the_gateway_applies_the_retention_setting_by_itself(
    running_gateway: Gateway,
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    sent = receive_studies(running_gateway, session_factory, tmp_path, 551)
    study_id = study_id_of(session_factory, sent[551])
    settle(session_factory, study_id, StudyStatus.FINAL)
    with second_gateway(settings, session_factory, publisher,
                        spool_retention_days=RETENTION_DAYS) as retaining:  # fmt: skip
        wait_until(
            lambda: not any(spooled_files(session_factory, retaining.spool, study_id).values()),
            what="the janitor's first round",
        )
    assert all(at is not None for at in purged_marks(session_factory, study_id))


def test_the_cli_says_what_it_would_purge_then_purges_it(
    running_gateway: Gateway,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    sent = receive_studies(running_gateway, session_factory, tmp_path, 561, 562)
    settled = study_id_of(session_factory, sent[561])
    settle(session_factory, settled, StudyStatus.FINAL)
    with session_scope(session_factory) as session:
        size = sum(session.scalars(select(Instance.size_bytes).where(
            Instance.study_id == settled)))  # fmt: skip
    environment = {**os.environ, **settings_to_environment(settings)}

    def radraft(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "radraft_cli", "spool", "purge", *arguments]
        return subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=120, check=False
        )

    unset = radraft()
    assert unset.returncode == 2
    assert "--older-than-days" in unset.stderr
    dry = radraft("--dry-run", "--older-than-days", "30")
    assert dry.returncode == 0, dry.stderr
    assert f"would purge 1 studies: 2 files, {size} bytes" in dry.stdout
    assert all(spooled_files(session_factory, running_gateway.spool, settled).values())

    real = radraft("--older-than-days", "30", "--by", "pacs-admin")
    assert real.returncode == 0, real.stderr
    assert f"purged 1 studies: 2 files, {size} bytes" in real.stdout
    assert not any(spooled_files(session_factory, running_gateway.spool, settled).values())
    with session_scope(session_factory) as session:
        actors = session.scalars(select(AuditEntry.actor).where(AuditEntry.action == PURGED_ACTION))
        assert list(actors) == ["cli:pacs-admin"]


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_purge_waiting_for_the_study_lock_sees_the_resend_that_held_it(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Postgres: a purge blocked by a re-send's open transaction (the gateway holds the study's
    row lock while it records) must judge the study after that commit, not by the snapshot it
    had before waiting, or it deletes a file the gateway just acknowledged."""
    sent = receive_studies(running_gateway, session_factory, tmp_path, 571)
    study_id = study_id_of(session_factory, sent[571])
    settle(session_factory, study_id, StudyStatus.FINAL)
    spool = running_gateway.spool
    outcome: list[object] = []
    with session_scope(session_factory) as resend:
        resend.execute(select(Study.id).where(Study.id == study_id).with_for_update())
        purge = threading.Thread(target=lambda: outcome.append(purge_study(
            session_factory, spool, study_id, now=utcnow(), actor="test",
            rule=current_rule())))  # fmt: skip
        purge.start()
        purge.join(timeout=1.0)
        assert purge.is_alive(), "the purge waits for the study's lock"
        resend.execute(update(Instance).where(Instance.study_id == study_id)
                       .values(received_at=utcnow()))  # fmt: skip
    purge.join(timeout=30)
    assert outcome == [None], "the re-send made the study active: nothing to purge"
    assert all(spooled_files(session_factory, spool, study_id).values())


def test_a_case_a_timing_study_still_has_reads_of_to_do_keeps_its_images(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Researchers enrol old signed studies as timing-study cases; their readers need the
    images until every read of the case is done."""
    sent = receive_studies(running_gateway, session_factory, tmp_path, 581)
    study_id = study_id_of(session_factory, sent[581])
    settle(session_factory, study_id, StudyStatus.FINAL)
    with session_scope(session_factory) as session:
        user = create_user(session, "rita", role=Role.RESIDENT, password="a long password")
        reader_study = ReaderStudy(name="retention", protocol={}, seed=1)
        session.add(reader_study)
        session.flush()
        reader = StudyReader(reader_study_id=reader_study.id, user_id=user.id, role=Role.RESIDENT)
        case = StudyCase(reader_study_id=reader_study.id, study_id=study_id)
        session.add_all([reader, case])
        session.flush()
        read = StudyRead(reader_study_id=reader_study.id, reader_id=reader.id, case_id=case.id,
                         arm=Arm.RESIDENT_SCRATCH, position=1, status=ReadStatus.READY)  # fmt: skip
        session.add(read)
        session.flush()
        read_id = read.id
    spool = running_gateway.spool

    kept = run_retention(
        session_factory, spool, retention_days=RETENTION_DAYS, now=utcnow(), sr_deliveries=True
    )
    assert kept.purged == ()
    assert all(spooled_files(session_factory, spool, study_id).values())

    with session_scope(session_factory) as session:
        session.execute(update(StudyRead).where(StudyRead.id == read_id)
                        .values(status=ReadStatus.DONE))  # fmt: skip
    done = run_retention(
        session_factory, spool, retention_days=RETENTION_DAYS, now=utcnow(), sr_deliveries=True
    )
    assert [purged.study_id for purged in done.purged] == [study_id]


class SpoolWithAFailingFolder(Spool):
    """A spool whose disk fails (EIO) for the files of one study."""

    def __init__(self, spool: Spool, failing: set[str]) -> None:
        super().__init__(spool.root, spool.incoming)
        self._failing = failing

    def set_aside(self, relative: str) -> bool:
        if relative in self._failing:
            raise OSError(errno.EIO, "Input/output error")
        return super().set_aside(relative)


def test_a_study_whose_files_fail_to_move_is_skipped_and_the_others_still_go(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent = receive_studies(running_gateway, session_factory, tmp_path, 591, 592)
    failing, healthy = (study_id_of(session_factory, sent[seed]) for seed in (591, 592))
    for study_id in (failing, healthy):
        settle(session_factory, study_id, StudyStatus.FINAL)
    paths = spooled_files(session_factory, running_gateway.spool, failing)
    spool = SpoolWithAFailingFolder(running_gateway.spool, {sorted(paths)[1]})

    done = run_retention(
        session_factory, spool, retention_days=RETENTION_DAYS, now=utcnow(), sr_deliveries=True
    )

    assert [purged.study_id for purged in done.purged] == [healthy]
    assert spooled_files(session_factory, spool, failing) == paths, "what moved went back"
    assert purged_marks(session_factory, failing) == [None, None]
    assert f"gateway.purge_failed study_id={failing} error=OSError" in caplog.text
