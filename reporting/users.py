"""User accounts: argon2id password hashes, created from the CLI or by an admin."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import Role
from radraft.errors import ConflictError, InvalidInputError, RadraftError
from radraft.models import User

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10
_DUMMY_HASH = _hasher.hash("radraft-timing-equaliser")


class UserError(RadraftError):
    """A user cannot be created or changed as asked."""


class UserExistsError(UserError, ConflictError):
    """The username is taken."""


class WeakPasswordError(UserError, InvalidInputError):
    """The password is too short."""


def create_user(
    session: Session, username: str, *, role: Role, password: str, full_name: str = ""
) -> User:
    """A new active user; refuses duplicates and short passwords."""
    _check_password(password)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserExistsError(f"user {username!r} exists")
    user = User(
        username=username, role=role, full_name=full_name, password_hash=_hasher.hash(password)
    )
    session.add(user)
    session.flush()
    return user


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(f"passwords have at least {MIN_PASSWORD_LENGTH} characters")


def set_password(user: User, password: str) -> None:
    """Replace a user's password (an admin's reset)."""
    _check_password(password)
    user.password_hash = _hasher.hash(password)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, else None (same work either way)."""
    user = session.scalar(select(User).where(User.username == username, User.active.is_(True)))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user
