"""radraft services started as real processes, the way an operator starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from radraft.settings import Settings, settings_to_environment
from tests.support import wait_until


def radraft_command(
    settings: Settings, *arguments: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``radraft ARGUMENTS`` run to its end with ``settings``, as an administrator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "radraft_cli", *arguments],
        env={**os.environ, **settings_to_environment(settings)},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@contextmanager
def radraft_process(
    settings: Settings, command: list[str], log: Path, *, ready_text: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``radraft COMMAND`` with ``settings``; wait for ``ready_text`` in its log; SIGTERM it."""
    environment = {**os.environ, **settings_to_environment(settings)}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "radraft_cli", *command],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: process.poll() is not None or ready_text in log.read_text(errors="replace"),
            timeout=60,
            what=f"radraft {' '.join(command)} to be ready",
        )
        assert process.poll() is None, log.read_text(errors="replace")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
