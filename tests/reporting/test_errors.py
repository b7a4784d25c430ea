"""Domain errors become HTTP statuses in one table (reporting/web/errors.py)."""

from __future__ import annotations

from radraft.errors import RadraftError
from reporting.lifecycle import (
    InvalidTextError,
    RoleNotAllowedError,
    StaleVersionError,
    TransitionNotAllowedError,
    UnknownReportError,
)
from reporting.reader_study.reads import ReadStateError, UnknownReadError
from reporting.users import UserExistsError, WeakPasswordError
from reporting.web.errors import http_status_for


def test_every_domain_error_kind_has_one_http_status() -> None:
    expected = {
        UnknownReportError("x"): 404, UnknownReadError("x"): 404, StaleVersionError(3): 409,
        TransitionNotAllowedError("x"): 409, ReadStateError("x"): 409, UserExistsError("x"): 409,
        RoleNotAllowedError("x"): 403, InvalidTextError("x"): 422, WeakPasswordError("x"): 422,
        RadraftError("an error no row names"): 500,
    }  # fmt: skip
    assert {type(e).__name__: http_status_for(e) for e in expected} == {
        type(e).__name__: status for e, status in expected.items()
    }
    assert StaleVersionError(3).details() == {"current_version": 3}
