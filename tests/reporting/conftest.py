"""A study received through the real gateway, ready to be reported on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import Role
from radraft.models import Study
from radraft.settings import Settings
from reporting.users import create_user
from reporting.web.app import create_app
from tests.dicom_peers import storescu, synthetic_study_files
from tests.reporting.factories import drafted_study
from tests.reporting.web_support import PASSWORD, ROLES
from tests.support import wait_until


@pytest.fixture
def received_study(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> Study:
    """A PA + lateral study stored and classified by the gateway."""
    assert storescu(synthetic_study_files(90, tmp_path / "s"), port=running_gateway.port)

    def decided() -> Study | None:
        with session_scope(session_factory) as session:
            study = session.scalar(select(Study))
            return study if study is not None and study.eligible is not None else None

    return wait_until(decided, what="the study to be decided")


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> dict[str, Any]:
    """One drafted study and one user per role."""
    with session_scope(session_factory) as session:
        study, report = drafted_study(session, "1.2.826.0.1.7")
        ids = {
            role: create_user(
                session, role, role=Role(role), password=PASSWORD, full_name=role.title()
            ).id
            for role in ROLES
        }
        return {
            "report": report.id,
            "study_uid": study.study_instance_uid,
            "resident_id": ids["resident"],
            "admin_id": ids["admin"],
            "researcher_id": ids["researcher"],
        }


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    """The web app in-process, lifespan started."""
    with TestClient(create_app(settings)) as client:
        yield client
