"""HL7 order intake over MLLP: AA for orders, AE/AR with a reason for bad ones, still serving."""

from __future__ import annotations

import contextlib
import socket
import time
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
from tests.support import closed_within, free_port, wait_until
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
        return _answer(connection)


def msa(ack: str) -> tuple[str, str, str]:
    message = hl7.parse(ack)
    segment = message.segment("MSA")
    text = message.unescape(str(segment[3])) if len(segment) > 3 else ""
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
    assert orders["ACC777"].patient_ids == ["PAT001"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_patient_identifier_of_an_order_is_kept_as_written(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    """PID-3 repeats (an MRN, a national number...): the study's Patient ID may be any of them,
    and an escaped delimiter inside one reads back as the character it stands for."""
    assert listening_gateway.order_listener is not None
    identifiers = "MRN\\F\\7^^^HOSP^MR~NAT-55^^^STATE^NI~~MRN\\F\\7^^^HOSP^MR"
    message = ORM.replace("PID|1||PAT001||", f"PID|1||{identifiers}||")
    assert msa(exchange(listening_gateway.order_listener.port, framed(message)))[0] == "AA"
    with session_scope(session_factory) as session:
        (order,) = session.scalars(select(Order)).all()
        assert order.patient_ids == ["MRN|7", "NAT-55"]


TWO_ORDERS = (
    ORM
    + "ORC|NW|PLC102|FIL202\r"
    + segment("OBR", {1: "2", 2: "PLC102", 3: "FIL202", 4: "71100^XR RIBS^CPT", 18: "ACC779",
                      31: "^Fall, rib pain"})
)  # fmt: skip
OMI_TWO_PROCEDURES = OMI + "IPC|ACC889|RP2|1.2.3.4.6|SPS2|DX\r"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_order_of_a_message_is_kept_under_its_own_accession_number(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    """A RIS orders the chest and the ribs in one ORM, an OMI two procedures in two IPCs: a
    study under any of them finds its order."""
    assert listening_gateway.order_listener is not None
    port = listening_gateway.order_listener.port
    assert msa(exchange(port, framed(TWO_ORDERS)))[0] == "AA"
    assert msa(exchange(port, framed(OMI_TWO_PROCEDURES)))[0] == "AA"
    with session_scope(session_factory) as session:
        orders = {
            o.accession_number: (o.placer_order_number, o.reason_for_exam, o.patient_ids)
            for o in session.scalars(select(Order))
        }
    assert orders == {
        "ACC777": ("PLC100", "Cough and fever for 3 days, rule out pneumonia", ["PAT001"]),
        "ACC779": ("PLC102", "Fall, rib pain", ["PAT001"]),
        "ACC888": ("PLC101", "Shortness of breath", ["PAT002"]),
        "ACC889": ("PLC101", "Shortness of breath", ["PAT002"]),
    }


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_order_message_with_one_unusable_order_is_refused_whole(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    assert listening_gateway.order_listener is not None
    port = listening_gateway.order_listener.port
    code, _, text = msa(exchange(port, framed(TWO_ORDERS.replace("ACC779", ""))))
    assert (code, text) == ("AE", "order 2: no accession number (IPC-1 or OBR-18)")
    many = ORM + "".join(
        f"ORC|NW|P{n}\r" + segment("OBR", {1: str(n), 18: f"A{n}"}) for n in range(50)
    )
    code, _, text = msa(exchange(port, framed(many)))
    assert (code, text) == ("AE", "more than 50 orders in one message")
    with session_scope(session_factory) as session:
        assert session.scalars(select(Order)).all() == [], "nothing of either is kept"


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        ("this is not HL7", "AR", "not an HL7 v2 message"),
        (ORM.replace("ORM^O01", "ADT^A01"), "AR", "unsupported message type ADT^A01"),
        (ORM.replace("ACC777", ""), "AE", "no accession number"),
        (ORM.replace("PID|1||PAT001||", "PID|1||||"), "AE", "no patient identifier (PID-3)"),
        (ORM.replace("PAT001", "P" * 65), "AE", "no patient identifier (PID-3) of at most 64"),
        (ORM.replace("PAT001", "~".join(["P"] * 33)), "AE", "more than 32 patient identifiers"),
        (ORM.replace("PAT001", "PAT001" + "~" * 32), "AE", "more than 32 patient identifiers"),
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
            study_instance_uid="1.2.3", accession_number="ACC777", patient_id="PAT001",
            reason_for_requested_procedure="from DICOM",
        )  # fmt: skip
        session.add(study)
        session.flush()
        job = DraftingJob(study_id=study.id, content_version=1)
        session.add(job)
        session.flush()
        inputs = take_job(session, job.id, worker="test", now=utcnow(), lease_seconds=60.0)
    assert inputs is not None
    assert inputs.indication == "Cough and fever for 3 days, rule out pneumonia"


def framed(message: str, encoding: str = "ascii") -> bytes:
    return b"\x0b" + message.encode(encoding) + b"\x1c\x0d"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_cancelled_order_is_never_the_indication(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    from radraft.models import DraftingJob, Study

    assert listening_gateway.order_listener is not None
    port = listening_gateway.order_listener.port
    cancel = ORM.replace("ORC|NW|", "ORC|CA|").replace("MSG0001", "MSG0003")
    assert msa(exchange(port, framed(ORM)))[0] == "AA"
    assert msa(exchange(port, framed(cancel)))[0] == "AA"
    with session_scope(session_factory) as session:
        controls = [o.order_control for o in session.scalars(select(Order).order_by(Order.id))]
        assert controls == ["NW", "CA"], "both messages are kept, with their order control"
        study = Study(study_instance_uid="1.2.4", accession_number="ACC777", patient_id="PAT001")
        session.add(study)
        session.flush()
        job = DraftingJob(study_id=study.id, content_version=1)
        session.add(job)
        session.flush()
        inputs = take_job(session, job.id, worker="test", now=utcnow(), lease_seconds=60.0)
    assert inputs is not None
    assert inputs.indication == "chest radiograph", "no indication from a cancelled order"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_ack_answers_in_the_senders_terms(listening_gateway: Gateway) -> None:
    assert listening_gateway.order_listener is not None
    ack = hl7.parse(exchange(listening_gateway.order_listener.port, framed(OMI)))
    msh = ack.segment("MSH")
    assert str(msh[9]) == "ACK^O23^ACK"
    assert (str(msh[3]), str(msh[4]), str(msh[5]), str(msh[6])) == (
        "RADRAFT", "HOSP", "RIS", "HOSP",
    )  # fmt: skip
    assert str(msh[12]) == "2.5.1"
    orm_ack = hl7.parse(exchange(listening_gateway.order_listener.port, framed(ORM)))
    assert str(orm_ack.segment("MSH")[9]) == "ACK^O01^ACK"
    assert str(orm_ack.segment("MSH")[12]) == "2.3", "the sender's version is kept"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_8859_1_order_with_escapes_reads_back_as_written(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    assert listening_gateway.order_listener is not None
    reason = "Fieber 39°C \\T\\ Husten, Verdacht auf Pneumonie (Frau Müller)\\.br\\Röntgen"
    message = (
        "MSH|^~\\&|RIS|HOSP|RADRAFT|HOSP|20261101101500||ORM^O01|MSG0009|P|2.5.1|||||"
        "|8859/1\r"
        "PID|1||PAT009||MÜLLER^GRÉTA\r"
        "ORC|NW|PLC900|FIL900\r"
        + segment("OBR", {1: "1", 2: "PLC900", 3: "FIL900", 18: "ACC900", 31: "^" + reason})
    )
    ack = exchange(listening_gateway.order_listener.port, framed(message, "latin-1"))
    assert msa(ack)[0] == "AA"
    with session_scope(session_factory) as session:
        order = session.scalar(select(Order).where(Order.accession_number == "ACC900"))
        assert order is not None
        assert order.reason_for_exam == (
            "Fieber 39°C & Husten, Verdacht auf Pneumonie (Frau Müller)\nRöntgen"
        )


@pytest.mark.parametrize("backend", ["sqlite"])
def test_bytes_that_do_not_match_msh18_get_an_error_with_the_reason(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    assert listening_gateway.order_listener is not None
    message = ORM.replace("|P|2.3\r", "|P|2.3||||||UNICODE UTF-8\r").replace("DOE", "DÖE")
    answer = msa(exchange(listening_gateway.order_listener.port, framed(message, "latin-1")))
    assert answer[0] == "AE"
    assert "not valid UNICODE UTF-8" in answer[2]
    with session_scope(session_factory) as session:
        assert session.scalars(select(Order)).all() == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_pipelined_orders_are_each_stored_and_answered_and_unframed_bytes_closed(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    assert listening_gateway.order_listener is not None
    port = listening_gateway.order_listener.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(framed(ORM) + framed(OMI))  # two orders in one TCP write
        replies = b""
        while replies.count(b"\x1c\x0d") < 2:
            chunk = connection.recv(65536)
            assert chunk, "the listener closed before answering both"
            replies += chunk
    acks = [part.strip(b"\x0b") for part in replies.split(b"\x1c\x0d") if part.strip()]
    assert [msa(ack.decode())[:2] for ack in acks] == [("AA", "MSG0001"), ("AA", "MSG0002")]
    with session_scope(session_factory) as session:
        assert sorted(o.accession_number for o in session.scalars(select(Order))) == [
            "ACC777",
            "ACC888",
        ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert connection.recv(1024) == b"", "unframed bytes: the connection is closed"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_oversized_order_is_refused_and_a_long_reason_is_capped_before_the_prompt(
    listening_gateway: Gateway, session_factory: sessionmaker[Session]
) -> None:
    from radraft.models import DraftingJob, Study

    assert listening_gateway.order_listener is not None
    port = listening_gateway.order_listener.port
    huge = ORM.replace("rule out pneumonia", "rule out pneumonia " + "x" * (5 << 20))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(framed(huge))
        answer = read_until_end_block(connection)
        assert connection.recv(1) == b"", "then the connection is closed"
    code, control_id, text = msa(answer.strip(b"\x0b\x1c\x0d").decode())
    assert (code, control_id) == ("AR", "MSG0001")
    assert "larger than" in text
    with session_scope(session_factory) as session:
        assert session.scalars(select(Order)).all() == []

    long_reason = "Cough " * 100_000  # 600 KB: under the message limit
    long_order = ORM.replace("Cough and fever for 3 days, rule out pneumonia", long_reason)
    assert msa(exchange(port, framed(long_order)))[0] == "AA"
    with session_scope(session_factory) as session:
        order = session.scalar(select(Order))
        assert order is not None
        assert order.reason_for_exam is not None
        assert len(order.reason_for_exam) == 10240
        study = Study(study_instance_uid="1.2.5", accession_number="ACC777", patient_id="PAT001")
        session.add(study)
        session.flush()
        job = DraftingJob(study_id=study.id, content_version=1)
        session.add(job)
        session.flush()
        inputs = take_job(session, job.id, worker="test", now=utcnow(), lease_seconds=60.0)
    assert inputs is not None
    assert len(inputs.indication) <= 1000
    assert inputs.indication.startswith("Cough Cough")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_connections_past_the_limit_and_frames_sent_a_byte_at_a_time_are_closed(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each connection holds a thread for up to the idle timeout (300 s) between reads: with no
    cap, a flood of idle connections took as many threads and descriptors as it liked, in the
    process that is also the DICOM gateway; and a frame sent a byte at a time was never cut."""
    limits = {"hl7_max_connections": 3, "hl7_frame_timeout_seconds": 1.5}
    with _order_port(settings.model_copy(update=limits), session_factory, publisher) as port:
        held = [_spoken_connection(port) for _ in range(3)]  # a RIS's: never pushed out
        refused = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        for connection in refused:
            assert closed_within(connection, 5), "a connection past the limit is closed"
            connection.close()
        refusals = [r for r in caplog.records if "gateway.mllp_connections_refused" in r.message]
        assert len(refusals) == 1, "one line for the burst"

        dribbling = held[0]
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in framed(ORM)[:40]:  # a frame's start, a byte every 0.2 s, never its end
                dribbling.sendall(bytes([byte]))
                time.sleep(0.2)
        assert closed_within(dribbling, 5), "a frame not whole in time closes the connection"
        assert time.monotonic() - started < 6
        blank, started = held[1], time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(40):  # whitespace between frames, never a frame: not a way around it
                blank.sendall(b"\r")
                time.sleep(0.2)
        assert closed_within(blank, 5), "bytes between frames count towards the frame's time"
        assert time.monotonic() - started < 6
        for connection in held:
            connection.close()
        ack = wait_until(lambda: _answer_or_none(port), timeout=10, what="a free connection")
        assert msa(ack)[:2] == ("AA", "MSG0001"), "served again once connections are free"


@contextlib.contextmanager
def _order_port(
    settings: Settings, session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> Iterator[int]:
    """A gateway with an order-intake port on 127.0.0.1, running while in the block: its port."""
    settings = settings.model_copy(
        update={"hl7_listen_port": free_port(), "hl7_listen_host": "127.0.0.1"}
    )
    gateway = Gateway(settings, session_factory, publisher)
    gateway.start()
    try:
        assert gateway.order_listener is not None
        yield gateway.order_listener.port
    finally:
        gateway.stop()


def _answer(connection: socket.socket) -> str:
    """The next framed answer on ``connection``, unframed ("" if it was closed instead)."""
    return read_until_end_block(connection).strip(b"\x0b\x1c\x0d").decode()


def _spoken_connection(port: int) -> socket.socket:
    """A connection that has sent an order and had its answer, left open as a RIS leaves it."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(framed(ORM))
    answer = _answer(connection)
    assert answer, "the connection was closed unanswered"
    assert msa(answer)[0] == "AA"
    return connection


@pytest.mark.parametrize("backend", ["sqlite"])
def test_connections_that_never_sent_a_message_make_way_for_one_that_does(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the limit reached by connections opened and left silent, a RIS was refused for as
    long as they stayed (up to the 300 s idle timeout, and they could come back)."""
    limits = {"hl7_max_connections": 3}
    with _order_port(settings.model_copy(update=limits), session_factory, publisher) as port:
        silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        time.sleep(0.3)  # all three are being served
        ris = [_spoken_connection(port)]
        assert closed_within(silent[0], 5), "the one silent longest made way"
        for still_waiting in silent[1:]:
            assert not closed_within(still_waiting, 0.1)
        ris += [_spoken_connection(port) for _ in range(2)]
        for connection in silent[1:]:
            assert closed_within(connection, 5)
        # Every connection has now sent an order: a new one is refused, none pushed out.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as late:
            assert closed_within(late, 5), "refused when no connection is silent"
        for connection in ris:
            connection.sendall(framed(ORM))
            assert msa(_answer(connection))[0] == "AA", "the RIS connections are kept"
            connection.close()
        lines = [r.message for r in caplog.records if "gateway.mllp_" in r.message]
        assert lines.count("gateway.mllp_connection_pushed_out limit=3") == 1, "once a burst"
        assert lines.count("gateway.mllp_connections_refused limit=3") == 1
        for connection in silent:
            connection.close()


def _answer_or_none(port: int) -> str | None:
    """The ACK to ORM, or None if the listener closed the connection (still at its limit)."""
    answer = exchange(port, framed(ORM))
    return answer or None


@pytest.mark.parametrize("backend", ["sqlite"])
def test_only_the_named_sending_applications_may_send_orders(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``RADRAFT_HL7_ALLOWED_SENDERS`` is to the order port what the calling AE allow-list is to
    the DICOM port: an order's reason reaches a model's prompt and its numbers the reports."""
    gateway = Gateway(
        settings.model_copy(
            update={
                "hl7_listen_port": free_port(),
                "hl7_listen_host": "127.0.0.1",
                "hl7_allowed_senders": ["RIS", "EPIC"],
            }
        ),
        session_factory,
        publisher,
    )
    gateway.start()
    try:
        assert gateway.order_listener is not None
        port = gateway.order_listener.port
        stranger = ORM.replace("MSH|^~\\&|RIS|", "MSH|^~\\&|EV IL|").replace("MSG0001", "MSG0004")
        assert msa(exchange(port, framed(stranger))) == (
            "AR",
            "MSG0004",
            "sending application (MSH-3) not accepted here",
        )
        assert msa(exchange(port, framed(OMI.replace("|RIS|", "||"))))[0] == "AR", "no MSH-3"
        declared = stranger.replace("|P|2.3\r", "|P|2.3||||||UNICODE UTF-8\r")
        undecodable = declared.replace("DOE", "D\xd6E").encode("latin-1")
        answer = exchange(port, b"\x0b" + undecodable + b"\x1c\x0d")
        assert msa(answer)[0] == "AR", "a stranger is refused as such, whatever its bytes"
        assert msa(exchange(port, framed(ORM)))[0] == "AA", "RIS is on the list"
    finally:
        gateway.stop()
    with session_scope(session_factory) as session:
        assert [o.accession_number for o in session.scalars(select(Order))] == ["ACC777"]
    refused = [r.getMessage() for r in caplog.records if "order_sender_refused" in r.getMessage()]
    assert refused == [
        "gateway.order_sender_refused sending_application=EV?IL",
        "gateway.order_sender_refused sending_application=(empty)",
        "gateway.order_sender_refused sending_application=EV?IL",
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_connections_whose_every_message_is_refused_make_way_for_a_ris(
    settings: Settings, session_factory: sessionmaker[Session], publisher: RecordingPublisher
) -> None:
    """A peer that sends something every now and then (an order from a sender not on the list,
    or not HL7 at all) counted as a RIS and kept its slot: with the limit taken that way, the
    real RIS was closed as it arrived."""
    limits = {"hl7_max_connections": 2, "hl7_allowed_senders": ["RIS"]}
    stranger = ORM.replace("MSH|^~\\&|RIS|", "MSH|^~\\&|STRANGER|")
    with _order_port(settings.model_copy(update=limits), session_factory, publisher) as port:
        refused = []
        for message in (stranger, "MSH|^~\\&|RIS|HOSP|RADRAFT|HOSP|1||ADT^A01|9|P|2.3\r"):
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(framed(message))
            assert msa(_answer(connection))[0] == "AR"
            refused.append(connection)
        ris = _spoken_connection(port)
        assert closed_within(refused[0], 5), "the oldest refused-only connection made way"
        assert not closed_within(refused[1], 0.1)
        ris.close()
        for connection in refused:
            connection.close()
