"""``/openapi.json`` and ``/docs``: behind a login or the service token unless opened by a setting.

The schema lists every route and body, which is a map for an attacker; a site opens it to
anyone with ``RADRAFT_HTTP_OPEN_DOCS=true``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from reporting.web.security import reader


def router(*, open_to_anyone: bool) -> APIRouter:
    """The docs routes, guarded by ``reader`` unless ``open_to_anyone``."""
    guard: list[Any] = [] if open_to_anyone else [Depends(reader)]
    routes = APIRouter(include_in_schema=False, dependencies=guard)

    @routes.get("/openapi.json")
    def openapi(request: Request) -> JSONResponse:
        """The OpenAPI schema of the whole app."""
        return JSONResponse(request.app.openapi())

    @routes.get("/docs")
    def docs() -> HTMLResponse:
        """Swagger UI over ``/openapi.json``."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="radraft API")

    return routes
