"""Outputs a real PACS and RIS accept: every character set, thin headers, failures that show.

Studies arrive through the real gateway (dcmtk storescu), revisions are appended by the core as
the worker and the lifecycle append them, and the real relay delivers to dcmtk's storescp and
an MLLP peer; every SR is checked with dciodvfy and read back, every ORU parsed with `hl7`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import hl7
import pytest
from pydicom import dcmread
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import OutboxChannel, OutboxStatus, ReportState, Role
from radraft.models import Instance, OutboxMessage, Study, User
from radraft.settings import DicomDestination, Settings
from radraft.synthetic import make_chest_study
from radraft.timeutil import utcnow
from reporting.delivery.relay import OutputDeliveryRelay
from tests.conftest import ReportDestinations
from tests.dicom_peers import ReferenceStoreSCP, storescu, write_study
from tests.reporting.factories import add_revision, make_user
from tests.support import cxr_file, free_port, require_tool, wait_until

FINDINGS = "Kein Pneumothorax; Zwerchfell glatt. Naïve façade — 肺野清明. Ελληνικά."
IMPRESSION = "Unauffällig. 所見なし."
OWN_SOURCES = [
    ("ISO_IR 192", "Müller^José", "P-UTF8"),
    ("ISO_IR 100", "Buc^Jérôme", "P-LATIN1"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "P-JIS"),
    ("GB18030", "Wang^XiaoDong=王^小东", "P-GB18030"),
]


def pydicom_sources() -> list[tuple[object, str, str]]:
    """Character set, patient name and id of each of pydicom's charset files with a name."""
    sources = []
    for path in sorted(get_charset_files("*.dcm")):
        dataset = dcmread(path, stop_before_pixels=True)
        name = str(dataset.get("PatientName", "") or "")
        if name:
            sources.append((dataset.SpecificCharacterSet, name, f"PY-{Path(path).stem}"))
    return sources


