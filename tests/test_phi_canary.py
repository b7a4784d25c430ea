"""PHI stays out of logs: canary values through the whole pipeline, SR and ORU delivery included.

The canaries are the kinds of value libraries like to quote: a one-component patient name
(highdicom warns with it), a birth date that is not a date (pydicom warns with it), the patient
id, the accession number, the Study and SOP Instance UIDs (highdicom logs source UIDs at INFO
while building an SR), and an order's reason for exam.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.enums import OutboxChannel, OutboxStatus
from radraft.models import OutboxMessage
from radraft.settings import Settings
from radraft.synthetic import make_chest_study
from tests.conftest import ReportDestinations
from tests.dicom_peers import storescu, write_study
from tests.hl7_peer import read_until_end_block
from tests.processes import radraft_process
from tests.support import free_port, wait_until

STUDY_UID = "1.2.826.0.1.3680043.2.1125.424242424242"
CANARIES = {
    "name": "CANARYSOLO",
    "patient id": "CANARYPID9",
    "accession": "CANARYACC7",
    "birth date": "19xx0101",
    "study uid": STUDY_UID,
    "reason": "CANARYREASON",
}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_no_canary_reaches_any_log_line(
    settings: Settings,
    session_factory: sessionmaker[Session],
    report_destinations: ReportDestinations,
    tmp_path: Path,
) -> None:
    hl7_port = free_port()
    settings = settings.model_copy(
        update={
            **report_destinations.settings_update(),
            "hl7_listen_port": hl7_port,
            "hl7_listen_host": "127.0.0.1",
            "log_level": "DEBUG",
        }
    )
    study = make_chest_study(4242, rows=64, columns=64)
    for image in study:
        image.PatientName = CANARIES["name"]
        image.PatientID = CANARIES["patient id"]
        image.AccessionNumber = CANARIES["accession"]
        image.PatientBirthDate = CANARIES["birth date"]
        image.StudyInstanceUID = STUDY_UID
    canaries = {**CANARIES, **{f"sop {n}": str(i.SOPInstanceUID) for n, i in enumerate(study)}}
    order = (
        "MSH|^~\\&|RIS|HOSP|RADRAFT|HOSP|20261101101500||ORM^O01|CANARYMSG|P|2.3\r"
        f"PID|1||{CANARIES['patient id']}||{CANARIES['name']}\rORC|NW|P1|F1\r"
        f"OBR|1|P1|F1|||||||||||||||{CANARIES['accession']}"
        f"|||||||||||||^{CANARIES['reason']}\r"
    )
    log = tmp_path / "serve.log"
    with radraft_process(settings, ["serve"], log, ready_text="celery@"):
        with socket.create_connection(("127.0.0.1", hl7_port), timeout=10) as connection:
            connection.sendall(b"\x0b" + order.encode() + b"\x1c\x0d")
            assert b"MSA|AA" in read_until_end_block(connection)
        files = write_study(study, tmp_path / "s")
        assert storescu(files, port=settings.dicom_port).returncode == 0

        def delivered() -> bool:
            with session_scope(session_factory) as session:
                rows = session.scalars(
                    select(OutboxMessage).where(OutboxMessage.channel != OutboxChannel.CELERY)
                ).all()
                return len(rows) == 2 and all(r.status == OutboxStatus.DONE for r in rows)

        wait_until(delivered, timeout=120, what="the draft's SR and ORU delivered")
    assert report_destinations.stored_srs(), "the SR was built (and highdicom ran)"
    text = log.read_text(errors="replace")
    assert "gateway.instance_stored" in text, "the log is the one the services wrote"
    leaked = {kind: value for kind, value in canaries.items() if value in text}
    assert leaked == {}
