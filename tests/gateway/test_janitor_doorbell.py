"""The janitor's doorbell: a ring reaches the process serving the same data folder, only it."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.janitor_doorbell import Doorbell, doorbell_address, ring


def test_a_ring_wakes_the_listener_of_the_same_data_folder_and_no_other(tmp_path: Path) -> None:
    here, elsewhere = threading.Event(), threading.Event()
    ring(doorbell_address(tmp_path / "a"))  # nobody listens yet: dropped, no error
    bells = [
        Doorbell(doorbell_address(tmp_path / "a"), here.set),
        Doorbell(doorbell_address(tmp_path / "b"), elsewhere.set),
    ]
    try:
        ring(doorbell_address(tmp_path / "a"))
        assert here.wait(5.0)
        assert not elsewhere.wait(0.5)
    finally:
        for bell in bells:
            bell.close()


def test_a_second_listener_on_one_folder_is_refused_without_harm(tmp_path: Path) -> None:
    woken = threading.Event()
    first = Doorbell(doorbell_address(tmp_path), woken.set)
    second = Doorbell(doorbell_address(tmp_path), lambda: None)
    try:
        ring(doorbell_address(tmp_path))
        assert woken.wait(5.0), "the first one still hears it"
    finally:
        second.close()
        first.close()
    ring(doorbell_address(tmp_path))  # closed: dropped, no error
