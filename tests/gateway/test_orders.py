"""HL7 order intake over MLLP: AA for orders, AE/AR with a reason for bad ones, still serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import hl7
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.models import Order
from radraft.settings import Settings
from radraft.timeutil import utcnow
from tests.conftest import RecordingPublisher
from tests.hl7_peer import read_until_end_block
from tests.support import free_port
from worker.drafting import take_job


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment with the given fields (HL7 numbering) and empty ones between."""
    values = [""] * (max(fields) + 1)
    values[0] = name
    for index, value in fields.items():
        values[index] = value
    return "|".join(values) + "\r"


ORM = (
    "MSH|^~\\&|RIS|HOSP|RADRAFT|HOSP|20261101101500||ORM^O01|MSG0001|P|2.3\r"
    "PID|1||PAT001||DOE^JANE\r"
    "ORC|NW|PLC100|FIL200\r"
    + segment("OBR", {1: "1", 2: "PLC100", 3: "FIL200", 4: "71046^XR CHEST 2 VIEWS^CPT",
                      18: "ACC777", 31: "^Cough and fever for 3 days, rule out pneumonia"})
)  # fmt: skip
OMI = (
    "MSH|^~\\&|RIS|HOSP|RADRAFT|HOSP|20261101101500||OMI^O23^OMI_O23|MSG0002|P|2.5.1\r"
    "PID|1||PAT002||ROE^RICHARD\r"
    + segment("ORC", {1: "NW", 2: "PLC101", 3: "FIL201", 16: "^Shortness of breath"})
    + "OBR|1|PLC101|FIL201|71045^XR CHEST 1 VIEW^CPT\r"
    "IPC|ACC888|RP1|1.2.3.4.5|SPS1|DX\r"
)


def exchange(port: int, payload: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(payload)
        data = read_until_end_block(connection)
    return data.strip(b"\x0b\x1c\x0d").decode()


def msa(ack: str) -> tuple[str, str, str]:
    segment = hl7.parse(ack).segment("MSA")
    text = str(segment[3]) if len(segment) > 3 else ""
    return str(segment[1]), str(segment[2]), text


@pytest.fixture
def listening_gateway(
    settings: Settings, session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> Iterator[Gateway]:
    gateway = Gateway(
        settings.model_copy(
            update={"hl7_listen_port": free_port(), "hl7_listen_host": "127.0.0.1"}
        ),
        session_factory,
        publisher,
    )
    gateway.start()
    yield gateway
    gateway.stop()


def test_orders_are_acknowledged_and_stored(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    assert listening_gateway.order_listener is not None
    port = listening_gateway.order_listener.port
    assert msa(exchange(port, b"\x0b" + ORM.encode() + b"\x1c\x0d")) == ("AA", "MSG0001", "")
    assert msa(exchange(port, b"\x0b" + OMI.encode() + b"\x1c\x0d")) == ("AA", "MSG0002", "")
    with session_scope(session_factory) as session:
        orders = {o.accession_number: o for o in session.scalars(select(Order))}
    assert orders["ACC777"].reason_for_exam == "Cough and fever for 3 days, rule out pneumonia"
    assert orders["ACC777"].placer_order_number == "PLC100"
    assert orders["ACC777"].filler_order_number == "FIL200"
    assert orders["ACC888"].reason_for_exam == "Shortness of breath"
    assert orders["ACC888"].message_type == "OMI^O23"


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        ("this is not HL7", "AR", "not an HL7 v2 message"),
        (ORM.replace("ORM^O01", "ADT^A01"), "AR", "unsupported message type ADT^A01"),
        (ORM.replace("ACC777", ""), "AE", "no accession number"),
    ],
)
def test_malformed_orders_get_a_reason_and_the_listener_keeps_serving(
    message: str,
    code: str,
    reason: str,
    listening_gateway: Gateway,
    session_factory: sessionmaker[Session],
) -> None:
    assert listening_gateway.order_listener is not None
    port = listening_gateway.order_listener.port
    answered_code, _, text = msa(exchange(port, b"\x0b" + message.encode() + b"\x1c\x0d"))
    assert (answered_code, reason in text) == (code, True)
    # Garbage without MLLP framing is dropped with the connection; the listener goes on.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"\x00\x01garbage")
    assert msa(exchange(port, b"\x0b" + ORM.encode() + b"\x1c\x0d"))[0] == "AA"
    with session_scope(session_factory) as session:
        assert [o.accession_number for o in session.scalars(select(Order))] == ["ACC777"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_order_reason_becomes_the_drafting_indication(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    from radraft.models import DraftingJob, Study

    assert listening_gateway.order_listener is not None
    exchange(listening_gateway.order_listener.port, b"\x0b" + ORM.encode() + b"\x1c\x0d")
    with session_scope(session_factory) as session:
        study = Study(
            study_instance_uid="1.2.3", accession_number="ACC777",
            reason_for_requested_procedure="from DICOM",
        )  # fmt: skip
        session.add(study)
        session.flush()
        job = DraftingJob(study_id=study.id, content_version=1)
        session.add(job)
        session.flush()
        inputs = take_job(session, job.id, worker="test", now=utcnow())
    assert inputs is not None
    assert inputs.indication == "Cough and fever for 3 days, rule out pneumonia"
