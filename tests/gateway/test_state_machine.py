"""A peer that breaks the protocol is aborted or let go without killing a thread."""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.fsm import InvalidEventError
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.service import Gateway
from gateway.state_machine import GuardedStateMachine
from tests import raw_pdus
from tests.dicom_peers import echoscu
from tests.support import wait_until

A_ASSOCIATE_AC, A_ABORT = 0x02, 0x07
CONNECTIONS = 12


def state_machine(state: str, *waiting: object) -> GuardedStateMachine:
    """The state machine in ``state``, for a DUL whose peer called itself PEER and whose
    queue from the local user holds ``waiting``."""
    to_provider: queue.Queue[object] = queue.Queue()
    for primitive in waiting:
        to_provider.put(primitive)
    dul: Any = SimpleNamespace(
        assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title="PEER")),
        to_provider_queue=to_provider,
    )
    machine = GuardedStateMachine(dul)
    machine.current_state = state
    return machine


@pytest.mark.parametrize("event", ["Evt7", "Evt8", "Evt14"])  # accept, reject, release answer
def test_our_answer_after_the_abort_is_dropped_and_logged(
    event: str, caplog: pytest.LogCaptureFixture
) -> None:
    answer, next_one = object(), object()
    machine = state_machine("Sta13", answer, next_one)
    with caplog.at_level(logging.WARNING, logger="gateway.state_machine"):
        machine.do_action(event)
    assert machine.current_state == "Sta13", "still waiting for the close"
    assert list(machine.dul.to_provider_queue.queue) == [next_one], (
        "the answer is taken off the queue, or the reactor turns it into the event again"
    )
    [record] = caplog.records
    assert record.getMessage() == (
        f"gateway.answer_after_abort calling_ae=PEER primitive={event} state=Sta13"
    )


def test_the_same_answer_queued_twice_is_dropped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pynetdicom's reactor peeks at the queue from the local user on every loop, so an answer
    that waited behind another event can arrive as two events: one answer, one line."""
    machine = state_machine("Sta13", object())
    with caplog.at_level(logging.WARNING, logger="gateway.state_machine"):
        machine.do_action("Evt7")
        machine.do_action("Evt7")
    assert machine.dul.to_provider_queue.empty()
    assert len(caplog.records) == 1, [record.getMessage() for record in caplog.records]


def test_an_event_no_state_allows_is_still_raised_outside_the_abort() -> None:
    """Our accept while the association is established would be our fault: not hidden."""
    with pytest.raises(InvalidEventError):
        state_machine("Sta6").do_action("Evt7")


def test_a_peer_event_the_closing_state_does_not_allow_is_still_raised() -> None:
    """Evt2 (transport connection confirmed) is not an answer of ours."""
    with pytest.raises(InvalidEventError):
        state_machine("Sta13").do_action("Evt2")


def association_request() -> bytes:
    """An A-ASSOCIATE-RQ for verification from PIPELINER."""
    return raw_pdus.association_request("PIPELINER", Verification, max_pdu=16382)


def echo_request() -> bytes:
    """A C-ECHO-RQ on presentation context 1, as P-DATA-TF PDUs."""
    return b"".join(raw_pdus.echo_request_pdus(1, 16382, message_id=1))


def first_pdu_type(peer: socket.socket) -> int | None:
    """The type of the first PDU the gateway sends back, or None if it only closes."""
    header = b""
    while len(header) < 6:
        chunk = peer.recv(6 - len(header))
        if not chunk:
            return None
        header += chunk
    return int(struct.unpack(">B", header[:1])[0])


@pytest.mark.parametrize("backend", ["sqlite"])
def test_data_sent_before_the_association_is_accepted_aborts_it_without_a_thread_dying(
    running_gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """P-DATA right behind the A-ASSOCIATE-RQ (PS3.8 allows it only after the A-ASSOCIATE-AC).

    Most often the connection's thread reads it before the association's thread has accepted
    the request, aborts (AA-8) and then meets our accept; pynetdicom raised there and the
    thread died, about three connections in four. Sometimes the accept is first and the echo
    is answered. Either way no thread may die and the gateway goes on answering.
    """
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: died.append(hook.exc_type.__name__))
    pipelined = association_request() + echo_request()
    answers = []
    with caplog.at_level(logging.WARNING, logger="gateway.state_machine"):
        for _ in range(CONNECTIONS):
            with socket.create_connection(("127.0.0.1", running_gateway.port), timeout=10) as peer:
                peer.sendall(pipelined)
                answers.append(first_pdu_type(peer))
                time.sleep(0.2)  # the peer lingers: a late answer must not be acted on again
        assert echoscu(port=running_gateway.port).returncode == 0, "still serving"
    assert set(answers) <= {A_ABORT, A_ASSOCIATE_AC}, answers
    assert died == [], f"threads died: {died}"
    dropped = [r for r in caplog.records if "gateway.answer_after_abort" in r.getMessage()]
    assert len(dropped) <= CONNECTIONS, f"{len(dropped)} answers dropped for {CONNECTIONS} peers"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_abort_from_an_unknown_source_ends_the_association_without_a_thread_dying(
    running_gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PS3.8 defines A-ABORT sources 0 and 2; pynetdicom raised making a primitive of 220."""
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: died.append(hook.exc_type.__name__))
    ae = AE(ae_title="ODDABORT")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", running_gateway.port, ae_title="RADRAFT")
    assert association.is_established
    connection = association.dul.socket.socket  # type: ignore[union-attr]
    assert connection is not None
    with caplog.at_level(logging.WARNING, logger="gateway.state_machine"):
        connection.sendall(struct.pack(">BBLBBBB", A_ABORT, 0, 4, 0, 0, 220, 0))
        wait_until(lambda: running_gateway.open_associations == 0, timeout=30,
                   what="the gateway to end the association")  # fmt: skip
    association.abort()
    assert died == [], f"threads died: {died}"
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.state_machine"] == [
        "gateway.unusable_pdu calling_ae=ODDABORT pdu_event=Evt16 state=Sta6 error=ValueError"
    ]
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_garbage_after_the_abort_is_dropped_unparsed_and_unlogged(
    running_gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that keeps sending zeros on an established association and never reads: the
    first six bytes are an unknown PDU type and get the A-ABORT; the rest is ignored (PS3.8,
    Sta13) until the peer closes. pynetdicom parsed it and logged one "Unknown PDU type" line
    per six bytes, a flood at the rate the peer sends."""
    with (
        caplog.at_level(logging.WARNING),
        socket.create_connection(("127.0.0.1", running_gateway.port), timeout=10) as peer,
    ):
        peer.sendall(association_request())
        assert first_pdu_type(peer) == A_ASSOCIATE_AC
        with contextlib.suppress(OSError):  # the gateway may close first
            for _ in range(16):
                peer.sendall(bytes(1 << 16))
        time.sleep(0.5)
    wait_until(lambda: running_gateway.open_associations == 0, timeout=60,
               what="the gateway to end the association")  # fmt: skip
    unknown = [r for r in caplog.records if "Unknown PDU type" in r.getMessage()]
    assert len(unknown) == 1, f"{len(unknown)} lines for one peer"
    assert echoscu(port=running_gateway.port).returncode == 0, "still serving"
