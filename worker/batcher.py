"""Gathers generation requests from concurrent tasks into batches for one model, with a deadline.

Celery runs several tasks at once in a GPU worker (thread pool); each submits its request here
and waits. The batcher thread takes what arrived within ``wait_ms`` (up to ``max_batch``) and
runs it as one forward pass, so studies queued together share the GPU.

Celery's thread pool ignores task time limits, so the deadline lives here: a watchdog fails
every request of a batch still running after ``deadline_seconds`` (the tasks record why), then
restarts the runtime if it can be restarted (a model child process is killed and started
again), or else reports the runtime hung (an in-process model cannot be interrupted; the worker
process then ends and its supervisor starts a fresh one).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from radraft.errors import RadraftError
from radraft.logs import log_event
from worker.runtimes.base import (
    GenerationFailedError,
    GenerationRequest,
    GenerationResult,
    ModelRuntime,
)

logger = logging.getLogger(__name__)

WATCHDOG_INTERVAL_SECONDS = 0.5


class GenerationTimeoutError(RadraftError):
    """A batch ran past the generation deadline; its studies fail with this reason."""


@runtime_checkable
class RestartableRuntime(Protocol):
    """A runtime that can abandon a running batch and start afresh (a child process can)."""

    def restart(self) -> None:
        """Abandon the running batch (its generate raises) and be ready for the next one."""
        ...


@dataclass
class _Pending:
    request: GenerationRequest
    future: Future[GenerationResult]


class Batcher:
    """A thread that owns the model and runs batched generations, watched by a deadline."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        max_batch: int,
        wait_ms: float,
        deadline_seconds: float | None = None,
        on_hung: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self._max_batch = max_batch
        self._wait = wait_ms / 1000.0
        self._deadline = deadline_seconds
        self._on_hung = on_hung
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._running: tuple[list[_Pending], float] | None = None
        self._lock = threading.Lock()
        self.hung = False
        self._thread = threading.Thread(target=self._run, name="radraft-batcher", daemon=True)
        self._thread.start()
        if deadline_seconds is not None:
            threading.Thread(target=self._watch, name="radraft-watchdog", daemon=True).start()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        """Queue one request; the future resolves when its batch is done (or is failed)."""
        future: Future[GenerationResult] = Future()
        if self.hung:
            future.set_exception(
                GenerationFailedError("the model runtime hung; this worker is restarting")
            )
            return future
        self._queue.put(_Pending(request, future))
        return future

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Submit and wait; the watchdog bounds the wait by the deadline."""
        return self.submit(request).result()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = self._gather(batch)
            with self._lock:
                self._running = (batch, time.monotonic())
            try:
                results = self.runtime.generate([item.request for item in batch])
            except Exception as error:
                for item in batch:
                    _settle(item.future, error=error)
            else:
                for item, result in zip(batch, results, strict=True):
                    _settle(item.future, result=result)
                log_event(logger, "worker.batch_done", size=len(batch))
            finally:
                with self._lock:
                    self._running = None
            if stop:
                return

    def _watch(self) -> None:
        """Fail a batch that overruns the deadline, then restart or report the runtime."""
        deadline = self._deadline
        if deadline is None:
            return
        while self._thread.is_alive():
            time.sleep(WATCHDOG_INTERVAL_SECONDS)
            with self._lock:
                running = self._running
            if running is None or time.monotonic() - running[1] <= deadline:
                continue
            batch, _started = running
            reason = GenerationTimeoutError(
                f"generation took longer than {deadline:g} s (RADRAFT_GENERATION_DEADLINE_SECONDS)"
            )
            for item in batch:
                _settle(item.future, error=reason)
            log_event(logger, "worker.batch_deadline", logging.ERROR, size=len(batch))
            if isinstance(self.runtime, RestartableRuntime):
                self.runtime.restart()
                with self._lock:
                    if self._running is running:
                        self._running = None
                continue
            self.hung = True
            if self._on_hung is not None:
                self._on_hung()
            return

    def _gather(self, batch: list[_Pending]) -> bool:
        """Add requests arriving within the wait window; True if a stop was requested."""
        deadline = time.monotonic() + self._wait
        while len(batch) < self._max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def close(self) -> None:
        """Finish queued work, stop the thread and release the model."""
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.runtime.close()


def _settle(
    future: Future[GenerationResult],
    *,
    result: GenerationResult | None = None,
    error: BaseException | None = None,
) -> None:
    """Resolve a future once: a batch failed by the watchdog keeps that failure."""
    try:
        if error is not None:
            future.set_exception(error)
        elif result is not None:
            future.set_result(result)
    except InvalidStateError:
        return
