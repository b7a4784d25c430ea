"""The FastAPI application factory; the engine is made in the lifespan, never at import."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from radraft import __version__
from radraft.db import engine_for, make_sessionmaker
from radraft.settings import Settings
from reporting.web import (
    api_docs,
    auth_routes,
    edit_sessions,
    health,
    metrics,
    outbox,
    pages,
    previews,
    prior_studies,
    reading,
    reports,
    studies,
    user_admin,
    worklist,
)
from reporting.web.body_limit import BodySizeLimit
from reporting.web.cookies import SecureCookieOverTLS
from reporting.web.errors import install_error_handlers
from reporting.web.security import LoginThrottle

logger = logging.getLogger(__name__)


def session_secret(settings: Settings) -> str:
    """The configured secret, or one kept in the data dir so every web process shares it."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.secret_key_file
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass(frozen=True)
class ExtraRouter:
    """Routes another service offers on the web app (DICOMweb, mounted by the composition
    root), with the request body limit of the paths under its prefix if they need their own."""

    router: APIRouter
    max_body_bytes: int | None = None


def create_app(settings: Settings, *, extra_routers: Sequence[ExtraRouter] = ()) -> FastAPI:
    """Build the web app for ``settings``, with any routes the composition root adds."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = engine_for(settings)
        app.state.session_factory = make_sessionmaker(engine)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="radraft",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
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
    app.add_middleware(SecureCookieOverTLS)  # it must see the session's Set-Cookie
    app.add_middleware(  # outermost
        BodySizeLimit,
        max_bytes=settings.http_max_body_bytes,
        by_prefix={
            extra.router.prefix + "/": extra.max_body_bytes
            for extra in extra_routers
            if extra.max_body_bytes is not None
        },
    )

    install_error_handlers(app)

    for module in (
        health,
        auth_routes,
        studies,
        prior_studies,
        worklist,
        edit_sessions,
        reports,
        outbox,
        metrics,
        previews,
        user_admin,
        reading,
    ):
        app.include_router(module.router)
    for extra in extra_routers:
        app.include_router(extra.router)
    app.include_router(pages.router)
    app.include_router(api_docs.router(open_to_anyone=settings.http_open_docs))
    app.mount("/static", StaticFiles(directory=Path(pages.__file__).parent / "static"), "static")
    return app
