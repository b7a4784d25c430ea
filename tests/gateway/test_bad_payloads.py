"""Truncated and non-DICOM payloads get a failure status and leave nothing half-written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from gateway.statuses import StoreStatus
from radraft.db import session_scope
from radraft.models import Instance
from tests.dicom_peers import storescu, synthetic_study_files
from tests.support import assert_no_reception_left


@pytest.fixture
def raw_sending() -> Iterator[None]:
    """Make pynetdicom send a file's bytes as they are, so broken payloads reach the SCP."""
    previous = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    yield
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = previous


def send_raw(path: Path, port: int, *, like: Path) -> int:
    """Send ``path`` raw in the presentation context of the intact file ``like``."""
    dataset = dcmread(like, stop_before_pixels=True)
    ae = AE(ae_title="BROKENSCU")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title="RADRAFT")
    assert association.is_established
    try:
        response = association.send_c_store(path)
        return int(response.Status)
    finally:
        association.release()


def header_length(path: Path) -> int:
    """Bytes of preamble plus file meta."""
    meta = dcmread(path, stop_before_pixels=True).file_meta
    return 132 + 12 + int(meta.FileMetaInformationGroupLength)


def spool_files(gateway: Gateway) -> list[Path]:
    return [path for path in gateway.spool.root.rglob("*") if path.is_file()]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("raw_sending")
@pytest.mark.parametrize("damage", ["truncated_pixels", "truncated_header", "not_dicom"])
def test_broken_payload_fails_and_next_association_succeeds(
    damage: str,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    good = synthetic_study_files(5, tmp_path / "good")
    raw = good[0].read_bytes()
    start = header_length(good[0])
    broken = tmp_path / "broken.dcm"
    if damage == "truncated_pixels":
        broken.write_bytes(raw[: len(raw) - 1000])
    elif damage == "truncated_header":
        broken.write_bytes(raw[: start + 37])
    else:
        broken.write_bytes(raw[:start] + b"this is not a DICOM data set at all\x00" * 40)

    status = send_raw(broken, running_gateway.port, like=good[0])

    assert status in (StoreStatus.CANNOT_UNDERSTAND, StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS)
    assert spool_files(running_gateway) == []
    assert_no_reception_left(running_gateway.spool.incoming)
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 0

    result = storescu(good, port=running_gateway.port)
    assert result.returncode == 0, result.output
    assert len(spool_files(running_gateway)) == 2
