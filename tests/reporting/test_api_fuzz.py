"""schemathesis against the OpenAPI schema: every route, logged in and with the service token.

Each operation gets generated requests (valid and invalid bodies, paths, queries) from three
callers: the service token, and a resident and an admin with their session cookie and CSRF
token. Whatever the input, the answer is never a 5xx.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from radraft.settings import Settings
from radraft_cli.web_app import web_app
from tests.reporting.web_support import login

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
EXAMPLES_PER_OPERATION = 12
SKIPPED = {("POST", "/api/logout")}
"""Logging out would end the caller's session for the rest of the run (tested elsewhere)."""


def operation_server_errors(
    client: TestClient, headers: dict[str, str], operation: Any
) -> list[str]:
    """Generated cases of one operation, sent as this caller; a description of each 5xx."""
    failures: list[str] = []
    strategy = operation.as_strategy()

    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(strategy)
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
        request: dict[str, Any] = {
            key: kwargs[key] for key in ("method", "url", "params", "headers") if key in kwargs
        }
        if "json" in kwargs:
            request["json"] = kwargs["json"]
        elif "data" in kwargs:
            request["content"] = kwargs["data"]
        response = client.request(**request)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{case.as_curl_command()}"
            )

    check()
    return failures


def server_errors(client: TestClient, headers: dict[str, str], schema: Any) -> list[str]:
    """Every operation's generated cases, as this caller."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIPPED:
            failures += operation_server_errors(client, headers, operation)
    return failures


def test_no_route_answers_5xx_to_generated_requests(
    settings: Settings, world: dict[str, Any]
) -> None:
    app = web_app(settings)  # as deployed: DICOMweb included
    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    with (
        TestClient(app, raise_server_exceptions=False) as service,
        TestClient(app, raise_server_exceptions=False) as resident,
        TestClient(app, raise_server_exceptions=False) as admin,
    ):
        # Everyone logs in first: the fuzzing of /api/login trips the login throttle.
        callers = [
            (service, {"Authorization": "Bearer test-service-token"}),
            (resident, login(resident, "resident")),
            (admin, login(admin, "admin")),
        ]
        for client, headers in callers:
            failures += server_errors(client, headers, schema)
    assert failures == [], "\n".join(failures[:20])
