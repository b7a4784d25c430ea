"""Per-process resources of a worker (settings, engine, sessions, model), made once at start-up."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import engine_for, make_sessionmaker
from radraft.logs import log_event
from radraft.settings import Settings
from worker.batcher import Batcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerContext:
    """What a task needs besides its arguments."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    batcher: Batcher | None


_context: WorkerContext | None = None


def init_context(settings: Settings, *, load_model: bool = True) -> WorkerContext:
    """Create this process's engine and load the model once (never per request)."""
    global _context
    from worker.runtimes.loader import load_runtime

    batcher = None
    if load_model:
        batcher = Batcher(
            load_runtime(settings),
            max_batch=settings.max_batch,
            wait_ms=settings.batch_wait_ms,
            deadline_seconds=settings.generation_deadline_seconds,
            on_hung=end_this_worker,
        )
    engine = engine_for(settings)
    _context = WorkerContext(settings, engine, make_sessionmaker(engine), batcher)
    return _context


def end_this_worker() -> None:
    """An in-process model hung past the deadline and cannot be interrupted: end this worker.

    SIGTERM starts Celery's warm shutdown; the hung batch's tasks have already failed their
    studies, so nothing waits, and the worker's supervisor (``radraft serve``, compose's restart
    policy, systemd) starts a fresh process with a fresh model.
    """
    log_event(logger, "worker.model_hung", logging.ERROR)
    os.kill(os.getpid(), signal.SIGTERM)


def get_context() -> WorkerContext:
    """The context made at start-up; a task running without one is a programming error."""
    if _context is None:
        raise RuntimeError("worker context not initialised; start workers with `radraft worker`")
    return _context


def dispose_context() -> None:
    """Release the model and the engine's connections at shutdown."""
    global _context
    if _context is not None:
        if _context.batcher is not None:
            _context.batcher.close()
        _context.engine.dispose()
        _context = None
