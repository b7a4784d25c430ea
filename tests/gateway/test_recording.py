"""The rows one received instance writes: new, re-sent, late, and into a decided study."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.header import InstanceHeader, parse_instance_header
from gateway.recording import record_instance
from radraft.db import connection_scope, session_scope
from radraft.enums import StudyStatus
from radraft.models import Instance, Series, Study
from radraft.synthetic import make_chest_study, synthetic_uid
from tests.dicom_peers import write_study

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def header_of(dataset: Dataset, folder: Path) -> InstanceHeader:
    (path,) = write_study([dataset], folder)
    return parse_instance_header(path)


def record(
    factory: sessionmaker[Session], header: InstanceHeader, *, at: datetime, path: str = "a.dcm"
) -> None:
    with connection_scope(factory) as connection:
        record_instance(
            connection,
            header,
            relative_path=path,
            size=123,
            transfer_syntax="1.2.840.10008.1.2.1",
            calling_ae_title="MODALITY",
            strict_body_part=False,
            now=at,
        )


def the_study(factory: sessionmaker[Session]) -> Study:
    with session_scope(factory) as session:
        study: Study | None = session.scalar(select(Study))
        assert study is not None
        return study


def test_two_images_make_one_study_and_a_late_header_gap_erases_nothing(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    pa, lateral = make_chest_study(1, rows=16, columns=16)
    del lateral.AccessionNumber  # a modality that sends it on the first image only
    lateral.StudyDescription = "CHEST PA AND LATERAL"
    record(session_factory, header_of(pa, tmp_path / "pa"), at=START)
    later = START + timedelta(seconds=5)
    record(session_factory, header_of(lateral, tmp_path / "lat"), at=later)

    study = the_study(session_factory)
    assert (study.content_version, study.status) == (2, StudyStatus.RECEIVING)
    assert (study.first_received_at, study.last_received_at) == (START, later)
    assert study.accession_number == pa.AccessionNumber
    assert study.study_description == "CHEST PA AND LATERAL"
    assert study.patient_id == pa.PatientID
    with session_scope(session_factory) as session:
        rows = session.execute(
            select(Instance.sop_instance_uid, Instance.study_id, Series.series_instance_uid)
            .join(Series, Instance.series_id == Series.id)
            .order_by(Instance.id)
        ).all()
    assert rows == [
        (pa.SOPInstanceUID, study.id, pa.SeriesInstanceUID),
        (lateral.SOPInstanceUID, study.id, lateral.SeriesInstanceUID),
    ]


def test_a_resent_instance_is_counted_and_refreshed_without_reopening_the_study(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    (pa,) = make_chest_study(2, rows=16, columns=16, views=("PA",))
    header = header_of(pa, tmp_path)
    record(session_factory, header, at=START, path="first.dcm")
    record(session_factory, header, at=START + timedelta(minutes=1), path="second.dcm")

    study = the_study(session_factory)
    assert (study.content_version, study.last_received_at) == (1, START)
    with session_scope(session_factory) as session:
        instance = session.scalar(select(Instance))
        assert instance is not None
        assert (instance.receive_count, instance.spool_path) == (2, "second.dcm")
        assert instance.received_at == START + timedelta(minutes=1)


def decided_study(
    factory: sessionmaker[Session], folder: Path, seed: int, status: StudyStatus
) -> Dataset:
    """Record a study's PA and mark the study decided with ``status``; returns its lateral."""
    pa, lateral = make_chest_study(seed, rows=16, columns=16)
    record(factory, header_of(pa, folder / "pa"), at=START)
    with session_scope(factory) as session:
        study = session.scalar(select(Study))
        assert study is not None
        study.status, study.completed_version = status, 1
    return lateral


def test_a_new_image_reopens_a_drafted_study_and_an_sr_does_not(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    lateral = decided_study(session_factory, tmp_path, 3, StudyStatus.DRAFTED)

    report_like = make_chest_study(3, rows=16, columns=16, views=("PA",), modality="SR")[0]
    report_like.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    report_like.SOPInstanceUID = synthetic_uid("recording-test-sr")
    report_like.file_meta.MediaStorageSOPClassUID = report_like.SOPClassUID
    report_like.file_meta.MediaStorageSOPInstanceUID = report_like.SOPInstanceUID
    record(session_factory, header_of(report_like, tmp_path / "sr"), at=START)
    assert (the_study(session_factory).status, the_study(session_factory).content_version) == (
        StudyStatus.DRAFTED,
        1,
    )

    record(session_factory, header_of(lateral, tmp_path / "lat"), at=START)
    assert (the_study(session_factory).status, the_study(session_factory).content_version) == (
        StudyStatus.RECEIVING,
        2,
    )


def test_a_signed_study_keeps_its_status_when_an_image_arrives_late(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    lateral = decided_study(session_factory, tmp_path, 4, StudyStatus.FINAL)
    record(session_factory, header_of(lateral, tmp_path / "lat"), at=START)
    study = the_study(session_factory)
    assert (study.status, study.content_version) == (StudyStatus.FINAL, 2)
