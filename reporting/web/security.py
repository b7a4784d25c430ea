"""Who is calling: session logins with roles, the service token, CSRF and login throttling."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from radraft.enums import Role
from radraft.errors import NotAllowedError, NotAuthenticatedError
from radraft.models import AuditEntry, LoginSession, User
from radraft.timeutil import utcnow
from reporting.web.deps import DbSession

CSRF_HEADER = "X-CSRF-Token"
SERVICE_ACTOR = "service-token"


class LoginThrottle:
    """At most ``limit`` failed logins per username and per client address in ``window`` s."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self._limit = limit
        self._window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] < now - self._window:
            failures.popleft()
        return failures

    def blocked(self, *keys: str) -> bool:
        """True if any key has reached the limit."""
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(key, now)) >= self._limit for key in keys)

    def failed(self, *keys: str) -> None:
        """Count one failure for every key."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)


def new_csrf_token() -> str:
    """A token stored in the session and echoed by the page in ``X-CSRF-Token``."""
    return secrets.token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_login(request: Request, session: DbSession, user: User) -> str:
    """Record a new login and put its token in the (signed) session cookie; returns the CSRF
    token the page sends back on every change."""
    token = secrets.token_urlsafe(32)
    session.add(LoginSession(token_digest=_digest(token), user_id=user.id, created_at=utcnow()))
    request.session.clear()
    request.session["sid"] = token
    request.session["csrf"] = new_csrf_token()
    return str(request.session["csrf"])


def end_login(request: Request, session: DbSession) -> None:
    """End this request's login on the server: its cookie, even a copy, is refused from now on."""
    token = request.session.get("sid")
    if token:
        login = session.scalar(
            select(LoginSession).where(LoginSession.token_digest == _digest(str(token)))
        )
        if login is not None and login.ended_at is None:
            login.ended_at = utcnow()
    request.session.clear()


def session_user(request: Request, session: DbSession) -> User | None:
    """The user of this request's login, if the login is open, not expired, the user active."""
    token = request.session.get("sid")
    if not token:
        return None
    login = session.scalar(
        select(LoginSession).where(LoginSession.token_digest == _digest(str(token)))
    )
    if login is None or login.ended_at is not None:
        return None
    max_age = request.app.state.settings.session_max_age_seconds
    if utcnow() - login.created_at > timedelta(seconds=max_age):
        return None
    user = session.get(User, login.user_id)
    return user if user is not None and user.active else None


def current_user(request: Request, session: DbSession) -> User:
    """A logged-in user, else 401."""
    user = session_user(request, session)
    if user is None:
        raise NotAuthenticatedError("log in first")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_roles(*roles: Role) -> Callable[..., User]:
    """A dependency admitting only these roles (403 for the others)."""

    def check(request: Request, user: CurrentUser) -> User:
        if Role(user.role) not in roles:
            raise NotAllowedError(f"{user.role} may not do this")
        return user

    return check


def verify_csrf(request: Request) -> None:
    """Unsafe methods from a browser session must echo the session's CSRF token."""
    if not request.session.get("sid"):
        raise NotAuthenticatedError("log in first")
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER, "")
    if not expected or not secrets.compare_digest(str(expected), sent):
        raise NotAllowedError("missing or wrong CSRF token")


def reader(request: Request, session: DbSession) -> str:
    """Read access: any logged-in user, or the service token; returns the audit actor."""
    token = request.app.state.settings.api_token
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        if secrets.compare_digest(header.removeprefix("Bearer "), token):
            return SERVICE_ACTOR
        raise NotAuthenticatedError("wrong service token")
    user = session_user(request, session)
    if user is None:
        raise NotAuthenticatedError("log in or send the service token")
    return f"user:{user.id}"


Reader = Annotated[str, Depends(reader)]


def service_caller(request: Request) -> str:
    """Machine access only: the service token (STOW-RS, a worker's WADO-RS fetch of a study is
    a read and takes ``reader``); returns the audit actor."""
    token = request.app.state.settings.api_token
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise NotAuthenticatedError("send the service token (Authorization: Bearer)")
    if not token or not secrets.compare_digest(header.removeprefix("Bearer "), token):
        raise NotAuthenticatedError("wrong service token")
    return SERVICE_ACTOR


def audit(session: DbSession, actor: str, action: str, object_type: str, object_id: str) -> None:
    """One audit row (views and changes of reports)."""
    session.add(
        AuditEntry(
            at=utcnow(), actor=actor, action=action, object_type=object_type, object_id=object_id
        )
    )


def user_by_name(session: DbSession, username: str) -> User | None:
    """Lookup used by the login route."""
    return session.scalar(select(User).where(User.username == username))
