"""``GET /api/instances/{sop_instance_uid}/preview.png``: an image preview rendered from DICOM.

The case page shows these with window/level presets (``center``, ``width``) and a size; the
header's own window is the default. Every preview is an image view of a study, so it needs the
same read access as the study API.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from PIL import Image
from pydantic import BaseModel
from sqlalchemy import select

from radraft.errors import GoneError, InvalidInputError, NotFoundError
from radraft.imaging import default_window, load_for_model
from radraft.models import Instance
from reporting.web.deps import DbSession
from reporting.web.security import reader

PURGED_DETAIL = "radraft no longer holds this image (spool retention); the PACS has it"
router = APIRouter(prefix="/api/instances", tags=["images"], dependencies=[Depends(reader)])


class WindowOut(BaseModel):
    """The window a viewer starts from, in the units ``preview.png`` takes."""

    center: float
    width: float


def _spooled_path(session: DbSession, request: Request, sop_instance_uid: str) -> Path:
    instance = session.scalar(select(Instance).where(Instance.sop_instance_uid == sop_instance_uid))
    if instance is None:
        raise NotFoundError("unknown instance")
    if instance.rejected_at is not None:
        raise NotFoundError("the image was rejected at the source (IOCM rejection note)")
    if instance.purged_at is not None:
        raise GoneError(PURGED_DETAIL)
    path: Path = request.app.state.settings.spool_dir / instance.spool_path
    return path


@router.get("/{sop_instance_uid}/window", response_model=WindowOut)
def window(sop_instance_uid: str, session: DbSession, request: Request) -> WindowOut:
    """The header's window or a robust range: where window/level drag starts."""
    path = _spooled_path(session, request, sop_instance_uid)
    center, width = default_window(path)
    return WindowOut(center=center, width=width)


@router.get("/{sop_instance_uid}/preview.png")
def preview(
    sop_instance_uid: str,
    session: DbSession,
    request: Request,
    size: Annotated[int, Query(ge=32, le=2048)] = 512,
    center: Annotated[float | None, Query(ge=-1e7, le=1e7)] = None,
    width: Annotated[float | None, Query(gt=0, le=1e7)] = None,
) -> Response:
    """A PNG, longest side ``size``; 404 unknown instance, 410 its file was purged by spool
    retention, 422 half a window or no pixels."""
    path = _spooled_path(session, request, sop_instance_uid)
    if (center is None) != (width is None):
        raise InvalidInputError("give both center and width, or neither")
    chosen = (center, width) if center is not None and width is not None else None
    pixels = load_for_model(path, size=size, window=chosen)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "private"})
