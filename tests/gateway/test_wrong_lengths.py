"""Elements whose length does not fit their value representation: a documented refusal or a
stored instance, never an exception (found by tests/test_fuzz.py: a File Meta group length read
as 210 bytes made pydicom raise ``BytesLengthException``, which the intake did not expect)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.intake import InstanceIntake, ReceivedInstance
from gateway.spool import Spool
from gateway.statuses import StoreStatus
from radraft.synthetic import make_chest_study
from tests.dicom_peers import write_study

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
ROWS_ELEMENT = b"\x28\x00\x10\x00US\x02\x00"
"""(0028,0010) Rows, explicit VR little endian, 2 bytes long."""


def group_length_of_210_bytes(raw: bytes) -> bytes:
    """(0002,0000), a UL, read as an implicit VR element 210 bytes long."""
    return raw[:136] + struct.pack("<L", 210) + raw[140:]


def rows_of_3_bytes(raw: bytes) -> bytes:
    """Rows, a US, 3 bytes long."""
    start = raw.index(ROWS_ELEMENT)
    value = raw[start + 8 : start + 10]
    return raw[:start] + b"\x28\x00\x10\x00US\x03\x00" + value + b"\x00" + raw[start + 10 :]


@pytest.mark.parametrize("damage", [group_length_of_210_bytes, rows_of_3_bytes])
def test_a_value_of_the_wrong_length_gets_a_documented_status(
    damage: object, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    (image,) = make_chest_study(78, rows=16, columns=16, views=("PA",))
    raw = write_study([image], tmp_path / "sent")[0].read_bytes()
    spool = Spool(tmp_path / "spool", tmp_path / "incoming")
    received = spool.incoming / "received.dcm"
    received.write_bytes(damage(raw))  # type: ignore[operator]
    outcome = InstanceIntake(session_factory, spool, strict_body_part=False).accept(
        ReceivedInstance(received, "LENGTHS", image.SOPClassUID, image.SOPInstanceUID)
    )
    assert outcome.status in set(StoreStatus)
    if outcome.status != StoreStatus.SUCCESS:
        assert not [path for path in spool.root.rglob("*") if path.is_file()]
