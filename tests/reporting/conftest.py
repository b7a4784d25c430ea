"""A study received through the real gateway, ready to be reported on."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.models import Study
from tests.dicom_peers import storescu, synthetic_study_files
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
