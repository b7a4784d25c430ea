"""Purging for space on a real small disk (a 40 MB tmpfs): settled studies go, the longest idle
first, until the target is free again; recent and unsigned studies stay."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.janitor import SPACE_CHECK_SECONDS, Janitor
from gateway.retention import PURGED_ACTION
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import StudyStatus
from radraft.free_space import free_bytes
from radraft.models import AuditEntry
from radraft.settings import Settings
from tests.conftest import RecordingPublisher
from tests.dicom_peers import storescu, synthetic_study_files
from tests.gateway.test_retention import (
    receive_studies,
    second_gateway,
    settle,
    spooled_files,
    study_id_of,
)
from tests.support import free_port, wait_until

MB = 1 << 20


@pytest.fixture
def small_settings(settings: Settings, small_disk: Path) -> Settings:
    """The test's settings with the data dir (spool) on the small disk, 1 MB floor."""
    return settings.model_copy(update={"data_dir": small_disk / "data", "spool_min_free_bytes": MB})


@pytest.fixture
def gateway_on_small_disk(
    small_settings: Settings, session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> Iterator[Gateway]:
    gateway = Gateway(small_settings, session_factory, publisher)
    gateway.start()
    yield gateway
    gateway.stop()


def _studies(gateway: Gateway, factory: sessionmaker[Session], folder: Path) -> dict[int, int]:
    """Four studies of two 2 MB images each, sent by storescu; seed -> study id, decided."""
    sent = receive_studies(gateway, factory, folder, 601, 602, 603, 604, size=1024)
    return {seed: study_id_of(factory, files) for seed, files in sent.items()}


def _fill(disk: Path, leave_free: int) -> None:
    """A filler file that leaves ``leave_free`` bytes free on the disk."""
    filler = disk / "filler"
    size = free_bytes(disk) - leave_free
    with open(filler, "wb") as stream:
        stream.write(b"\0" * size)
        stream.flush()
        os.fsync(stream.fileno())


def test_below_the_target_the_longest_idle_settled_studies_go_until_it_is_free_again(
    gateway_on_small_disk: Gateway,
    small_settings: Settings,
    small_disk: Path,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    ids = _studies(gateway_on_small_disk, session_factory, tmp_path)
    settle(session_factory, ids[601], StudyStatus.FINAL, idle=timedelta(hours=5))
    settle(session_factory, ids[602], StudyStatus.FINAL, idle=timedelta(hours=4))
    settle(session_factory, ids[603], StudyStatus.FINAL, idle=timedelta(hours=3))
    settle(session_factory, ids[604], StudyStatus.FINAL, idle=timedelta(minutes=20))
    _fill(small_disk, leave_free=3 * MB)
    target = 9 * MB  # two 4 MB studies must go; a third would be one too many

    with second_gateway(small_settings, session_factory, publisher,
                        spool_target_free_bytes=target) as retaining:  # fmt: skip
        wait_until(lambda: free_bytes(small_disk) >= target, what="the janitor's check at start")

    held = {seed: all(spooled_files(session_factory, retaining.spool, ids[seed]).values())
            for seed in ids}  # fmt: skip
    assert held == {601: False, 602: False, 603: True, 604: True}
    with session_scope(session_factory) as session:
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == PURGED_ACTION))
        assert [(entry.object_id, (entry.details or {}).get("reason")) for entry in audit] == [
            (str(ids[601]), "free_space"),
            (str(ids[602]), "free_space"),
        ]


def test_when_only_studies_that_must_stay_are_left_it_says_so_once(
    gateway_on_small_disk: Gateway,
    small_settings: Settings,
    small_disk: Path,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unsigned drafts and a study signed minutes ago are not taken, even at the floor."""
    ids = _studies(gateway_on_small_disk, session_factory, tmp_path)
    settle(session_factory, ids[601], StudyStatus.DRAFTED, idle=timedelta(days=9))
    settle(session_factory, ids[602], StudyStatus.PRELIMINARY, idle=timedelta(days=9))
    settle(session_factory, ids[603], StudyStatus.FINAL, idle=timedelta(minutes=5))
    _fill(small_disk, leave_free=2 * MB)
    janitor = Janitor(
        small_settings.model_copy(update={"spool_target_free_bytes": 9 * MB}),
        session_factory, gateway_on_small_disk.spool, threading.Event(),
    )  # fmt: skip
    caplog.set_level(logging.INFO)

    for _ in range(3):
        janitor.check_space()

    assert all(
        all(spooled_files(session_factory, gateway_on_small_disk.spool, study_id).values())
        for study_id in ids.values()
    )
    assert caplog.text.count("gateway.spool_short_of_space") == 1
    assert "no settled study idle an hour is left to purge" in caplog.text


def test_a_target_at_or_below_the_floor_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="must be above RADRAFT_SPOOL_MIN_FREE_BYTES"):
        Settings(
            **{**settings.model_dump(), "spool_target_free_bytes": settings.spool_min_free_bytes}
        )


@pytest.mark.parametrize("receiver", ["full", "ingest-only"])
def test_instances_arriving_below_the_target_wake_the_purge_at_once(
    gateway_on_small_disk: Gateway,
    small_settings: Settings,
    small_disk: Path,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
    receiver: str,
) -> None:
    """A burst must not wait for the half-minute check: the instance that finds the free space
    below the target wakes the janitor, which frees it within seconds, while the sender keeps
    getting 0x0000; also when an ingest-only process (``--processes N``) receives it, which
    rings the full process's janitor (``gateway.janitor_doorbell``)."""
    ids = _studies(gateway_on_small_disk, session_factory, tmp_path)
    for study_id in ids.values():
        settle(session_factory, study_id, StudyStatus.FINAL, idle=timedelta(hours=3))
    target = 9 * MB
    _fill(small_disk, leave_free=target + MB)  # just above: the check at start has nothing to do
    with second_gateway(small_settings, session_factory, publisher,
                        spool_target_free_bytes=target) as retaining:  # fmt: skip
        time.sleep(1.0)  # past the check at start
        assert all(all(spooled_files(session_factory, retaining.spool, i).values())
                   for i in ids.values())  # fmt: skip
        burst = synthetic_study_files(611, tmp_path / "burst", size=1024)
        with _receiver(retaining, receiver, small_settings, session_factory, publisher) as port:
            sent = time.monotonic()
            assert storescu(burst, port=port).returncode == 0
        wait_until(lambda: free_bytes(small_disk) >= target, timeout=10.0,
                   what="the purge woken by the burst, long before the next check")  # fmt: skip
        assert time.monotonic() - sent < SPACE_CHECK_SECONDS
    spool = retaining.spool
    purged = [
        s for s, i in ids.items() if not any(spooled_files(session_factory, spool, i).values())
    ]
    # Each image of the burst may wake a check: one study or two go, the longest idle first.
    assert purged in ([601], [601, 602])


@contextmanager
def _receiver(
    full: Gateway,
    kind: str,
    settings: Settings,
    factory: sessionmaker[Session],
    publisher: RecordingPublisher,
) -> Iterator[int]:
    """The port a burst goes to: the full gateway's, or an ingest-only process's beside it."""
    if kind == "full":
        yield full.port
        return
    ingest = Gateway(
        settings.model_copy(update={"dicom_port": free_port(),
                                    "spool_target_free_bytes": 9 * MB}),
        factory, publisher, ingest_only=True,
    )  # fmt: skip
    ingest.start()
    try:
        yield ingest.port
    finally:
        ingest.stop()
