"""Celery tasks: thin adapters that parse ids, call ``worker.drafting`` and map the outcome."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, Task
from sqlalchemy.exc import OperationalError

from radraft.contract import DRAFT_STUDY_TASK
from radraft.db import session_scope
from radraft.errors import ConfigurationError
from radraft.timeutil import utcnow
from worker.batcher import GenerationTimeoutError
from worker.context import WorkerContext, get_context
from worker.drafting import (
    NoUsableImageError,
    fail_job,
    generate_draft,
    renew_heartbeat,
    store_draft,
    take_job,
)
from worker.runtimes.base import GenerationFailedError
from worker.study_files import OriginUnavailableError, ScratchDiskError, StudyFiles

RETRY_BACKOFF_MAX_SECONDS = 300
MAX_RETRIES = 5
TRANSIENT_ERRORS = (
    OperationalError,
    GenerationFailedError,
    OriginUnavailableError,
    ScratchDiskError,
)
"""Database outages, a model child that failed twice, a DICOMweb origin that cannot be reached,
a full scratch disk: worth retrying with backoff."""


class DraftStudyTask(Task):  # type: ignore[type-arg]
    """Marks the job failed (dead letter, visible in the API) once retries are exhausted."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id = int(args[0] if args else kwargs["job_id"])
        with session_scope(get_context().session_factory) as session:
            fail_job(session, job_id, f"gave up: {type(exc).__name__}", now=utcnow())


@contextmanager
def heartbeat(context: WorkerContext, job_id: int, *, interval: float) -> Iterator[None]:
    """Renew the job's heartbeat every ``interval`` seconds while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                with session_scope(context.session_factory) as session:
                    renew_heartbeat(session, job_id, now=utcnow())
            except OperationalError:
                continue  # a missed beat only risks one duplicate delivery, which is idempotent

    thread = threading.Thread(target=beat, name=f"radraft-heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def register_tasks(app: Celery) -> None:
    """Register radraft's tasks on ``app`` under their contract names."""

    @app.task(
        name=DRAFT_STUDY_TASK,
        base=DraftStudyTask,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=TRANSIENT_ERRORS,
        retry_backoff=True,
        retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
        retry_jitter=True,
        max_retries=MAX_RETRIES,
    )
    def draft_study(self: Task, job_id: int) -> None:  # type: ignore[type-arg]
        context = get_context()
        if context.batcher is None:
            raise ConfigurationError("this worker loaded no model; drafting workers load one")
        settings = context.settings
        worker_name = f"{socket.gethostname()}:{self.request.hostname or ''}"
        with session_scope(context.session_factory) as session:
            inputs = take_job(
                session,
                int(job_id),
                worker=worker_name,
                now=utcnow(),
                lease_seconds=settings.job_lease_seconds,
                is_retry=bool(self.request.retries),
            )
        if inputs is None:
            return
        try:
            with (
                heartbeat(context, inputs.job_id, interval=settings.job_lease_seconds / 4),
                StudyFiles(
                    settings.spool_dir,
                    settings.data_dir / "fetched",
                    token=settings.api_token,
                    timeout_seconds=settings.dicomweb_fetch_timeout_seconds,
                    min_bytes_per_second=settings.dicomweb_fetch_min_bytes_per_second,
                ) as files,
            ):
                outcome = generate_draft(
                    inputs,
                    batcher=context.batcher,
                    files=files,
                    image_size=settings.image_size,
                    max_new_tokens=settings.max_new_tokens,
                )
        except (NoUsableImageError, GenerationTimeoutError) as error:
            with session_scope(context.session_factory) as session:
                fail_job(session, inputs.job_id, str(error), now=utcnow())
            return
        with session_scope(context.session_factory) as session:
            store_draft(session, inputs.job_id, outcome, context.batcher.runtime.info, now=utcnow())
