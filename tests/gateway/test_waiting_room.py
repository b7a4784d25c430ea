"""The DICOM port's waiting room: connections wait for their request without a thread
(``gateway.waiting_room``), on a live gateway in this process."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from tests.conftest import RecordingPublisher
from tests.dicom_peers import echoscu, store_statuses, storescu, write_study
from tests.raw_pdus import association_request
from tests.support import closed_within, wait_until

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
A_ASSOCIATE_AC = 0x02
A_ABORT = 0x07


@pytest.fixture
def gateway(
    settings: Settings, session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> Iterator[Gateway]:
    """A gateway whose connections wait 2 s for their request, at most three at once."""
    settings = settings.model_copy(
        update={"dicom_request_timeout_seconds": 2.0, "dicom_max_waiting_connections": 3}
    )
    running = Gateway(settings, session_factory, publisher)
    running.start()
    yield running
    running.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _wake_the_room(port: int) -> None:
    """The room's own thread starts with its first guest: let one come and go."""
    _connect(port).close()
    time.sleep(0.2)


def _counted(caplog: pytest.LogCaptureFixture, event: str) -> int:
    """The connections the lines of ``event`` counted, all together."""
    pattern = re.compile(rf"{event} connections=(\d+)")
    return sum(
        int(found.group(1))
        for record in caplog.records
        if (found := pattern.search(record.getMessage()))
    )


def test_connections_that_say_nothing_take_no_thread_and_keep_no_sender_out(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pynetdicom gave each accepted connection three threads at once, the DUL's turning
    every millisecond while it waited: fifty silent connections a second made a one-image
    store take 5-6.5 s."""
    caplog.set_level(logging.INFO)
    settings = settings.model_copy(update={"dicom_request_timeout_seconds": 2.0})
    gateway = Gateway(settings, session_factory, publisher)
    gateway.start()
    try:
        _wake_the_room(gateway.port)
        threads_before = threading.active_count()
        silent = [_connect(gateway.port) for _ in range(100)]
        time.sleep(0.5)  # all accepted
        assert threading.active_count() - threads_before <= 1, "no thread while they wait"
        files = write_study(make_chest_study(2, rows=64, columns=64), tmp_path / "s")
        assert store_statuses(storescu(files, port=gateway.port, debug=True).output) == [0, 0]
        for connection in silent:
            assert closed_within(connection, 10), "closed when its time runs out"
            connection.close()
        wait_until(
            lambda: _counted(caplog, "gateway.dicom_request_timeouts") == 100,
            timeout=15,
            what="the timeouts counted in the log",
        )
    finally:
        gateway.stop()


def test_a_request_sent_in_pieces_is_served_once_it_is_whole(gateway: Gateway) -> None:
    request = association_request("PIECES", Verification, max_pdu=16384)
    _wake_the_room(gateway.port)
    threads_before = threading.active_count()
    with _connect(gateway.port) as connection:
        for start in range(0, len(request) - 1, len(request) // 4):
            connection.sendall(request[start : start + len(request) // 4])
            time.sleep(0.3)  # 1.2 s in all, within the 2 s the request has
            if start + len(request) // 4 < len(request):
                assert threading.active_count() == threads_before, "no thread for half of it"
        connection.sendall(request[len(request) // 4 * 4 :])
        answer = connection.recv(1)
    assert answer == bytes([A_ASSOCIATE_AC])


def test_a_full_room_pushes_out_the_connection_that_waited_longest(
    gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first, second, third = (_connect(gateway.port) for _ in range(3))
    time.sleep(0.2)
    fourth = _connect(gateway.port)
    try:
        assert closed_within(first, 1.5), "the first one made room for the fourth"
        for waiting in (second, third, fourth):
            assert not closed_within(waiting, 0.1), "the others still wait"
        # A real sender sends its request as it connects, so a full room does not keep it out.
        files = write_study(make_chest_study(1, rows=64, columns=64), tmp_path / "s")
        statuses = store_statuses(storescu(files, port=gateway.port, debug=True).output)
        assert statuses == [0] * len(files)
        assert _counted(caplog, "gateway.dicom_waiting_room_full") >= 1
    finally:
        for connection in (first, second, third, fourth):
            connection.close()


def test_peers_that_close_or_send_no_request_are_dealt_with_at_once(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(50):  # port scans and load balancers' checks
        _connect(gateway.port).close()
    # Half a request, then the peer's side shut: the rest can never come.
    with _connect(gateway.port) as half:
        half.sendall(association_request("HALF", Verification, max_pdu=16384)[:40])
        half.shutdown(socket.SHUT_WR)
        assert closed_within(half, 1.0), "closed at once, not when its time runs out"
    # A PDU other than an association request first: handed to pynetdicom, which aborts.
    with _connect(gateway.port) as release_first:
        release_first.sendall(bytes([0x05, 0x00, 0, 0, 0, 4, 0, 0, 0, 0]))
        release_first.settimeout(1.5)
        assert release_first.recv(1) == bytes([A_ABORT])
    assert echoscu(port=gateway.port).returncode == 0
    assert _counted(caplog, "gateway.dicom_request_timeouts") == 0
    assert "Traceback" not in caplog.text
