"""Encryption on the wire: DICOM TLS in and out, MLLP over TLS in and out, strangers refused."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import OutboxChannel, OutboxStatus, ReportState
from radraft.models import Instance, Order, OutboxMessage, Study
from radraft.settings import DicomDestination, MllpDestination, Settings
from radraft.timeutil import utcnow
from reporting.delivery.relay import OutputDeliveryRelay
from tests.dicom_peers import ReferenceStoreSCP, synthetic_study_files
from tests.hl7_peer import RisPeer, read_until_end_block
from tests.pki import TestPki
from tests.reporting.factories import add_revision
from tests.support import free_port, require_tool, wait_until

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
ORM = (
    "MSH|^~\\&|RIS|HOSP|RADRAFT|HOSP|20261101101500||ORM^O01|TLS0001|P|2.5.1\r"
    "PID|1||PAT001||DOE^JANE\rORC|NW|PLC1|FIL1\r"
    "OBR|1|PLC1|FIL1|||||||||||||||ACCTLS\r"
)


def storescu_tls(files: list[Path], port: int, *tls: str) -> subprocess.CompletedProcess[str]:
    command = [require_tool("storescu"), "-v", "-aet", "MODALITY", "-aec", "RADRAFT", *tls,
               "127.0.0.1", str(port), *map(str, files)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def instance_count(factory: sessionmaker[Session]) -> int:
    with session_scope(factory) as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


def test_dicom_tls_stores_a_study_and_refuses_plain_and_strangers(
    tls_gateway: Gateway,
    settings: Settings,
    session_factory: sessionmaker[Session],
    pki: TestPki,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = tls_gateway.tls_port
    assert port is not None
    files = synthetic_study_files(60, tmp_path / "s", size=64)
    trusted = ("+tls", str(pki.client.key), str(pki.client.certificate), "+cf", str(pki.ca))
    stored = storescu_tls(files, port, *trusted)
    assert stored.returncode == 0, stored.stdout + stored.stderr
    assert instance_count(session_factory) == 2

    others = synthetic_study_files(61, tmp_path / "o", size=64)
    plain = storescu_tls(others, port)
    assert plain.returncode != 0, "plain DICOM on the TLS port is refused"
    rogue = ("+tls", str(pki.rogue.key), str(pki.rogue.certificate), "+cf", str(pki.ca))
    assert storescu_tls(others, port, *rogue).returncode != 0, "an unknown client is refused"
    assert instance_count(session_factory) == 2
    refusals = [
        r.getMessage() for r in caplog.records if "gateway.dicom_tls_refused" in r.getMessage()
    ]
    assert len(refusals) == 2, refusals
    assert all("reason=SSL" in line for line in refusals), refusals
    # The plain port is still there for sites that need it.
    assert storescu_tls(others, tls_gateway.port).returncode == 0
    assert instance_count(session_factory) == 4


def test_clients_that_never_finish_the_handshake_hold_up_no_other_sender(
    tls_gateway: Gateway,
    session_factory: sessionmaker[Session],
    pki: TestPki,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pynetdicom shook hands on the thread that accepts every connection, with no timeout: one
    TCP connection to the TLS port that sent nothing kept every other TLS sender out."""
    port = tls_gateway.tls_port
    assert port is not None
    silent = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
    half_hello = socket.create_connection(("127.0.0.1", port), timeout=30)
    half_hello.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))  # a ClientHello's start
    idle = [*silent, half_hello]
    try:
        files = synthetic_study_files(62, tmp_path, size=64)
        trusted = ("+tls", str(pki.client.key), str(pki.client.certificate), "+cf", str(pki.ca))
        stored = storescu_tls(files, port, *trusted, "-to", "15")
        assert stored.returncode == 0, stored.stdout + stored.stderr
        assert instance_count(session_factory) == 2
        for connection in idle:  # closed after the request timeout (5 s), not left to linger
            assert connection.recv(1) == b"", "the gateway closes a handshake that never ends"
    finally:
        for connection in idle:
            connection.close()
    # The silent ones never left the waiting room; the half hello's handshake timed out. Each
    # line is said just after its connections are closed, so it may come after the recv above.
    expected = {"gateway.dicom_tls_refused reason=TimeoutError",
                "gateway.dicom_request_timeouts connections=3 seconds=5.0"}  # fmt: skip

    def said() -> list[str]:
        return [record.getMessage() for record in caplog.records]

    wait_until(lambda: expected <= set(said()), what="both lines said")
    assert said().count("gateway.dicom_tls_refused reason=TimeoutError") == 1


