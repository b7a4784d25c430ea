"""``GET /healthz``: 200 when the web app can reach its database."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from reporting.web.deps import DbSession

router = APIRouter()


@router.get("/healthz")
def healthz(session: DbSession) -> JSONResponse:
    """Liveness and readiness in one: the process answers and the database answers."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return JSONResponse(
            {"status": "unavailable", "database": type(error).__name__}, status_code=503
        )
    return JSONResponse({"status": "ok"})
