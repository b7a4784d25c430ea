"""The ``--by`` name of an administrator's command, as the audit log keeps it."""

from __future__ import annotations

import typer

OPERATOR_NAME_LIMIT = 64
"""Characters of a ``--by`` name; the audit log keeps it as ``cli:<name>`` in 128."""


def operator_name(name: str) -> str:
    """Check a ``--by`` name before anything changes: printable and 1 to 64 characters, so a
    pasted escape sequence cannot reach the audit log and a long name fails here with a clear
    message, not in the database's commit (on Postgres) with a traceback."""
    if not name.strip():
        raise typer.BadParameter("give the name of who decided")
    if len(name) > OPERATOR_NAME_LIMIT:
        raise typer.BadParameter(f"at most {OPERATOR_NAME_LIMIT} characters")
    if not name.isprintable():
        raise typer.BadParameter("only printable characters")
    return name
