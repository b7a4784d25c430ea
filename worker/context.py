"""Per-process resources of a worker (settings, engine, sessions), made once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import make_engine, make_sessionmaker
from radraft.settings import Settings


@dataclass(frozen=True)
class WorkerContext:
    """What a task needs besides its arguments."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]


_context: WorkerContext | None = None


def init_context(settings: Settings) -> WorkerContext:
    """Create this process's engine; called at worker start (and in each prefork child)."""
    global _context
    engine = make_engine(settings.effective_database_url)
    _context = WorkerContext(settings, engine, make_sessionmaker(engine))
    return _context


def get_context() -> WorkerContext:
    """The context made at start-up; a task running without one is a programming error."""
    if _context is None:
        raise RuntimeError("worker context not initialised; start workers with `radraft worker`")
    return _context


def dispose_context() -> None:
    """Release the engine's connections at shutdown."""
    global _context
    if _context is not None:
        _context.engine.dispose()
        _context = None
