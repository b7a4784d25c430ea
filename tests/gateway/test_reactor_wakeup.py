"""An accepted association's loop turns when there is work for it, and misses none."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import reactor_wakeup
from gateway.reactor_wakeup import WakeGate, WakingQueue
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.models import Instance
from tests.dicom_peers import echoscu, storescu, synthetic_study_files

NEVER = 3600.0
"""A poll interval no test waits out: whatever happens, happened because of a wake."""


def wait_in_thread(gate: WakeGate) -> threading.Thread:
    waiter = threading.Thread(target=gate.wait, daemon=True)
    waiter.start()
    return waiter


def test_a_put_wakes_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reactor_wakeup, "POLL_SECONDS", NEVER)
    gate = WakeGate()
    messages = WakingQueue(gate, queue.Queue())
    waiter = wait_in_thread(gate)
    time.sleep(0.05)
    assert waiter.is_alive(), "the loop turned with nothing to do"
    messages.put("a message")
    waiter.join(timeout=10)
    assert not waiter.is_alive(), "a put did not wake the loop"
    assert messages.get_nowait() == "a message"


def test_a_wake_before_the_wait_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reactor_wakeup, "POLL_SECONDS", NEVER)
    gate = WakeGate()
    WakingQueue(gate, queue.Queue()).put("arrived while the loop was busy")
    waiter = wait_in_thread(gate)
    waiter.join(timeout=10)
    assert not waiter.is_alive()


def test_a_paused_loop_stays_paused_until_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom clears the checkpoint to pause the loop; a put must not run it then."""
    monkeypatch.setattr(reactor_wakeup, "POLL_SECONDS", NEVER)
    gate = WakeGate()
    gate.clear()
    messages = WakingQueue(gate, queue.Queue())
    waiter = wait_in_thread(gate)
    messages.put("a message")
    time.sleep(0.05)
    assert waiter.is_alive(), "the paused loop ran"
    gate.set()
    waiter.join(timeout=10)
    assert not waiter.is_alive()


def test_items_already_queued_move_over_in_order() -> None:
    old: queue.Queue[str] = queue.Queue()
    for item in ("first", "second"):
        old.put(item)
    moved = WakingQueue(WakeGate(), old)
    assert [moved.get_nowait(), moved.get_nowait()] == ["first", "second"]


def acceptor_loop_turns(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry per turn of an accepted association's loop (each turn asks for a message)."""
    turns: list[None] = []
    original = DIMSEServiceProvider.get_msg

    def counted(self: DIMSEServiceProvider, block: bool = False) -> Any:
        if self.assoc.is_acceptor:
            turns.append(None)
        return original(self, block)

    monkeypatch.setattr(DIMSEServiceProvider, "get_msg", counted)
    return turns


@pytest.mark.parametrize("backend", ["sqlite"])
def test_echo_store_and_release_are_served_by_wakes_alone(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With a poll that never comes, C-ECHO (pynetdicom's path), C-STORE and release still
    complete, and an idle association's loop does not turn."""
    monkeypatch.setattr(reactor_wakeup, "POLL_SECONDS", NEVER)
    assert echoscu(port=running_gateway.port).returncode == 0
    sent = synthetic_study_files(75, tmp_path / "sent")
    assert storescu(sent, port=running_gateway.port).returncode == 0
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == len(sent)

    turns = acceptor_loop_turns(monkeypatch)
    ae = AE(ae_title="IDLE")
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", running_gateway.port, ae_title="RADRAFT")
    assert association.is_established
    time.sleep(1.0)
    idle_turns = len(turns)
    association.release()
    assert idle_turns <= 3, f"{idle_turns} turns of an idle association's loop in one second"
    assert not association.is_established
