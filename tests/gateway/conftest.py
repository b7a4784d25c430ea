"""Gateway fixtures shared by the HL7 order port's tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.settings import Settings
from tests.conftest import RecordingPublisher
from tests.support import free_port


@contextmanager
def order_port_gateway(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    **changes: Any,
) -> Iterator[Gateway]:
    """A running gateway with an order port, ``changes`` made to its settings."""
    gateway = Gateway(
        settings.model_copy(
            update={"hl7_listen_port": free_port(), "hl7_listen_host": "127.0.0.1", **changes}
        ),
        session_factory,
        publisher,
    )
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def merging_gateway(
    settings: Settings, session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> Iterator[Gateway]:
    """A running gateway that follows ADT merges and updates on its order port."""
    with order_port_gateway(
        settings, session_factory, publisher, hl7_patient_merges=True
    ) as gateway:
        yield gateway
