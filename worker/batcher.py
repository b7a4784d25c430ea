"""Gathers generation requests from concurrent tasks into batches for one model.

Celery runs several tasks at once in a GPU worker (thread pool); each submits its request here
and waits. The batcher thread takes what arrived within ``wait_ms`` (up to ``max_batch``) and
runs it as one forward pass, so studies queued together share the GPU.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from radraft.logs import log_event
from worker.runtimes.base import GenerationRequest, GenerationResult, ModelRuntime

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    request: GenerationRequest
    future: Future[GenerationResult]


class Batcher:
    """A thread that owns the model and runs batched generations."""

    def __init__(self, runtime: ModelRuntime, *, max_batch: int, wait_ms: float) -> None:
        self.runtime = runtime
        self._max_batch = max_batch
        self._wait = wait_ms / 1000.0
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="radraft-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        """Queue one request; the future resolves when its batch is done."""
        future: Future[GenerationResult] = Future()
        self._queue.put(_Pending(request, future))
        return future

    def generate(
        self, request: GenerationRequest, timeout: float | None = None
    ) -> GenerationResult:
        """Submit and wait."""
        return self.submit(request).result(timeout=timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = self._gather(batch)
            try:
                results = self.runtime.generate([item.request for item in batch])
            except Exception as error:
                for item in batch:
                    item.future.set_exception(error)
            else:
                for item, result in zip(batch, results, strict=True):
                    item.future.set_result(result)
                log_event(logger, "worker.batch_done", size=len(batch))
            if stop:
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
