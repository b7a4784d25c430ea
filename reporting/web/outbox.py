"""``GET /api/outbox``: delivery state of report outputs and task messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select

from radraft.enums import OutboxChannel, OutboxStatus
from radraft.models import OutboxMessage
from radraft.report_outputs import channels_without_destination, waits_for
from reporting.web.deps import DbSession
from reporting.web.security import reader

router = APIRouter(prefix="/api/outbox", tags=["outbox"], dependencies=[Depends(reader)])


class OutboxOut(BaseModel):
    """One outbox row; ``failed`` rows need an operator (``radraft outbox retry ID``)."""

    id: int
    channel: OutboxChannel
    status: OutboxStatus
    attempts: int
    last_error: str | None
    study_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None
    waits_for: str | None = None
    """For a pending SR or ORU whose channel has no destination configured: the setting that
    would give it one (it is sent once that is set); otherwise null."""


@router.get("", response_model=list[OutboxOut])
def list_outbox(
    request: Request, session: DbSession, status: OutboxStatus | None = None
) -> list[OutboxOut]:
    """Rows in the order they were written; filter with ``?status=failed`` (422 for a status
    that does not exist)."""
    query = select(OutboxMessage).order_by(OutboxMessage.id).limit(1000)
    if status:
        query = query.where(OutboxMessage.status == status)
    waiting = channels_without_destination(request.app.state.settings)
    return [
        OutboxOut.model_validate(row, from_attributes=True).model_copy(
            update={"waits_for": waits_for(row, waiting)}
        )
        for row in session.scalars(query)
    ]
