"""Fuzzing the two doors: mutated Part 10 files into the intake, mutated HL7 into order intake.

Whatever the bytes, the intake answers one of its documented statuses and leaves no file
behind unless it answered success; order intake answers AA, AE or AR, or closes a connection
whose bytes are not MLLP. Nothing raises.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import hl7
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from gateway.intake import InstanceIntake, ReceivedInstance
from gateway.orders import answer_order_message
from gateway.spool import Spool
from gateway.statuses import StoreStatus
from radraft.mllp import FrameReader, MllpError
from radraft.synthetic import make_chest_study
from tests.dicom_peers import write_study

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ORM = (
    b"MSH|^~\\&|RIS|HOSP|RADRAFT|HOSP|20261101101500||ORM^O01|MSG0001|P|2.3\r"
    b"PID|1||PAT001||DOE^JANE\rORC|NW|PLC100|FIL200\r"
    b"OBR|1|PLC100|FIL200|71046^XR CHEST 2 VIEWS^CPT||||||||||||||ACC777||||||||||||||"
    b"^Cough \\T\\ fever\r"
)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """The original with a few of: bytes overwritten, a slice cut out, bytes inserted, a cut."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["overwrite", "delete", "insert", "truncate"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "overwrite" and data:
            data[position : position + 4] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[position:]
    return bytes(data)


@pytest.fixture
def seed_file(tmp_path: Path) -> bytes:
    (image,) = make_chest_study(77, rows=16, columns=16, views=("PA",))
    image.RequestAttributesSequence = [image.__class__()]
    image.RequestAttributesSequence[0].ReasonForTheRequestedProcedure = "cough"
    return write_study([image], tmp_path / "seed")[0].read_bytes()


def test_mutated_part10_files_get_documented_statuses_and_leave_nothing_behind(
    session_factory: sessionmaker[Session], tmp_path: Path, seed_file: bytes
) -> None:
    spool = Spool(tmp_path / "spool", tmp_path / "incoming")
    intake = InstanceIntake(session_factory, spool, strict_body_part=False)
    documented = set(StoreStatus)
    sop_instance_uid = "1.2.826.0.1.3680043.10.1234.77"  # what the request announces

    @FUZZ
    @given(data=mutated(seed_file))
    def check(data: bytes) -> None:
        received = tmp_path / "incoming" / "received.dcm"
        received.write_bytes(data)
        outcome = intake.accept(
            ReceivedInstance(received, "FUZZER", "1.2.840.10008.5.1.4.1.1.1.1", sop_instance_uid)
        )
        assert outcome.status in documented
        if outcome.status != StoreStatus.SUCCESS:
            assert not any(path.is_file() for path in spool.root.rglob("*"))
        shutil.rmtree(spool.root)
        spool.root.mkdir()
        received.unlink(missing_ok=True)

    check()


def test_mutated_hl7_gets_an_ack_or_a_closed_connection(
    session_factory: sessionmaker[Session],
) -> None:
    @FUZZ
    @given(
        message=mutated(ORM),
        framing=st.sampled_from(["framed", "no start", "no end", "garbage before"]),
    )
    def check(message: bytes, framing: str) -> None:
        wire = {
            "framed": b"\x0b" + message + b"\x1c\x0d",
            "no start": message + b"\x1c\x0d",
            "no end": b"\x0b" + message,
            "garbage before": b"\x00junk" + b"\x0b" + message + b"\x1c\x0d",
        }[framing]
        ours, theirs = socket.socketpair()
        with ours, theirs:
            theirs.sendall(wire)
            theirs.shutdown(socket.SHUT_WR)
            ours.settimeout(5)
            try:
                frame = FrameReader(ours).next_frame()
            except MllpError:
                return  # the listener closes such a connection: documented
            if frame is None:
                return
            ack = answer_order_message(session_factory, frame).encoded
        parsed = hl7.parse(ack.decode("latin-1"))
        assert str(parsed.segment("MSA")[1]) in {"AA", "AE", "AR"}

    check()
