"""A model runtime in a supervised child process (CheXagent's isolated environment).

The worker talks to the child over the batch protocol. If the child dies or stops answering
within the timeout, it is killed, started again, and the batch is sent once more; a batch that
fails twice raises ``GenerationFailedError``, which the task retries, so no study is lost.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, BinaryIO, cast

from radraft.logs import log_event
from radraft.model_options import Device
from worker.runtimes.base import (
    GenerationFailedError,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelLoadError,
)
from worker.runtimes.protocol import (
    ProtocolError,
    decode_results,
    encode_requests,
    read_frame,
    write_frame,
)

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


class SupervisedRuntime:
    """Runs ``worker.runtimes.child`` with ``python`` and restarts it when it fails."""

    def __init__(
        self,
        *,
        python: Path,
        backend: str,
        source: str,
        device: Device,
        demo: bool = False,
        hf_options: Sequence[str] = (),
        load_timeout: float = 900.0,
        batch_timeout: float = 600.0,
    ) -> None:
        self._command = [
            str(python), "-m", "worker.runtimes.child",
            "--backend", backend, "--source", source, "--device", device.value,
        ]  # fmt: skip
        if demo:
            self._command.append("--demo")
        self._command.extend(hf_options)
        self._load_timeout = load_timeout
        self._batch_timeout = batch_timeout
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radraft-child-io")
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._abandoned = threading.Event()
        self.in_flight = threading.Event()
        """Set while a batch is with the child (tests kill the child then)."""
        self._info = self._start()

    @property
    def info(self) -> ModelInfo:
        """The model's identity, as the child reported it."""
        return self._info

    @property
    def pid(self) -> int | None:
        """Process id of the current child."""
        return self._process.pid if self._process else None

    def _start(self) -> ModelInfo:
        environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self._process = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            cwd=REPO_ROOT,
        )
        try:
            header, _ = self._read(self._load_timeout)
        except (ProtocolError, FutureTimeout) as error:
            self._kill()
            raise ModelLoadError(
                f"the model child process did not start ({type(error).__name__}); "
                f"command: {' '.join(self._command)}"
            ) from error
        if not header.get("ok"):
            self._kill()
            raise ModelLoadError(f"the model child process could not load: {header.get('error')}")
        return ModelInfo(**header["info"])

    def _pipes(self) -> tuple[BinaryIO, BinaryIO]:
        """The child's stdin and stdout; a child that is not running is a protocol failure."""
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise ProtocolError("the model child process is not running")
        return cast(BinaryIO, process.stdin), cast(BinaryIO, process.stdout)

    def _read(self, timeout: float) -> tuple[dict[str, Any], bytes]:
        _, stream = self._pipes()
        return self._reader.submit(read_frame, stream).result(timeout=timeout)

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        if self._process is not None:
            self._process.wait()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Send the batch; on a dead or silent child restart it and send it once more."""
        header, payload = encode_requests(requests)
        with self._lock:
            for attempt in range(2):
                try:
                    return self._exchange(header, payload)
                except (ProtocolError, BrokenPipeError, FutureTimeout) as error:
                    log_event(
                        logger,
                        "worker.model_child_failed",
                        logging.WARNING,
                        error=type(error).__name__,
                        attempt=attempt + 1,
                    )
                    self._kill()
                    self.restarts += 1
                    self._info = self._start()
                    if self._abandoned.is_set():
                        self._abandoned.clear()
                        raise GenerationFailedError(
                            "the batch was abandoned at the generation deadline"
                        ) from error
            raise GenerationFailedError("the model child process failed twice on this batch")

    def restart(self) -> None:
        """Abandon the running batch: kill the child; ``generate`` starts a new one and raises.

        Called by the batcher's deadline watchdog from another thread, so it takes no lock; the
        batch is not sent again (it already overran once)."""
        self._abandoned.set()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    def _exchange(self, header: dict[str, Any], payload: bytes) -> list[GenerationResult]:
        requests_in, _ = self._pipes()
        self.in_flight.set()
        try:
            write_frame(requests_in, header, payload)
            reply, _ = self._read(self._batch_timeout)
        finally:
            self.in_flight.clear()
        if not reply.get("ok"):
            raise GenerationFailedError(f"model error: {reply.get('error')}")
        return decode_results(reply)

    def close(self) -> None:
        """Close the child's stdin (it exits at EOF), then make sure it is gone."""
        if self._process is not None and self._process.stdin is not None:
            try:
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
        self._reader.shutdown(wait=False)