def test_a_client_reset_before_its_handshake_is_one_log_line(
    tls_gateway: Gateway,
    pki: TestPki,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A peer that sent a byte and reset the connection made wrapping the socket for TLS raise
    (SSLError: closed before the handshake with data in the buffer), outside any handler: a
    traceback on stderr and no log line."""
    port = tls_gateway.tls_port
    assert port is not None
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"\x16")
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Whether the reset reaches the server as a failed handshake (SSLError, SSLEOFError) or as
    # a failed read (ConnectionResetError) depends on whether the byte is read before the RST.
    refusals = wait_until(
        lambda: found if len(found := _refusals(caplog)) == 3 else None,
        timeout=10,
        what="a line for each reset",
    )
    assert set(refusals) <= {"SSLError", "SSLEOFError", "ConnectionResetError"}, refusals
    files = synthetic_study_files(63, tmp_path, size=64)
    trusted = ("+tls", str(pki.client.key), str(pki.client.certificate), "+cf", str(pki.ca))
    assert storescu_tls(files, port, *trusted, "-to", "15").returncode == 0
    assert "Traceback" not in capfd.readouterr().err


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The reason of every TLS refusal logged so far."""
    prefix = "gateway.dicom_tls_refused reason="
    return [
        m.removeprefix(prefix)
        for m in (r.getMessage() for r in caplog.records)
        if m.startswith(prefix)
    ]


def test_mllp_over_tls_takes_orders_from_trusted_clients_only(
    tls_gateway: Gateway, session_factory: sessionmaker[Session], pki: TestPki
) -> None:
    assert tls_gateway.tls_order_listener is not None
    port = tls_gateway.tls_order_listener.port

    def send(client: ssl.SSLContext) -> bytes:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as connection,
        ):
            connection.sendall(b"\x0b" + ORM.encode() + b"\x1c\x0d")
            return read_until_end_block(connection)

    def refused(client: ssl.SSLContext) -> bool:
        """With TLS 1.3 the server's refusal may come after the client's handshake ends."""
        try:
            return b"MSA" not in send(client)
        except (ssl.SSLError, OSError):
            return True

    trusted = ssl.create_default_context(cafile=pki.ca)
    trusted.load_cert_chain(pki.client.certificate, pki.client.key)
    assert b"MSA|AA|TLS0001" in send(trusted)
    assert refused(ssl.create_default_context(cafile=pki.ca)), "no client certificate"
    rogue = ssl.create_default_context(cafile=pki.ca)
    rogue.load_cert_chain(pki.rogue.certificate, pki.rogue.key)
    assert refused(rogue), "a certificate from another CA"
    with session_scope(session_factory) as session:
        assert [o.accession_number for o in session.scalars(select(Order))] == ["ACCTLS"]


class SteppingClock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def tls_pacs(tmp_path: Path, pki: TestPki) -> Iterator[ReferenceStoreSCP]:
    """dcmtk's storescp over TLS, requiring radraft's client certificate (its default)."""
    pacs = ReferenceStoreSCP(
        tmp_path / "pacs",
        free_port(),
        ae_title="PACS",
        options=["+xa", "+tls", str(pki.server.key), str(pki.server.certificate),
                 "+cf", str(pki.ca)],
        echo_options=["+tls", str(pki.client.key), str(pki.client.certificate),
                      "+cf", str(pki.ca)],
    )  # fmt: skip
    pacs.start()
    yield pacs
    pacs.stop()


def test_srs_and_orus_go_out_over_tls(
    running_gateway: Gateway,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tls_pacs: ReferenceStoreSCP,
    pki: TestPki,
    tmp_path: Path,
) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.server.certificate, pki.server.key)
    ris = RisPeer(free_port(), ssl_context=server)
    ris.start()
    files = synthetic_study_files(62, tmp_path / "s", size=32)
    assert storescu_tls(files, running_gateway.port).returncode == 0

    def decided() -> int | None:
        with session_scope(session_factory) as session:
            study = session.scalar(select(Study).where(Study.eligible.is_not(None)))
            return study.id if study else None

    study_id = wait_until(decided, what="the study decided")
    with session_scope(session_factory) as session:
        study = session.get(Study, study_id)
        assert study is not None
        add_revision(session, study, ReportState.DRAFTED, model=True, findings="Clear.",
                     impression="Normal.")  # fmt: skip
    relay_settings = settings.model_copy(
        update={
            "sr_destination": DicomDestination("PACS", "127.0.0.1", tls_pacs.port),
            "hl7_destinations": [MllpDestination("127.0.0.1", ris.port)],
            "sr_tls": True,
            "hl7_tls": True,
            "tls_certfile": pki.client.certificate,
            "tls_keyfile": pki.client.key,
            "tls_ca_file": pki.ca,
        }
    )
    relay = OutputDeliveryRelay(session_factory, relay_settings, clock=SteppingClock())
    try:

        def delivered() -> bool:
            relay.run_once()
            with session_scope(session_factory) as session:
                rows = session.scalars(
                    select(OutboxMessage).where(OutboxMessage.channel != OutboxChannel.CELERY)
                ).all()
                return bool(rows) and all(row.status == OutboxStatus.DONE for row in rows)

        wait_until(delivered, timeout=60, what="the SR and the ORU delivered over TLS")
    finally:
        ris.stop()
    assert len(list(tls_pacs.folder.iterdir())) == 1
    assert [str(m.segment("OBR")[25]) for m in ris.messages] == ["R"]
