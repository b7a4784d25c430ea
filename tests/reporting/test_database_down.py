"""A dead database: the web app answers 503 with a clear reason and leaks nothing to the logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from radraft.db import make_engine, make_sessionmaker, session_scope
from radraft.enums import Role
from radraft.models import User
from radraft.settings import Settings, settings_to_environment
from reporting.web.app import create_app
from tests.support import free_port

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
TOKEN = {"Authorization": "Bearer test-service-token"}


def test_unreachable_database_gives_503_and_the_app_keeps_answering(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://radraft@127.0.0.1:{free_port()}/radraft"}
    )
    with TestClient(create_app(dead), raise_server_exceptions=False) as client:
        for _ in range(2):  # the second request is answered the same: nothing is stuck
            studies = client.get("/api/studies", headers=TOKEN)
            assert studies.status_code == 503
            assert studies.json() == {"detail": "the database is unavailable; try again shortly"}
            assert int(studies.headers["Retry-After"]) > 0
        login = client.post("/api/login", json={"username": "Canary", "password": "x" * 12})
        assert login.status_code == 503
        assert client.get("/healthz").status_code == 503
    assert "Canary" not in caplog.text
    assert "web.database_unavailable" in caplog.text


def test_database_errors_carry_no_bound_values(settings: Settings, migrated_url: str) -> None:
    """Error messages end up in logs and tracebacks: the engine hides the values it bound."""
    engine = make_engine(migrated_url)
    factory = make_sessionmaker(engine)

    def add(full_name: str) -> None:
        with session_scope(factory) as session:
            session.add(User(username="dup", role=Role.RESIDENT, full_name=full_name,
                             password_hash="unused"))  # fmt: skip

    add("Canary One")
    with pytest.raises(IntegrityError) as raised:
        add("Canary Two")
    assert "Canary" not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
    engine.dispose()


@pytest.mark.parametrize(
    "command",
    [("study", "withdraw", "1.2.3", "--by", "admin"), ("outbox",), ("db", "upgrade")],
    ids=["withdraw", "outbox", "upgrade"],
)
def test_an_administrators_command_says_the_database_is_unavailable_in_one_line(
    command: tuple[str, ...], settings: Settings
) -> None:
    dead = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://radraft@127.0.0.1:{free_port()}/radraft"}
    )
    done = subprocess.run(
        [sys.executable, "-m", "radraft_cli", *command],
        env={**os.environ, **settings_to_environment(dead)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("radraft: the database is unavailable (OperationalError:")
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
