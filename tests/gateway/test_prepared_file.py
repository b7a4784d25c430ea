"""The next reception file, made while the sender prepares its next image: used, or removed."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import prepared_file
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.models import Instance
from tests.dicom_peers import storescu, synthetic_study_files
from tests.support import recorded_results, wait_until


def maker(folder: Path) -> Any:
    return lambda: tempfile.NamedTemporaryFile(dir=folder, delete=False, mode="wb")


def test_a_prepared_file_is_taken_once(tmp_path: Path) -> None:
    prepared_file.prepare(maker(tmp_path))
    prepared_file.prepare(maker(tmp_path))  # one is waiting: no second file
    assert len(list(tmp_path.iterdir())) == 1
    taken = prepared_file.take()
    assert taken is not None
    assert Path(taken.name).exists()
    assert prepared_file.take() is None
    taken.close()


def test_a_stale_prepared_file_is_removed_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepared_file, "FRESH_SECONDS", -1.0)
    prepared_file.prepare(maker(tmp_path))
    assert prepared_file.take() is None
    assert not list(tmp_path.iterdir())


def test_discard_removes_the_file_and_each_thread_has_its_own(tmp_path: Path) -> None:
    taken_elsewhere: list[IO[Any] | None] = []
    prepared_file.prepare(maker(tmp_path))
    other = threading.Thread(target=lambda: taken_elsewhere.append(prepared_file.take()))
    other.start()
    other.join()
    assert taken_elsewhere == [None], "another thread took this thread's file"
    prepared_file.discard()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_receptions_use_prepared_files_and_none_is_left_behind(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every image after the first of an association arrives into a file made during the
    previous answer's wait; the one made after the last answer goes when the association ends."""
    taken = recorded_results(monkeypatch, prepared_file, "take", keep=lambda f: f is not None)
    sent = synthetic_study_files(78, tmp_path / "a") + synthetic_study_files(79, tmp_path / "b")
    assert storescu(sent, port=running_gateway.port).returncode == 0
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == len(sent)
    assert taken.count(True) == len(sent) - 1
    incoming = running_gateway.spool.incoming
    wait_until(lambda: not list(incoming.iterdir()), timeout=30,
               what="the last prepared file to be removed with its association")  # fmt: skip


def test_a_file_that_cannot_be_made_now_is_left_to_pynetdicom(tmp_path: Path) -> None:
    """Preparing runs on the connection's thread, where an exception would abort the
    association: a failure leaves nothing prepared instead."""
    prepared_file.prepare(maker(tmp_path / "missing folder"))
    assert prepared_file.take() is None
