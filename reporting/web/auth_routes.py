"""``POST /api/login``, ``POST /api/logout``, ``GET /api/me``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from radraft.errors import NotAuthenticatedError, TooManyAttemptsError
from reporting.users import authenticate
from reporting.web.deps import DbSession
from reporting.web.security import CurrentUser, end_login, start_login, verify_csrf

router = APIRouter(prefix="/api", tags=["auth"])


class LoginIn(BaseModel):
    """Credentials."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class MeOut(BaseModel):
    """The logged-in user and the CSRF token the page sends back on every change."""

    id: int
    username: str
    full_name: str
    role: str
    csrf_token: str


@router.post("/login", response_model=MeOut)
def login(body: LoginIn, request: Request, session: DbSession) -> MeOut:
    """Start a session; 401 on bad credentials, 429 after too many failures."""
    throttle = request.app.state.login_throttle
    client = request.client.host if request.client else "unknown"
    keys = (f"user:{body.username}", f"ip:{client}")
    if throttle.blocked(*keys):
        raise TooManyAttemptsError("too many failed logins; wait a few minutes")
    user = authenticate(session, body.username, body.password)
    if user is None:
        throttle.failed(*keys)
        raise NotAuthenticatedError("wrong username or password")
    csrf_token = start_login(request, session, user)
    return MeOut(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=user.role,
        csrf_token=csrf_token,
    )


@router.post("/logout", dependencies=[Depends(verify_csrf)])
def logout(request: Request, session: DbSession) -> dict[str, str]:
    """End the login, on the server too: a copy of the cookie no longer works."""
    end_login(request, session)
    return {"status": "logged out"}


@router.get("/me", response_model=MeOut)
def me(request: Request, user: CurrentUser) -> MeOut:
    """Who is logged in."""
    return MeOut(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=user.role,
        csrf_token=str(request.session.get("csrf", "")),
    )
