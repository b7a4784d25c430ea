"""``radraft health gateway``: answering means an association answer, even a refusal."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.settings import Settings
from radraft_cli.health import gateway_answers
from tests.conftest import RecordingPublisher
from tests.support import free_port


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_gateway_check_passes_with_an_allow_list_and_fails_on_a_closed_port(
    settings: Settings, session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> None:
    assert gateway_answers(settings.model_copy(update={"dicom_port": free_port()}), 2) is not None
    for allowed, what in (([], "C-ECHO answered"), (["PACS"], "rejected by the allow-list")):
        configured = settings.model_copy(update={"allowed_calling_aes": allowed})
        gateway = Gateway(configured, session_factory, publisher)
        gateway.start()
        try:
            assert gateway_answers(configured, 5) is None, what
        finally:
            gateway.stop()
