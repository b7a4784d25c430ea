"""The FastAPI application factory; the engine is made in the lifespan, never at import."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.middleware.sessions import SessionMiddleware

from radraft import __version__
from radraft.db import make_engine, make_sessionmaker
from radraft.logs import log_event
from radraft.settings import Settings
from reporting.lifecycle import (
    InvalidTextError,
    LifecycleError,
    RoleNotAllowedError,
    StaleVersionError,
    UnknownReportError,
)
from reporting.study.reads import ReadError
from reporting.web import (
    auth_routes,
    health,
    metrics,
    outbox,
    pages,
    previews,
    reading,
    reports,
    studies,
    user_admin,
    worklist,
)
from reporting.web.cookies import SecureCookieOverTLS
from reporting.web.security import LoginThrottle

logger = logging.getLogger(__name__)
DATABASE_RETRY_AFTER_SECONDS = 5
"""What a 503 for an unreachable database tells clients to wait; the pool reconnects by itself."""


def session_secret(settings: Settings) -> str:
    """The configured secret, or one kept in the data dir so every web process shares it."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def lifecycle_error_status(error: LifecycleError) -> int:
    """The one place where lifecycle errors become HTTP statuses."""
    if isinstance(error, UnknownReportError):
        return 404
    if isinstance(error, RoleNotAllowedError):
        return 403
    if isinstance(error, InvalidTextError):
        return 422
    if isinstance(error, StaleVersionError):
        return 409
    return 409


def create_app(settings: Settings) -> FastAPI:
    """Build the web app for ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.effective_database_url)
        app.state.session_factory = make_sessionmaker(engine)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(title="radraft", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.login_throttle = LoginThrottle()
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie="radraft_session",
        max_age=settings.session_max_age_seconds,
        same_site="strict",
        https_only=False,
    )
    app.add_middleware(SecureCookieOverTLS)  # outermost: it must see the session's Set-Cookie

    @app.exception_handler(LifecycleError)
    async def lifecycle_error(_request: Request, error: LifecycleError) -> JSONResponse:
        body: dict[str, object] = {"detail": str(error)}
        if isinstance(error, StaleVersionError):
            body["current_version"] = error.current_version
        return JSONResponse(body, status_code=lifecycle_error_status(error))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_unavailable(_request: Request, error: DBAPIError) -> JSONResponse:
        log_event(logger, "web.database_unavailable", error=type(error.orig).__name__)
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(ReadError)
    async def read_error(_request: Request, error: ReadError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    for module in (
        health,
        auth_routes,
        studies,
        worklist,
        reports,
        outbox,
        metrics,
        previews,
        user_admin,
        reading,
    ):
        app.include_router(module.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=Path(pages.__file__).parent / "static"), "static")
    return app
