"""The gateway against dcmtk's storescu and echoscu over real associations."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom import dcmread, uid
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.completion import complete_stable_studies
from gateway.service import Gateway
from radraft.db import session_scope
from radraft.enums import OutboxChannel, StudyStatus
from radraft.models import DraftingJob, Instance, OutboxMessage, Study
from radraft.settings import Settings
from radraft.synthetic import SyntheticPatient, make_chest_study
from radraft.timeutil import utcnow
from tests.conftest import RecordingPublisher
from tests.dicom_peers import (
    ReferenceStoreSCP,
    dataset_bytes,
    echoscu,
    jpeg_lossless_copy,
    storescu,
    synthetic_study_files,
    write_study,
)
from tests.support import CHEST_FILES, NON_CHEST_FILES, cxr_file, free_port, wait_until


def study_status(factory: sessionmaker[Session], study_uid: str) -> str | None:
    with session_scope(factory) as session:
        return session.scalar(select(Study.status).where(Study.study_instance_uid == study_uid))


def jobs_of(factory: sessionmaker[Session], study_uid: str) -> list[DraftingJob]:
    with session_scope(factory) as session:
        return list(
            session.scalars(
                select(DraftingJob).join(Study).where(Study.study_instance_uid == study_uid)
            )
        )


def sop_instance_uid_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)


def assert_spooled_byte_complete(
    factory: sessionmaker[Session], gateway: Gateway, sent: Path, *, reference: Path | None = None
) -> Instance:
    """The spooled file carries exactly the data set bytes that went over the wire.

    Without ``reference`` the wire bytes are the sent file's data set (storescu sends a Part 10
    file as it is); with it, they are what dcmtk's storescp received from the same storescu.
    """
    sop_uid = sop_instance_uid_of(sent)
    with session_scope(factory) as session:
        instance = session.scalar(select(Instance).where(Instance.sop_instance_uid == sop_uid))
    assert instance is not None, f"{sent.name} not in the database"
    spooled = gateway.spool.path_of(instance.spool_path)
    assert dataset_bytes(spooled) == dataset_bytes(reference or sent), sent.name
    assert instance.size_bytes == spooled.stat().st_size
    return instance


def test_echoscu_gets_success(running_gateway: Gateway) -> None:
    result = echoscu(port=running_gateway.port)
    assert result.returncode == 0, result.output
    assert "Received Echo Response (Success)" in result.output


def test_study_in_three_syntaxes_is_stored_byte_complete_and_queued_once(
    running_gateway: Gateway,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = SyntheticPatient(name="CANARY^LEAKY", patient_id="CANARY0001")
    explicit = write_study(
        make_chest_study(1, rows=256, columns=256, patient=canary), tmp_path / "e"
    )
    jpeg_lossless = jpeg_lossless_copy(synthetic_study_files(2, tmp_path / "raw2"), tmp_path / "jl")
    j2k = synthetic_study_files(3, tmp_path / "j2k", transfer_syntax=uid.JPEG2000Lossless)
    studies = [explicit, jpeg_lossless, j2k]
    for files in studies:
        result = storescu(files, port=running_gateway.port)
        assert result.returncode == 0, result.output

    study_uids = [make_chest_study(seed)[0].StudyInstanceUID for seed in (1, 2, 3)]
    for study_uid in study_uids:

        def queued(uid: str = study_uid) -> bool:
            return study_status(session_factory, uid) == StudyStatus.QUEUED

        wait_until(queued, what="study queued")
    for files in studies:
        for path in files:
            instance = assert_spooled_byte_complete(session_factory, running_gateway, path)
            assert instance.is_chest
            assert instance.view_position in ("PA", "LATERAL")
    wait_until(lambda: len(publisher.published) == 3, what="three publishes")

    # The same studies again: every instance is re-stored, no new job appears.
    for files in studies:
        assert storescu(files, port=running_gateway.port).returncode == 0
    with session_scope(session_factory) as session:
        assert set(session.scalars(select(Instance.receive_count))) == {2}
    far_future = utcnow() + timedelta(days=1)
    assert complete_stable_studies(session_factory, stable_seconds=0, clock=lambda: far_future) == 0
    for study_uid in study_uids:
        assert len(jobs_of(session_factory, study_uid)) == 1
    with session_scope(session_factory) as session:
        outbox = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.channel == OutboxChannel.CELERY)
        )
    assert outbox == 3
    assert len(publisher.published) == 3
    assert len({message.task_id for message in publisher.published}) == 3
    assert "CANARY" not in caplog.text


def test_real_chest_radiographs_are_drafted_and_other_films_are_not(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    chest = [cxr_file(name) for name in CHEST_FILES]
    other = [cxr_file(name) for name in NON_CHEST_FILES]
    result = storescu([*chest, *other], port=running_gateway.port)
    assert result.returncode == 0, result.output

    # storescu re-encodes some of these files as it sends them (it drops group lengths and
    # trailing padding), so the reference is what dcmtk's own storescp receives from it.
    reference = ReferenceStoreSCP(tmp_path / "storescp", free_port())
    reference.start()
    try:
        assert storescu([*chest, *other], port=reference.port).returncode == 0
    finally:
        reference.stop()
    for path in chest + other:
        wire = reference.received(sop_instance_uid_of(path))
        assert_spooled_byte_complete(session_factory, running_gateway, path, reference=wire)

    def decided() -> list[Study] | None:
        with session_scope(session_factory) as session:
            studies = list(session.scalars(select(Study)))
        if len(studies) == 5 and all(study.eligible is not None for study in studies):
            return studies
        return None

    studies = wait_until(decided, what="five decided studies")
    by_reason = {study.eligibility_reason or "": study for study in studies}
    eligible = [study for study in studies if study.eligible]
    assert len(eligible) == 3
    assert all(study.status == StudyStatus.QUEUED for study in eligible)
    refused = sorted(r for r, study in by_reason.items() if not study.eligible)
    assert any("HIP is not chest" in reason for reason in refused), refused
    assert any("EXTREMITY is not chest" in reason for reason in refused), refused
    for study in studies:
        assert len(jobs_of(session_factory, study.study_instance_uid)) == (
            1 if study.eligible else 0
        )


def test_ct_study_is_stored_but_not_queued(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    ct = make_chest_study(9, rows=64, columns=64, modality="CT", views=("PA",))[0]
    ct.SOPClassUID = uid.CTImageStorage
    ct.file_meta.MediaStorageSOPClassUID = uid.CTImageStorage
    paths = write_study([ct], tmp_path / "ct")
    assert storescu(paths, port=running_gateway.port).returncode == 0
    wait_until(
        lambda: study_status(session_factory, ct.StudyInstanceUID) == StudyStatus.NOT_ELIGIBLE,
        what="CT study decided",
    )
    assert_spooled_byte_complete(session_factory, running_gateway, paths[0])
    assert jobs_of(session_factory, ct.StudyInstanceUID) == []
    with session_scope(session_factory) as session:
        reason = session.scalar(select(Study.eligibility_reason))
    assert reason is not None
    assert "SOP class CT Image Storage is not a radiograph" in reason


@pytest.mark.parametrize("backend", ["sqlite"])
def test_calling_ae_not_on_allowlist_is_rejected(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    restricted = settings.model_copy(update={"allowed_calling_aes": ["MODALITY1"]})
    gateway = Gateway(restricted, session_factory, publisher)
    gateway.start()
    try:
        files = synthetic_study_files(4, tmp_path / "s")
        refused = storescu(files, port=gateway.port, calling="INTRUDER")
        assert refused.returncode != 0
        assert "Association Rejected" in refused.output
        assert echoscu(port=gateway.port, calling="INTRUDER").returncode != 0
        accepted = storescu(files, port=gateway.port, calling="MODALITY1")
        assert accepted.returncode == 0, accepted.output
        with session_scope(session_factory) as session:
            callers = set(session.scalars(select(Instance.calling_ae_title)))
        assert callers == {"MODALITY1"}
    finally:
        gateway.stop()
