"""DICOM in a process that holds more than 1024 descriptors, as the embedded server does with a
thousand web clients: pynetdicom asked ``select`` whether a socket was readable, ``select``
refuses descriptors from 1024 on, and pynetdicom took the refusal for a closed connection.
Every association was aborted at once, without a log line (storescu: "Peer aborted
Association"), and the SR could not reach the PACS."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.models import Instance
from radraft.settings import DicomDestination
from radraft.synthetic import make_chest_study
from reporting.delivery.senders import store_sr
from tests.dicom_peers import ReferenceStoreSCP, storescu, write_study
from tests.support import free_port

HELD = 1100


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """``HELD`` more open descriptors, so that every new one is numbered past 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HELD + 512
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the descriptor limit ({hard}) is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(HELD)]
    try:
        probe = os.open(os.devnull, os.O_RDONLY)
        os.close(probe)
        assert probe >= 1024, "the next descriptor is past select's range"
        yield
    finally:
        for descriptor in held:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_gateway_stores_a_study_on_descriptors_past_1024(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    many_descriptors: None,
) -> None:
    files = write_study(make_chest_study(71, rows=256, columns=256), tmp_path / "sent")
    result = storescu(files, port=running_gateway.port)
    assert result.returncode == 0, result.output
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == len(files)


def test_an_sr_reaches_the_pacs_on_a_descriptor_past_1024(
    tmp_path: Path, many_descriptors: None
) -> None:
    (path,) = write_study(make_chest_study(72, views=("PA",), rows=64, columns=64), tmp_path / "s")
    pacs = ReferenceStoreSCP(tmp_path / "pacs", free_port(), "PACS")
    pacs.start()
    try:
        dataset = dcmread(path)
        note = store_sr(
            dataset,
            DicomDestination("PACS", "127.0.0.1", pacs.port),
            calling_ae_title="RADRAFT",
            timeout=10,
        )
        assert note.warning == ""
        assert pacs.received(str(dataset.SOPInstanceUID)).is_file()
    finally:
        pacs.stop()
