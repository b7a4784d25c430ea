"""The one place where errors become HTTP responses.

Domain errors are kinds (``radraft.errors``); this table says which status each kind is, so
routes raise what happened and never choose a status themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from radraft.errors import (
    ConflictError,
    GoneError,
    InvalidInputError,
    MalformedRequestError,
    NotAcceptableError,
    NotAllowedError,
    NotAuthenticatedError,
    NotFoundError,
    PayloadTooLargeError,
    RadraftError,
    TooManyAttemptsError,
    UnsupportedMediaTypeError,
)
from radraft.imaging import UnusableImageError
from radraft.logs import log_event

logger = logging.getLogger(__name__)

HTTP_STATUS: Mapping[type[RadraftError], int] = {
    MalformedRequestError: 400,
    NotAuthenticatedError: 401,
    NotAllowedError: 403,
    NotFoundError: 404,
    NotAcceptableError: 406,
    ConflictError: 409,
    GoneError: 410,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    InvalidInputError: 422,
    UnusableImageError: 422,
    TooManyAttemptsError: 429,
}
"""Status of each error kind; the most specific class in an error's MRO wins."""
DATABASE_RETRY_AFTER_SECONDS = 5
"""What a 503 for an unreachable database tells clients to wait; the pool reconnects by itself."""


def http_status_for(error: RadraftError) -> int:
    """The HTTP status of a domain error; 500 for one no row names (a bug to fix here)."""
    for kind in type(error).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """Translate domain errors and database outages, once, for every route and page."""

    @app.exception_handler(RadraftError)
    async def domain_error(_request: Request, error: RadraftError) -> JSONResponse:
        status = http_status_for(error)
        if status == 500:
            log_event(logger, "web.unmapped_error", logging.ERROR, error=type(error).__name__)
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return JSONResponse({"detail": str(error), **error.details()}, status_code=status)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_unavailable(_request: Request, error: DBAPIError) -> JSONResponse:
        log_event(logger, "web.database_unavailable", error=type(error.orig).__name__)
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
