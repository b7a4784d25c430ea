"""The FastAPI application factory; the engine is made in the lifespan, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from radraft import __version__
from radraft.db import make_engine, make_sessionmaker
from radraft.settings import Settings
from reporting.web import health, outbox, studies


def create_app(settings: Settings) -> FastAPI:
    """Build the web app for ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.effective_database_url)
        app.state.settings = settings
        app.state.session_factory = make_sessionmaker(engine)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(title="radraft", version=__version__, lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(studies.router)
    app.include_router(outbox.router)
    return app
