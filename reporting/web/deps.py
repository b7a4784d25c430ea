"""Dependencies shared by the routers: one database session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from radraft.db import session_scope


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request: commit on success, roll back on error."""
    with session_scope(request.app.state.session_factory) as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]
