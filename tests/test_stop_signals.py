"""SIGTERM and SIGINT reach a command's stop event with no lock on the handler's path
(``radraft_cli.stop_signals``).

The commands used to set the event inside the handler. Python runs a handler in the main thread
between two bytecodes, so a signal that came while that thread held the event's lock (inside
``Event.wait``, or inside a first handler's ``set`` when a second signal followed) left ``set``
waiting for its own thread: ``radraft gateway --processes 2`` hung so in about one stop in
three and was killed at its supervisor's deadline. The script below holds the lock on purpose;
with a handler that sets the event it never finishes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import os, signal, threading
from radraft_cli.stop_signals import relay_stop_signals

stop = threading.Event()
relay_stop_signals(stop)
with stop._cond:  # held by the main thread, as inside Event.wait or a first handler's set()
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(100_000))  # the handlers run here, between bytecodes
print("stopped:", stop.wait(10))
"""


def test_a_signal_while_the_stop_events_lock_is_held_still_stops_the_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "stopped: True"
