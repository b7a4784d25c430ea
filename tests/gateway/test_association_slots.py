"""At the association limit the association idle longest gives its slot to a new request
(``gateway.association_slots``), on a live gateway in this process with dcmtk and pynetdicom
peers. Before, a peer that opened as many associations as the limit and left them idle kept
every sender out (A-ASSOCIATE-RJ, local limit exceeded) for the 120 s network timeout."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy.orm import Session, sessionmaker

from gateway import association_slots
from gateway.service import Gateway
from radraft.settings import Settings
from tests.conftest import RecordingPublisher
from tests.dicom_peers import store_statuses, storescu, synthetic_study_files
from tests.support import wait_until

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
LIMIT = 3
IDLE_ENOUGH = 1.0
"""``PUSH_OUT_MIN_IDLE_SECONDS`` in these tests (10 s in service)."""


@pytest.fixture
def gateway(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    """A gateway serving at most three associations, for a peer allowed by AE title."""
    monkeypatch.setattr(association_slots, "PUSH_OUT_MIN_IDLE_SECONDS", IDLE_ENOUGH)
    settings = settings.model_copy(
        update={
            "dicom_max_associations": LIMIT,
            "allowed_calling_aes": ["HOLDER", "STORESCU", "ECHOER"],
        }
    )
    running = Gateway(settings, session_factory, publisher)
    running.start()
    yield running
    running.stop()


def _associate(port: int, calling: str = "HOLDER") -> Association:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="RADRAFT")


def _hold(port: int, count: int) -> list[Association]:
    held = [_associate(port) for _ in range(count)]
    assert all(association.is_established for association in held)
    return held


def _release(associations: list[Association]) -> None:
    for association in associations:
        if association.is_established:
            association.release()


def test_an_idle_association_gives_its_slot_to_a_sender_at_the_limit(
    gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    held = _hold(gateway.port, LIMIT)
    try:
        # Active just now, whatever the time the set-up took on a loaded machine.
        assert all(association.send_c_echo().Status == 0 for association in held)
        newest = _associate(gateway.port)  # the others have not been idle long enough yet
        assert newest.is_rejected, "recently active associations keep their slots"
        time.sleep(IDLE_ENOUGH + 0.2)
        assert held[2].send_c_echo().Status == 0  # active again: not the one to go
        caplog.set_level(logging.WARNING, logger="gateway.association_slots")
        files = synthetic_study_files(810, tmp_path / "study", size=64)
        result = storescu(files, port=gateway.port, debug=True)
        assert store_statuses(result.output) == [0, 0], result.output
        wait_until(lambda: held[0].is_aborted, timeout=10, what="the longest idle aborted")
        assert not held[1].is_aborted, "only one gave its slot"
        assert not held[2].is_aborted
        assert held[2].send_c_echo().Status == 0
        assert "gateway.association_pushed_out calling_ae=HOLDER" in caplog.text
        assert f"limit={LIMIT}" in caplog.text
    finally:
        _release(held)


def test_associations_in_use_keep_their_slots_and_the_request_is_refused(
    gateway: Gateway,
) -> None:
    """Peers that keep working (an echo every 0.2 s) are never pushed out: the new request
    is rejected as before, and every held association still works after it."""
    held = _hold(gateway.port, LIMIT)
    stop = threading.Event()
    failures: list[object] = []

    def keep_busy(association: Association) -> None:
        while not stop.is_set():
            status = association.send_c_echo()
            if getattr(status, "Status", None) != 0:
                failures.append(status)
                return
            time.sleep(0.2)

    workers = [threading.Thread(target=keep_busy, args=(a,), daemon=True) for a in held]
    for worker in workers:
        worker.start()
    try:
        time.sleep(IDLE_ENOUGH + 0.5)
        assert _associate(gateway.port, "ECHOER").is_rejected
        time.sleep(0.5)
        assert failures == []
        assert not any(association.is_aborted for association in held)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
        _release(held)


def test_a_request_that_would_be_rejected_anyway_pushes_nobody_out(gateway: Gateway) -> None:
    held = _hold(gateway.port, LIMIT)
    try:
        time.sleep(IDLE_ENOUGH + 0.3)
        assert _associate(gateway.port, "STRANGER").is_rejected  # not on the allow-list
        time.sleep(0.5)
        assert not any(association.is_aborted for association in held)
        assert all(association.send_c_echo().Status == 0 for association in held)
    finally:
        _release(held)
