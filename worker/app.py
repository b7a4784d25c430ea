"""The worker's Celery app and its entry point (``radraft worker``)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from radraft.broker import make_celery
from radraft.contract import DEFAULT_QUEUE, DRAFTING_QUEUE
from radraft.settings import Settings
from worker.context import dispose_context, init_context
from worker.tasks import register_tasks


def create_worker_app(settings: Settings) -> Celery:
    """A Celery app with radraft's tasks; a prefork child loads its own engine and model."""
    app = make_celery(settings, main="radraft-worker")
    register_tasks(app)

    @worker_process_init.connect(weak=False)
    def _init_child(**_kwargs: Any) -> None:
        init_context(settings)

    @worker_process_shutdown.connect(weak=False)
    def _dispose_child(**_kwargs: Any) -> None:
        dispose_context()

    return app


def run_worker(
    settings: Settings,
    *,
    queues: list[str] | None = None,
    concurrency: int | None = None,
    pool: str = "threads",
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker in this process until it is told to stop.

    The default thread pool runs up to ``max_batch`` tasks at once in one process, all feeding
    one batcher and one loaded model; that is how studies queued together share a forward pass.
    """
    if pool != "prefork":
        init_context(settings)
    app = create_worker_app(settings)
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--pool={pool}",
        f"--concurrency={concurrency or settings.max_batch}",
        "--queues=" + ",".join(queues or [DRAFTING_QUEUE, DEFAULT_QUEUE]),
        "--without-gossip",
        "--without-mingle",
    ]
    try:
        app.worker_main(argv)
    finally:
        dispose_context()