class SteppingClock:
    """Time that jumps a minute per call, so every backoff has passed at the next attempt."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def rows(factory: sessionmaker[Session]) -> list[OutboxMessage]:
    with session_scope(factory) as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.channel != OutboxChannel.CELERY)
                .order_by(OutboxMessage.id)
            )
        )


def deliver_until_settled(
    relay: OutputDeliveryRelay,
    factory: sessionmaker[Session],
    channels: tuple[OutboxChannel, ...] = (OutboxChannel.DICOM, OutboxChannel.HL7),
) -> None:
    """Run the relay until nothing is pending any more (done, failed, or blocked behind one)."""

    def settled() -> bool:
        relay.run_once()
        by_queue: dict[tuple[int | None, str], list[str]] = {}
        for row in rows(factory):
            if row.channel not in channels:
                continue
            by_queue.setdefault((row.study_id, row.channel), []).append(row.status)
        return all(
            statuses[0] == OutboxStatus.FAILED or set(statuses) == {OutboxStatus.DONE}
            for statuses in by_queue.values()
        )

    wait_until(settled, timeout=240, what="every output delivered or failed")


def received_studies(factory: sessionmaker[Session], count: int) -> list[Study]:
    def decided() -> list[Study] | None:
        with session_scope(factory) as session:
            studies = session.scalars(select(Study).where(Study.eligible.is_not(None))).all()
            return list(studies) if len(studies) == count else None

    return wait_until(decided, timeout=120, what=f"{count} studies decided")


@dataclass
class Readers:
    resident: User
    attending: User


@pytest.fixture
def readers(session_factory: sessionmaker[Session]) -> Readers:
    """A resident and an attending whose names are not ASCII."""
    with session_scope(session_factory) as session:
        return Readers(
            make_user(session, "jose", Role.RESIDENT, "José Müller-Lüdenscheidt"),
            make_user(session, "juergen", Role.ATTENDING, "Jürgen Weiß"),
        )


def report_on(factory: sessionmaker[Session], study_id: int, readers: Readers) -> None:
    """Draft (model), preliminary (resident) and final (attending), as the services write them."""
    with session_scope(factory) as session:
        study = session.get(Study, study_id)
        assert study is not None
        add_revision(
            session,
            study,
            ReportState.DRAFTED,
            model=True,
            findings="[DEMO MODEL] " + FINDINGS,
            impression="[DEMO MODEL] " + IMPRESSION,
        )
        add_revision(
            session,
            study,
            ReportState.PRELIMINARY,
            author=readers.resident,
            findings=FINDINGS,
            impression=IMPRESSION,
        )
        add_revision(session, study, ReportState.FINAL, author=readers.attending,
                     findings=FINDINGS, impression=IMPRESSION)  # fmt: skip


def dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(
        [require_tool("dciodvfy"), str(path)], capture_output=True, text=True, errors="replace"
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if "Error" in line]


def text_items(dataset: Dataset) -> list[str]:
    out = []
    for item in getattr(dataset, "ContentSequence", []):
        if item.ValueType == "TEXT":
            out.append(item.TextValue)
        out.extend(text_items(item))
    return out


def person_observers(dataset: Dataset) -> list[str]:
    return [
        str(item.PersonName)
        for item in dataset.ContentSequence
        if item.ValueType == "PNAME" and item.RelationshipType == "HAS OBS CONTEXT"
    ]


def xpn_to_person_name(message: hl7.Message, field: object) -> str:
    """XPN repetitions back to a DICOM PN (this test's own inverse of radraft's mapping)."""
    groups = []
    for repetition in str(field).split("~"):
        parts = ([message.unescape(part) for part in repetition.split("^")] + [""] * 5)[:5]
        family, given, middle, suffix, prefix = parts
        groups.append("^".join((family, given, middle, prefix, suffix)).rstrip("^"))
    return "=".join(groups)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_character_set_reaches_pacs_and_ris_and_reads_back_equal(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    report_destinations: ReportDestinations,
    readers: Readers,
    tmp_path: Path,
) -> None:
    sources = OWN_SOURCES + pydicom_sources()
    assert len(sources) >= 15
    by_patient: dict[str, tuple[object, str]] = {}
    files = []
    for seed, (charset, name, patient_id) in enumerate(sources, start=100):
        (image,) = make_chest_study(seed, rows=32, columns=32, views=("PA",))
        image.SpecificCharacterSet = charset
        image.PatientName = name
        image.PatientID = patient_id
        image.ReferringPhysicianName = name
        files += write_study([image], tmp_path / patient_id)
        by_patient[patient_id] = (charset, name)
    assert storescu(files, port=running_gateway.port).returncode == 0
    studies = received_studies(session_factory, len(sources))
    for study in studies:
        assert study.patient_id is not None
        assert study.patient_name == by_patient[study.patient_id][1], "decoded on receipt"
        report_on(session_factory, study.id, readers)

    settings = settings.model_copy(update=report_destinations.settings_update())
    relay = OutputDeliveryRelay(session_factory, settings, clock=SteppingClock())
    deliver_until_settled(relay, session_factory)
    assert {row.status for row in rows(session_factory)} == {OutboxStatus.DONE}

    srs = report_destinations.stored_srs()
    assert len(srs) == 3 * len(sources)
    for path in srs:
        assert dciodvfy_errors(path) == [], path.name
        sr = dcmread(path)
        charset, name = by_patient[sr.PatientID]
        assert sr.SpecificCharacterSet == "ISO_IR 192", charset
        assert str(sr.PatientName) == name
        assert str(sr.ReferringPhysicianName) == name
        assert {FINDINGS, IMPRESSION} <= {text.removeprefix("[DEMO MODEL] ") for text in
                                          text_items(sr)}  # fmt: skip
        if sr.VerificationFlag == "VERIFIED":
            assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Weiß^Jürgen"
            assert person_observers(sr) == ["Weiß^Jürgen"]
        elif sr.InstanceNumber == 2:
            assert person_observers(sr) == ["Müller-Lüdenscheidt^José"]

    messages = report_destinations.ris.messages
    assert len(messages) == 3 * len(sources)
    for message in messages:
        assert str(message.segment("MSH")[18]) == "UNICODE UTF-8"
        patient_id = str(message.segment("PID")[3])
        assert xpn_to_person_name(message, message.segment("PID")[5]) == by_patient[patient_id][1]
        observations = [message.unescape(str(obx[5])) for obx in message.segments("OBX")]
        assert observations[-1].removeprefix("[DEMO MODEL] ") == IMPRESSION


@pytest.fixture
def thin_radiograph(tmp_path: Path) -> Path:
    """A real chest radiograph whose header lacks the type 2 attributes modalities often omit."""
    dataset = dcmread(cxr_file("cr_chest_pa_siim-nih_mono2_jpeg-baseline.dcm"))
    for keyword in ("StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
                    "StudyID", "PatientBirthDate", "PatientSex"):  # fmt: skip
        if keyword in dataset:
            delattr(dataset, keyword)
    path = tmp_path / "thin.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_source_without_type_2_attributes_gets_every_output_delivered_and_valid(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    report_destinations: ReportDestinations,
    readers: Readers,
    thin_radiograph: Path,
) -> None:
    assert storescu([thin_radiograph], port=running_gateway.port).returncode == 0
    (study,) = received_studies(session_factory, 1)
    assert (study.study_date, study.accession_number, study.dicom_study_id) == (None, None, None)
    report_on(session_factory, study.id, readers)
    settings = settings.model_copy(update=report_destinations.settings_update())
    deliver_until_settled(
        OutputDeliveryRelay(session_factory, settings, clock=SteppingClock()), session_factory
    )
    assert {row.status for row in rows(session_factory)} == {OutboxStatus.DONE}
    srs = report_destinations.stored_srs()
    assert len(srs) == 3
    for path in srs:
        assert dciodvfy_errors(path) == [], path.name
        sr = dcmread(path)
        assert (sr.StudyDate, sr.AccessionNumber, sr.StudyID) == ("", "", "")
    statuses = [str(m.segment("OBR")[25]) for m in report_destinations.ris.messages]
    assert statuses == ["R", "P", "F"]
    assert all(str(m.segment("OBR")[7]) for m in report_destinations.ris.messages), "OBR-7 set"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_study_without_patient_id_gets_its_srs_and_no_oru_the_ris_could_not_file(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    report_destinations: ReportDestinations,
    readers: Readers,
    thin_radiograph: Path,
) -> None:
    """Patient ID is type 2: a modality may send it empty, and the gateway stores the image. The
    ORU went out with an empty PID-3 (the test RIS answered AA; a real one refuses it or files
    a result under nobody). Now it fails with the reason, and the SRs still go out."""
    anonymous = dcmread(thin_radiograph)
    anonymous.PatientID = ""
    anonymous.save_as(thin_radiograph, enforce_file_format=True)
    assert storescu([thin_radiograph], port=running_gateway.port).returncode == 0
    (study,) = received_studies(session_factory, 1)
    assert study.patient_id is None
    report_on(session_factory, study.id, readers)
    settings = settings.model_copy(
        update={**report_destinations.settings_update(), "delivery_max_attempts": 2}
    )
    deliver_until_settled(
        OutputDeliveryRelay(session_factory, settings, clock=SteppingClock()), session_factory
    )
    by_channel = {
        channel: [row for row in rows(session_factory) if row.channel == channel]
        for channel in (OutboxChannel.DICOM, OutboxChannel.HL7)
    }
    assert {row.status for row in by_channel[OutboxChannel.DICOM]} == {OutboxStatus.DONE}
    head, *later = by_channel[OutboxChannel.HL7]
    assert head.status == OutboxStatus.FAILED
    assert "the study has no Patient ID" in (head.last_error or "")
    assert {row.status for row in later} == {OutboxStatus.PENDING}
    assert report_destinations.ris.messages == []
    assert len(report_destinations.stored_srs()) == 3


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_output_that_cannot_be_built_fails_with_its_reason_while_others_go_out(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    report_destinations: ReportDestinations,
    readers: Readers,
    tmp_path: Path,
) -> None:
    files = write_study(make_chest_study(201, rows=32, columns=32, views=("PA",)), tmp_path / "a")
    files += write_study(make_chest_study(202, rows=32, columns=32, views=("PA",)), tmp_path / "b")
    assert storescu(files, port=running_gateway.port).returncode == 0
    broken, healthy = received_studies(session_factory, 2)
    with session_scope(session_factory) as session:
        spooled = session.scalar(select(Instance.spool_path).where(Instance.study_id == broken.id))
    assert spooled is not None
    running_gateway.spool.path_of(spooled).unlink()  # e.g. an over-eager clean-up
    for study in (broken, healthy):
        report_on(session_factory, study.id, readers)

    settings = settings.model_copy(
        update={**report_destinations.settings_update(), "delivery_max_attempts": 3}
    )
    deliver_until_settled(
        OutputDeliveryRelay(session_factory, settings, clock=SteppingClock()), session_factory
    )
    broken_sr = [
        row for row in rows(session_factory)
        if row.study_id == broken.id and row.channel == OutboxChannel.DICOM
    ]  # fmt: skip
    assert broken_sr[0].status == OutboxStatus.FAILED
    assert broken_sr[0].attempts == 3
    assert broken_sr[0].last_error == (
        "cannot build or send: OutputBuildError: a source instance is missing from the spool"
    )
    assert {row.status for row in broken_sr[1:]} == {OutboxStatus.PENDING}, "later ones wait"
    healthy_rows = [row for row in rows(session_factory) if row.study_id == healthy.id]
    assert {row.status for row in healthy_rows} == {OutboxStatus.DONE}
    assert len(report_destinations.stored_srs()) == 3, "the healthy study's SRs went out"


@pytest.fixture
def implicit_only_pacs(tmp_path: Path) -> Iterator[ReferenceStoreSCP]:
    """A PACS that accepts only the default transfer syntax, Implicit VR Little Endian."""
    pacs = ReferenceStoreSCP(tmp_path / "pacs", free_port(), ae_title="PACS", options=["+xi"])
    pacs.start()
    yield pacs
    pacs.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_pacs_accepting_only_implicit_vr_stores_the_sr(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    implicit_only_pacs: ReferenceStoreSCP,
    readers: Readers,
    tmp_path: Path,
) -> None:
    files = write_study(make_chest_study(301, rows=32, columns=32), tmp_path / "s")
    assert storescu(files, port=running_gateway.port).returncode == 0
    (study,) = received_studies(session_factory, 1)
    report_on(session_factory, study.id, readers)
    settings = settings.model_copy(
        update={"sr_destination": DicomDestination("PACS", "127.0.0.1", implicit_only_pacs.port)}
    )
    deliver_until_settled(
        OutputDeliveryRelay(session_factory, settings, clock=SteppingClock()),
        session_factory,
        channels=(OutboxChannel.DICOM,),
    )
    stored = sorted(implicit_only_pacs.folder.iterdir())
    assert len(stored) == 3
    for path in stored:
        sr = dcmread(path)
        assert sr.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
        assert dciodvfy_errors(path) == []


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("warning", [0xB000, 0xB007, 0x0107, 0x0116])
def test_c_store_warnings_are_delivered_and_recorded(
    warning: int,
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    settings: Settings,
    readers: Readers,
    tmp_path: Path,
) -> None:
    """A PACS (a pynetdicom SCP here) that stores but warns: delivered, the warning kept."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ComprehensiveSRStorage  # type: ignore[attr-defined]

    received: list[str] = []

    def handle_store(event: evt.Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return warning

    pacs = AE(ae_title="PACS")
    pacs.add_supported_context(ComprehensiveSRStorage)
    server = pacs.start_server(("127.0.0.1", 0), block=False,
                               evt_handlers=[(evt.EVT_C_STORE, handle_store)])  # fmt: skip
    assert server is not None
    try:
        files = write_study(make_chest_study(401, rows=32, columns=32), tmp_path / "s")
        assert storescu(files, port=running_gateway.port).returncode == 0
        (study,) = received_studies(session_factory, 1)
        report_on(session_factory, study.id, readers)
        port = server.server_address[1]
        settings = settings.model_copy(
            update={"sr_destination": DicomDestination("PACS", "127.0.0.1", port)}
        )
        deliver_until_settled(
            OutputDeliveryRelay(session_factory, settings, clock=SteppingClock()),
            session_factory,
            channels=(OutboxChannel.DICOM,),
        )
    finally:
        server.shutdown()
    sr_rows = [row for row in rows(session_factory) if row.channel == OutboxChannel.DICOM]
    assert [row.status for row in sr_rows] == [OutboxStatus.DONE] * 3
    assert all(row.attempts == 1 for row in sr_rows), "a warning is not retried"
    assert all(f"stored with warning 0x{warning:04X}" in (row.last_error or "") for row in sr_rows)
    assert len(received) == 3
