"""Celery tasks: thin adapters that parse ids, call ``worker.drafting`` and map the outcome."""

from __future__ import annotations

import socket

from celery import Celery, Task
from sqlalchemy.exc import OperationalError

from radraft.contract import DRAFT_STUDY_TASK
from radraft.db import session_scope
from radraft.timeutil import utcnow
from worker.context import get_context
from worker.drafting import acknowledge_without_model, record_delivery

RETRY_BACKOFF_MAX_SECONDS = 300
MAX_RETRIES = 5


def register_tasks(app: Celery) -> None:
    """Register radraft's tasks on ``app`` under their contract names."""

    @app.task(
        name=DRAFT_STUDY_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=(OperationalError,),
        retry_backoff=True,
        retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
        retry_jitter=True,
        max_retries=MAX_RETRIES,
    )
    def draft_study(self: Task, job_id: int) -> None:  # type: ignore[type-arg]
        context = get_context()
        worker_name = f"{socket.gethostname()}:{self.request.hostname or ''}"
        with session_scope(context.session_factory) as session:
            if not record_delivery(session, int(job_id), worker=worker_name, now=utcnow()):
                return
        with session_scope(context.session_factory) as session:
            acknowledge_without_model(session, int(job_id), now=utcnow())
