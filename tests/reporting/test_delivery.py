"""Delivery to a real PACS (dcmtk storescp) and a real RIS (MLLP listener), without loss."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import OutboxChannel, OutboxStatus
from radraft.models import OutboxMessage, Study
from radraft.settings import (
    DicomDestination,
    MllpDestination,
    Settings,
    settings_to_environment,
)
from radraft.timeutil import utcnow
from reporting.delivery.relay import OutputDeliveryRelay
from tests.dicom_peers import ReferenceStoreSCP
from tests.hl7_peer import RisPeer
from tests.pki import TestPki
from tests.processes import radraft_process
from tests.reporting.factories import full_history
from tests.stalling_peer import StallingPeer
from tests.support import free_port, returns_within, wait_until


class SteppingClock:
    """Time that jumps a minute per call, so every backoff has passed at the next attempt."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def give_full_history(factory: sessionmaker[Session], study_id: int) -> None:
    """A received study edited, signed and with its outputs queued (``full_history``)."""
    with session_scope(factory) as session:
        study = session.get(Study, study_id)
        assert study is not None
        full_history(session, study)


def output_rows(factory: sessionmaker[Session]) -> list[OutboxMessage]:
    with session_scope(factory) as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.channel != OutboxChannel.CELERY)
                .order_by(OutboxMessage.id)
            )
        )


def test_outputs_wait_for_down_peers_then_arrive_once_in_order(
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    pacs_port, ris_port = free_port(), free_port()
    settings = settings.model_copy(
        update={
            "sr_destination": DicomDestination("PACS", "127.0.0.1", pacs_port),
            "hl7_destinations": [MllpDestination("127.0.0.1", ris_port)],
            "delivery_timeout_seconds": 3,
            "delivery_max_attempts": 50,
        }
    )
    give_full_history(session_factory, received_study.id)
    relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())

    for _ in range(3):  # both peers down
        assert relay.run_once() == 0
    rows = output_rows(session_factory)
    assert len(rows) == 8
    assert {row.status for row in rows} == {OutboxStatus.PENDING}
    assert all(row.last_error for row in rows[:2]), "the heads of each queue were attempted"

    pacs = ReferenceStoreSCP(tmp_path / "pacs", pacs_port, ae_title="PACS")
    ris = RisPeer(ris_port)
    pacs.start()
    ris.start()
    try:
        wait_until(lambda: relay.run_once() == 0 and all(
            row.status == OutboxStatus.DONE for row in output_rows(session_factory)
        ), timeout=120, what="every output delivered")  # fmt: skip
    finally:
        pacs.stop()
        ris.stop()

    statuses = [str(message.segment("OBR")[25]) for message in ris.messages]
    assert statuses == ["R", "P", "F", "C"], "one ORU per revision, in order"
    for message in ris.messages:
        obr25 = str(message.segment("OBR")[25])
        assert {str(obx[11]) for obx in message.segments("OBX")} == {obr25}
        assert str(message.segment("OBR")[18]) == received_study.accession_number
        assert str(message.segment("PID")[3]) == received_study.patient_id
        assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert str(ris.messages[0].segment("OBX")[5]).startswith("[DEMO MODEL")
    assert str(ris.messages[2].segment("OBR")[32]) == "att&Attending&Alan"
    assert len(ris.messages[0].segment("OBR")) <= 32, "no interpreter on an unsigned draft"

    received = sorted(
        (dcmread(path) for path in (tmp_path / "pacs").iterdir()),
        key=lambda sr: int(sr.InstanceNumber),
    )
    assert [sr.VerificationFlag for sr in received] == [
        "UNVERIFIED", "UNVERIFIED", "VERIFIED", "VERIFIED",
    ]  # fmt: skip
    assert len({sr.SOPInstanceUID for sr in received}) == 4


def test_peer_answering_ae_is_retried_then_failed_visible_and_retryable(
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    ris_port = free_port()
    settings = settings.model_copy(
        update={
            "hl7_destinations": [MllpDestination("127.0.0.1", ris_port)],
            "delivery_max_attempts": 3,
        }
    )
    give_full_history(session_factory, received_study.id)
    ris = RisPeer(ris_port, ack_code="AE")
    ris.start()
    try:
        relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
        for _ in range(5):
            relay.run_once()
        assert len(ris.messages) == 3, "three attempts, then the row is failed"
        control_ids = {str(message.segment("MSH")[10]) for message in ris.messages}
        assert len(control_ids) == 1, "every retry of one output keeps its MSH-10"
    finally:
        ris.stop()
    hl7_rows = [r for r in output_rows(session_factory) if r.channel == OutboxChannel.HL7]
    head, *rest = hl7_rows
    assert head.status == OutboxStatus.FAILED
    assert head.last_error == "ACK AE"
    assert all(row.status == OutboxStatus.PENDING for row in rest), "later ones wait in order"

    environment = {**os.environ, **settings_to_environment(settings)}
    listed = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "outbox", "--status", "failed"],
        env=environment, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert listed.stdout.startswith(f"{head.id}\thl7\toru\tfailed\tattempts=3")
    waiting = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "outbox", "--status", "pending"],
        env=environment, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()  # fmt: skip
    sr_lines = [line for line in waiting if "\tdicom\t" in line]
    assert sr_lines, "this site has no PACS link: its SRs wait"
    assert all(
        line.endswith("\twaits for a destination: RADRAFT_SR_DESTINATION is not set")
        for line in sr_lines
    )
    assert not any("waits for" in line for line in waiting if "\thl7\t" in line)
    with radraft_process(settings, ["web"], tmp_path / "web.log", ready_text="Uvicorn running"):
        body = httpx.get(
            f"http://127.0.0.1:{settings.http_port}/api/outbox?status=failed",
            headers={"Authorization": f"Bearer {settings.api_token}"},
        ).json()
    assert [row["id"] for row in body] == [head.id]

    retried = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "outbox", "retry", str(head.id)],
        env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert retried.returncode == 0, retried.stderr
    assert output_rows(session_factory)[[r.id for r in output_rows(session_factory)].index(
        head.id)].status == OutboxStatus.PENDING  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite"])
