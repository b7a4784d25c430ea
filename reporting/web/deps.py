"""Dependencies shared by the routers: one database session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from radraft.db import session_scope


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request: commit on success, roll back on error."""
    with session_scope(request.app.state.session_factory) as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


MAX_ROW_ID = 2**31 - 1
"""Ids are INTEGER columns (Postgres int4): a larger one names nothing, and would be a 500."""
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A row id (1 to 2^31-1).")]
"""An id in a path; out of range is a 422 before any query."""
RevisionNumber = Annotated[int, Query(ge=1, le=MAX_ROW_ID)]
"""A revision number in a query string."""
