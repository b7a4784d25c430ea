"""User management for admins: ``/api/users`` (the admin page uses it; nobody else may)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from radraft.enums import Role
from radraft.errors import ConflictError, NotFoundError
from radraft.models import User
from reporting.users import create_user, set_password
from reporting.web.deps import DbSession, RowId
from reporting.web.security import audit, require_roles, verify_csrf

Admin = Annotated[User, Depends(require_roles(Role.ADMIN))]
router = APIRouter(prefix="/api/users", tags=["users"])


class UserOut(BaseModel):
    """An account as the admin page lists it (never the hash)."""

    id: int
    username: str
    full_name: str
    role: Role
    active: bool
    created_at: datetime


class UserIn(BaseModel):
    """A new account."""

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    full_name: str = Field(default="", max_length=255)
    role: Role
    password: str = Field(min_length=1, max_length=256)


class UserChange(BaseModel):
    """What an admin may change; omitted fields stay."""

    full_name: str | None = Field(default=None, max_length=255)
    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=256)


@router.get("", response_model=list[UserOut])
def list_users(session: DbSession, admin: Admin) -> list[User]:
    """Every account, by username."""
    return list(session.scalars(select(User).order_by(User.username)))


@router.post("", response_model=UserOut, status_code=201, dependencies=[Depends(verify_csrf)])
def add_user(body: UserIn, session: DbSession, admin: Admin) -> User:
    """Create an account; 409 for a taken username, 422 for a short password."""
    user = create_user(
        session, body.username, role=body.role, password=body.password, full_name=body.full_name
    )
    audit(session, f"user:{admin.id}", "user.created", "user", str(user.id))
    return user


@router.patch("/{user_id}", response_model=UserOut, dependencies=[Depends(verify_csrf)])
def change_user(user_id: RowId, body: UserChange, session: DbSession, admin: Admin) -> User:
    """Rename, change role, deactivate or reset a password; an admin cannot lock themself out."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError("unknown user")
    if user.id == admin.id and (body.active is False or body.role not in (None, Role.ADMIN)):
        raise ConflictError("an admin cannot demote or deactivate itself")
    if body.full_name is not None:
        user.full_name = body.full_name
    if body.role is not None:
        user.role = body.role
    if body.active is not None:
        user.active = body.active
    if body.password is not None:
        set_password(user, body.password)
    audit(session, f"user:{admin.id}", "user.changed", "user", str(user.id))
    return user