def test_drafts_are_kept_off_hl7_when_the_setting_says_so(
    received_study: Study, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    ris_port = free_port()
    settings = settings.model_copy(
        update={
            "hl7_destinations": [MllpDestination("127.0.0.1", ris_port)],
            "hl7_send_drafts": False,
        }
    )
    give_full_history(session_factory, received_study.id)
    ris = RisPeer(ris_port)
    ris.start()
    try:
        relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
        wait_until(lambda: relay.run_once() == 0 and all(
            r.status == OutboxStatus.DONE
            for r in output_rows(session_factory) if r.channel == OutboxChannel.HL7
        ), what="HL7 rows handled")  # fmt: skip
    finally:
        ris.stop()
    assert [str(m.segment("OBR")[25]) for m in ris.messages] == ["P", "F", "C"]
    draft_row = next(r for r in output_rows(session_factory) if r.channel == OutboxChannel.HL7)
    assert draft_row.last_error == "not sent: RADRAFT_HL7_SEND_DRAFTS is false"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_ack_for_another_message_is_not_a_delivery(
    received_study: Study, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    ris_port = free_port()
    settings = settings.model_copy(
        update={
            "hl7_destinations": [MllpDestination("127.0.0.1", ris_port)],
            "delivery_max_attempts": 2,
        }
    )
    give_full_history(session_factory, received_study.id)
    ris = RisPeer(ris_port, acknowledged_control_id="SOMETHING-ELSE")
    ris.start()
    try:
        relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
        for _ in range(3):
            relay.run_once()
    finally:
        ris.stop()
    head = next(r for r in output_rows(session_factory) if r.channel == OutboxChannel.HL7)
    assert head.status == OutboxStatus.FAILED
    assert head.last_error == "ACK answers another message (MSA-2 is not our MSH-10)"


A_ASSOCIATE_AC_START = b"\x02\x00\x00\x00"
"""The first four bytes of an A-ASSOCIATE-AC's six-byte header."""


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("sr_tls", [False, True], ids=["half-pdu", "no-handshake"])
def test_a_pacs_or_ris_that_stalls_mid_answer_costs_an_attempt_not_the_relay(
    sr_tls: bool,
    received_study: Study,
    session_factory: sessionmaker[Session],
    settings: Settings,
    pki: TestPki,
) -> None:
    """pynetdicom waited without a limit for a TLS handshake, and for the rest of a PDU once
    connected, and a RIS sending its ACK a byte at a time reset the socket's timeout with each
    byte: the relay's one thread held there, and every output of every study stayed pending."""
    pacs = StallingPeer(free_port(), opening=b"" if sr_tls else A_ASSOCIATE_AC_START)
    ris = StallingPeer(free_port(), opening=b"\x0bMSH|^~\\&|", drip=b"R")
    settings = settings.model_copy(
        update={
            "sr_destination": DicomDestination("PACS", "127.0.0.1", pacs.port),
            "hl7_destinations": [MllpDestination("127.0.0.1", ris.port)],
            "sr_tls": sr_tls,
            "tls_certfile": pki.client.certificate,
            "tls_keyfile": pki.client.key,
            "tls_ca_file": pki.ca,
            "delivery_timeout_seconds": 1,
            "delivery_max_attempts": 2,
        }
    )
    give_full_history(session_factory, received_study.id)
    pacs.start()
    ris.start()
    try:
        relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
        for _ in range(2):
            returns_within(30, relay.run_once, what="the relay, held by a stalled peer")
    finally:
        pacs.stop()
        ris.stop()
    assert pacs.connections == ris.connections == 2
    heads = {row.channel: row for row in output_rows(session_factory) if row.attempts}
    assert heads[OutboxChannel.DICOM].status == OutboxStatus.FAILED
    assert heads[OutboxChannel.DICOM].last_error == "association with PACS refused or failed"
    assert heads[OutboxChannel.HL7].status == OutboxStatus.FAILED
    assert heads[OutboxChannel.HL7].last_error == "MLLP no whole answer within 2 s"
