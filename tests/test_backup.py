"""Backup and restore of a whole installation, and the spool reconciled with its database.

The disaster these tests stage is the one a department meets: the database is lost (its disk,
a bad migration) and restored from the last backup, beside a spool that kept the images the
gateway acknowledged since; or a spool file is gone that the database still names. Real
storescu senders, real gateways, the ``radraft`` command as an operator runs it, on SQLite and
Postgres (``pg_dump`` / ``pg_restore``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from gateway.header import parse_instance_header
from gateway.identity import identity_key
from gateway.reconcile import (
    FILES_MISSING_ACTION,
    RECONCILED_ACTION,
    RECOVERY_AE_TITLE,
    UNFILED_FOLDER,
)
from gateway.service import Gateway
from gateway.spool import spool_relative_path
from radraft.db import session_scope
from radraft.enums import AuditAction, OutboxChannel, ReportState
from radraft.models import (
    AuditEntry,
    DraftingJob,
    Instance,
    OutboxMessage,
    ReportRevision,
    RestoreRecord,
    Study,
)
from radraft.restore_epochs import outbox_epoch
from radraft.settings import MllpDestination, Settings
from radraft.synthetic import make_chest_study
from reporting.delivery.outputs import load_bundle, revision_key
from reporting.delivery.relay import oru_control_id
from reporting.sr import sr_instance_uid
from reporting.web.app import create_app
from tests.conftest import RecordingPublisher
from tests.dicom_peers import storescu, synthetic_study_files, write_study
from tests.gateway.conftest import order_port_gateway
from tests.gateway.test_orders import exchange, framed, msa
from tests.gateway.test_patient_merges import MERGE, TEMPORARY
from tests.gateway.test_retention import receive_studies, study_id_of
from tests.processes import radraft_command
from tests.reporting.factories import add_revision, drafted_study
from tests.support import wait_until


def lose_database(settings: Settings, engine: Engine) -> None:
    """The database is gone: the SQLite file deleted, or every table of the Postgres database."""
    engine.dispose()
    if settings.effective_database_url.startswith("sqlite"):
        database = Path(settings.effective_database_url.removeprefix("sqlite:///"))
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            path.unlink(missing_ok=True)
        return
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def database_kind(backend: str) -> str:
    return "sqlite" if backend == "sqlite" else "postgresql"


def digests(folder: Path) -> dict[str, str]:
    """Each spooled file's relative path and content digest."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*.dcm")
        if not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }


def instances_of(
    factory: sessionmaker[Session], study_uid: str
) -> dict[str, tuple[str | None, bool]]:
    """SOP Instance UID -> (calling AE title, whether its file is held) of a study."""
    with session_scope(factory) as session:
        rows = session.execute(
            select(Instance.sop_instance_uid, Instance.calling_ae_title, Instance.purged_at)
            .join(Study, Study.id == Instance.study_id)
            .where(Study.study_instance_uid == study_uid)
        ).all()
    return {row[0]: (row[1], row[2] is None) for row in rows}


def study_uid(files: list[Path]) -> str:
    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def audit_rows(factory: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with session_scope(factory) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_a_restore_records_again_the_images_acknowledged_after_the_backup(
    backend: str,
    settings: Settings,
    session_factory: sessionmaker[Session],
    engine: Engine,
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    gateway = Gateway(settings, session_factory, publisher)
    gateway.start()
    try:
        before = receive_studies(gateway, session_factory, tmp_path, 701)
        backup = tmp_path / "backup"
        made = radraft_command(settings, "backup", "create", str(backup))
        assert made.returncode == 0, made.stderr
        assert "2 files" in made.stdout
        after = synthetic_study_files(702, tmp_path / "702", size=64)
        assert storescu(after, port=gateway.port).returncode == 0
        wait_until(lambda: len(publisher.published) == 2, what="both studies queued")
    finally:
        gateway.stop()
    [created] = audit_rows(session_factory, AuditAction.BACKUP_CREATED)
    assert created.actor == "cli:operator"
    assert created.details is not None
    assert created.details == {"kind": "full", "database": database_kind(backend), "files": 2,
                               "bytes": created.details["bytes"], "linked": 0,
                               "missing": 0}  # fmt: skip
    with TestClient(create_app(settings)) as client:
        metrics = client.get("/metrics", headers={"Authorization": "Bearer test-service-token"})
    newest = {line.split()[0]: float(line.split()[1]) for line in metrics.text.splitlines()
              if line.startswith("radraft_last_backup_timestamp_seconds")}  # fmt: skip
    assert abs(newest['radraft_last_backup_timestamp_seconds{kind="full"}']
               - created.at.timestamp()) < 1  # fmt: skip
    assert newest['radraft_last_backup_timestamp_seconds{kind="files_only"}'] == 0
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["files"] == 2
    assert manifest["missing"] == []
    assert manifest["schema_revision"]
    assert len(digests(backup / "spool")) == 2, "only the files of rows in the snapshot"
    database_copy = backup / ("radraft.db" if backend == "sqlite" else "radraft.pgdump")
    for private in (backup, backup / "manifest.json", backup / "spool", database_copy):
        assert private.stat().st_mode & 0o077 == 0, f"{private.name} is the owner's only"
    spool_before = digests(settings.spool_dir)

    lose_database(settings, engine)
    restored = radraft_command(settings, "backup", "restore", str(backup), "--by", "pacs-admin")
    assert restored.returncode == 0, restored.stderr
    assert "0 files copied back, 2 already in the spool" in restored.stdout
    assert "2 without a held row (2 recorded, 0 refused)" in restored.stdout

    assert digests(settings.spool_dir) == spool_before, "the spool's files are as they were"
    first = instances_of(session_factory, study_uid(before[701]))
    late = instances_of(session_factory, study_uid(after))
    assert len(first) == 2
    assert all(held for _, held in first.values())
    assert sorted(late.values()) == [(RECOVERY_AE_TITLE, True)] * 2
    [reconciled] = audit_rows(session_factory, RECONCILED_ACTION)
    assert reconciled.actor == "cli:pacs-admin"
    [restored_row] = audit_rows(session_factory, AuditAction.BACKUP_RESTORED)
    assert restored_row.actor == "cli:pacs-admin"
    assert restored_row.details == {"backup_created_at": manifest["created_at"],
                                    "database": database_kind(backend)}  # fmt: skip
    assert reconciled.details == {
        "files": 4, "rows_without_file": 0, "recorded": 2, "unfiled": 0,
    }  # fmt: skip

    publisher.published.clear()
    restarted = Gateway(settings, session_factory, publisher)
    restarted.start()
    try:
        wait_until(lambda: publisher.published, what="the study recorded again to be queued")
        with session_scope(session_factory) as session:
            late_study = session.scalars(
                select(Study.id).where(Study.study_instance_uid == study_uid(after))
            ).one()
            queued = session.scalars(
                select(DraftingJob.study_id).where(
                    DraftingJob.id.in_([message.args[0] for message in publisher.published])
                )
            ).all()
        assert list(queued) == [late_study]
    finally:
        restarted.stop()


def test_a_row_whose_file_is_gone_is_marked_purged_and_a_resend_brings_it_back(
    running_gateway: Gateway,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    sent = receive_studies(running_gateway, session_factory, tmp_path, 711)
    study = study_uid(sent[711])
    lost_uid = str(dcmread(sent[711][0], stop_before_pixels=True).SOPInstanceUID)
    with session_scope(session_factory) as session:
        lost_path = session.scalars(
            select(Instance.spool_path).where(Instance.sop_instance_uid == lost_uid)
        ).one()
    running_gateway.spool.path_of(lost_path).unlink()

    dry = radraft_command(settings, "spool", "reconcile", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "1 rows of 1 studies without their file would be marked purged" in dry.stdout
    assert instances_of(session_factory, study)[lost_uid][1], "a dry run changes nothing"

    real = radraft_command(settings, "spool", "reconcile", "--by", "pacs-admin")
    assert real.returncode == 0, real.stderr
    assert "1 rows of 1 studies without their file were marked purged" in real.stdout
    held = instances_of(session_factory, study)
    assert not held[lost_uid][1]
    assert sum(h for _, h in held.values()) == 1
    [missing] = audit_rows(session_factory, FILES_MISSING_ACTION)
    assert missing.details == {"files": 1}
    assert missing.object_id == str(study_id_of(session_factory, sent[711]))

    assert storescu(sent[711][:1], port=running_gateway.port).returncode == 0
    assert instances_of(session_factory, study)[lost_uid][1], "the re-send brought it back"
    assert running_gateway.spool.path_of(lost_path).is_file()
    again = radraft_command(settings, "spool", "reconcile")
    assert "0 without a held row" in again.stdout
    assert "0 rows of 0 studies" in again.stdout


def test_a_merge_the_restored_database_lost_holds_the_study_under_the_files_patient(
    settings: Settings,
    session_factory: sessionmaker[Session],
    engine: Engine,
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    """The backup has the study under a temporary number; an ADT merge after it moved the
    files to the surviving MRN's names. Restored, the rows name TEMP-9, the backup's files come
    back beside the merged ones, and those contradict the rows: its reports would leave under
    a number the RIS no longer files by. It is held instead, with the merged files' patient
    kept for ``radraft study correct-patient`` and their files kept apart."""
    files = write_study(make_chest_study(741, rows=64, columns=64, patient=TEMPORARY),
                        tmp_path / "study")  # fmt: skip
    backup = tmp_path / "backup"
    with order_port_gateway(
        settings, session_factory, publisher, hl7_patient_merges=True
    ) as gateway:
        assert storescu(files, port=gateway.port).returncode == 0
        assert radraft_command(settings, "backup", "create", str(backup)).returncode == 0
        assert gateway.order_listener is not None
        code, _, text = msa(exchange(gateway.order_listener.port, framed(MERGE, "utf-8")))
        assert (code, text) == ("AA", "merged 1 studies")

    lose_database(settings, engine)
    restored = radraft_command(settings, "backup", "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "2 files copied back" in restored.stdout, "the merge had moved them"
    assert "2 without a held row (0 recorded, 2 refused)" in restored.stdout
    with session_scope(session_factory) as session:
        study = session.scalars(select(Study)).one()
        assert study.patient_id == TEMPORARY.patient_id
        assert study.identity_disputed_at is not None
        assert (study.claimed_patient or {}).get("patient_id") == "MRN-42"
        held = session.scalars(select(Instance.spool_path)).all()
    assert [dcmread(settings.spool_dir / path).PatientID for path in held] == ["TEMP-9"] * 2
    unfiled = sorted((settings.spool_dir / UNFILED_FOLDER).iterdir())
    assert [dcmread(path).PatientID for path in unfiled] == ["MRN-42"] * 2
    again = radraft_command(settings, "spool", "reconcile")
    assert "2 spooled files; 0 without a held row" in again.stdout, "unfiled files stay apart"
    said = restored.stdout + restored.stderr + again.stdout + again.stderr
    assert not any(value in said for value in ("TEMP-9", "MRN-42", "TRAUMA", "Müller")), "no PHI"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_file_the_intake_refuses_is_kept_unfiled_with_its_reason(
    running_gateway: Gateway,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """A spooled copy of the study's image under another Patient ID (a conflict the restored
    rows contradict) and a file that is not DICOM: both refused, both kept, nothing deleted."""
    sent = receive_studies(running_gateway, session_factory, tmp_path, 721)
    other = dcmread(sent[721][0])
    other.PatientID = "OTHER-721"
    claimed = parse_instance_header(sent[721][0])
    other_path = tmp_path / "other.dcm"
    other.save_as(other_path, enforce_file_format=True)
    relative = spool_relative_path(identity_key(parse_instance_header(other_path)))
    assert relative != spool_relative_path(identity_key(claimed))
    conflicting = running_gateway.spool.path_of(relative)
    conflicting.parent.mkdir(exist_ok=True)
    conflicting.write_bytes(other_path.read_bytes())
    garbage = running_gateway.spool.path_of("00/" + "0" * 64 + ".dcm")
    garbage.parent.mkdir(exist_ok=True)
    garbage.write_bytes(b"not a DICOM file")

    result = radraft_command(settings, "spool", "reconcile")
    assert result.returncode == 0, result.stderr
    assert "2 without a held row (0 recorded, 2 refused)" in result.stdout
    unfiled = settings.spool_dir / UNFILED_FOLDER
    assert sorted(path.name for path in unfiled.iterdir()) == sorted(
        [conflicting.name, garbage.name]
    )
    assert (unfiled / conflicting.name).read_bytes() == other_path.read_bytes()
    assert "not a readable DICOM file" in result.stdout
    assert "SOP Instance UID known with other Patient ID" in result.stdout
    assert not conflicting.exists()
    assert not garbage.exists()
    held = instances_of(session_factory, study_uid(sent[721]))
    assert [ae for ae, _ in held.values()] == ["STORESCU", "STORESCU"]
    with session_scope(session_factory) as session:
        disputed = session.scalars(
            select(Study.identity_disputed_at).where(
                Study.study_instance_uid == study_uid(sent[721])
            )
        ).one()
    assert disputed is not None, "as when the gateway refuses such a copy: held for an admin"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_backup_goes_to_a_new_folder_and_a_restore_waits_for_stopped_services(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    backup = tmp_path / "backup"
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        receive_studies(gateway, session_factory, tmp_path, 731)
        taken = tmp_path / "taken"
        taken.mkdir()
        (taken / "something").write_text("x")
        refused = radraft_command(settings, "backup", "create", str(taken))
        assert refused.returncode == 2
        assert "is not an empty folder" in refused.stderr
        assert radraft_command(settings, "backup", "create", str(backup)).returncode == 0
        serving = radraft_command(settings, "backup", "restore", str(backup), "--replace")
        assert serving.returncode == 2
        assert f"the gateway answers on 127.0.0.1:{gateway.port}: stop the services" in (
            serving.stderr
        )
    kept = radraft_command(settings, "backup", "restore", str(backup))
    assert kept.returncode == 2
    assert "holds instances: give --replace" in kept.stderr
    (backup / "manifest.json").write_text("{not json")
    garbled = radraft_command(settings, "backup", "restore", str(backup), "--replace")
    assert garbled.returncode == 2
    assert "manifest.json cannot be read: JSONDecodeError" in garbled.stderr
    (backup / "manifest.json").unlink()
    unfinished = radraft_command(settings, "backup", "restore", str(backup), "--replace")
    assert unfinished.returncode == 2
    assert "not a finished radraft backup" in unfinished.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_file_gone_while_the_backup_copied_is_listed_and_its_row_purged_on_restore(
    settings: Settings,
    session_factory: sessionmaker[Session],
    engine: Engine,
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    """A held row whose file is not there when the backup copies it (a retention purge between
    the snapshot and the copy, or a file lost before): the manifest names it, and the restored
    row says purged, so readers answer that the image is gone instead of failing."""
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        sent = receive_studies(gateway, session_factory, tmp_path, 751)
        lost_uid = str(dcmread(sent[751][1], stop_before_pixels=True).SOPInstanceUID)
        with session_scope(session_factory) as session:
            lost_path = session.scalars(
                select(Instance.spool_path).where(Instance.sop_instance_uid == lost_uid)
            ).one()
        gateway.spool.path_of(lost_path).unlink()
        backup = tmp_path / "backup"
        made = radraft_command(settings, "backup", "create", str(backup))
        assert made.returncode == 0, made.stderr
        assert "1 files, " in made.stdout
        assert "1 files purged while copied" in made.stdout
        assert json.loads((backup / "manifest.json").read_text())["missing"] == [lost_path]
        assert len(digests(backup / "spool")) == 1, "no empty copy of the file that was gone"

    lose_database(settings, engine)
    restored = radraft_command(settings, "backup", "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "1 rows of 1 studies without their file were marked purged" in restored.stdout
    held = instances_of(session_factory, study_uid(sent[751]))
    assert held[lost_uid] == ("STORESCU", False)
    assert sum(is_held for _, is_held in held.values()) == 1


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_files_only_backup_beside_the_departments_own_dump(
    settings: Settings,
    session_factory: sessionmaker[Session],
    engine: Engine,
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    """The department dumps Postgres with its own tool (as on the compose stack, with the
    server container's pg_dump), then radraft copies the files; after the loss it restores the
    dump with its own tool, and radraft the files: the spool lost too, every file comes back."""
    libpq = make_url(settings.effective_database_url).set(drivername="postgresql")
    dsn = libpq.render_as_string(hide_password=False)
    dump = tmp_path / "department.pgdump"
    backup = tmp_path / "backup"
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        sent = receive_studies(gateway, session_factory, tmp_path, 761, 762)
        subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", f"--dbname={dsn}"],
                       check=True, timeout=120)  # fmt: skip
        made = radraft_command(settings, "backup", "create", "--files-only", str(backup))
        assert made.returncode == 0, made.stderr
        assert "database not included" in made.stdout
        assert "4 files" in made.stdout
        with TestClient(create_app(settings)) as client:
            metrics = client.get("/metrics", headers={"Authorization": "Bearer test-service-token"})
        assert 'radraft_last_backup_timestamp_seconds{kind="full"} 0' in metrics.text
        assert 'radraft_last_backup_timestamp_seconds{kind="files_only"} 0' not in metrics.text
    assert not (backup / "radraft.db").exists()
    assert not (backup / "radraft.pgdump").exists()
    spool_before = digests(settings.spool_dir)

    lose_database(settings, engine)
    shutil.rmtree(settings.spool_dir)
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={dsn}", str(dump)], check=True,
                   timeout=120)  # fmt: skip
    restored = radraft_command(settings, "backup", "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "database not included, 4 files copied back, 0 already in the spool" in restored.stdout
    assert "4 spooled files; 0 without a held row" in restored.stdout
    assert digests(settings.spool_dir) == spool_before
    for files in sent.values():
        assert all(held for _, held in instances_of(session_factory, study_uid(files)).values())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_files_of_other_gateway_hosts_are_not_missing_and_a_spool_not_there_stops_a_run(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    """Gateways on several hosts share the database, each with its own spool, recording its
    DICOMweb root as the instances' origin: the instances another host received are not this
    spool's, so neither a reconciliation nor a backup here calls their files missing. And a
    spool that has lost most of its files (not mounted, the wrong data folder) stops the run
    before it marks anything, unless the operator says the files are truly gone."""
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        sent = receive_studies(gateway, session_factory, tmp_path, 771, 772)
    elsewhere = study_id_of(session_factory, sent[772])
    with session_scope(session_factory) as session:
        session.execute(
            update(Instance)
            .where(Instance.study_id == elsewhere)
            .values(origin="https://gateway-2.example/dicomweb")
        )
        for path in session.scalars(select(Instance.spool_path).where(
                Instance.study_id == elsewhere)):  # fmt: skip
            (settings.spool_dir / path).unlink()
    checked = radraft_command(settings, "spool", "reconcile")
    assert checked.returncode == 0, checked.stderr
    assert "0 rows of 0 studies without their file were marked purged" in checked.stdout
    made = radraft_command(settings, "backup", "create", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stderr
    assert "2 files, " in made.stdout
    assert "0 files purged while copied" in made.stdout

    for spooled in settings.spool_dir.rglob("*.dcm"):
        spooled.unlink()
    stopped = radraft_command(settings, "spool", "reconcile")
    assert stopped.returncode == 2
    assert "2 of the 2 instances held in" in stopped.stderr
    assert "is the spool's disk mounted" in stopped.stderr
    assert all(held for _, held in instances_of(session_factory, study_uid(sent[771])).values())
    lost = radraft_command(settings, "spool", "reconcile", "--mark-most-missing")
    assert lost.returncode == 0, lost.stderr
    assert "2 rows of 1 studies without their file were marked purged" in lost.stdout
    assert not any(held for _, held in instances_of(session_factory, study_uid(sent[771])).values())
    assert all(held for _, held in instances_of(session_factory, study_uid(sent[772])).values())


RIS = MllpDestination("ris.example", 2575)


def _sr_uid(factory: sessionmaker[Session], settings: Settings, revision_id: int) -> str:
    with session_scope(factory) as session:
        bundle = load_bundle(session, revision_id, spool_dir=settings.spool_dir)
        key = revision_key(revision_id, bundle.study, bundle.restore_boundaries)
        return sr_instance_uid(bundle.study.study_instance_uid, key)


def _new_revision(factory: sessionmaker[Session], text: str) -> tuple[int, int, str]:
    """A new draft of the study: its number, its ORU row's and that row's MSH-10."""
    with session_scope(factory) as session:
        study = session.scalars(select(Study)).one()
        revision = add_revision(session, study, ReportState.DRAFTED, model=True,
                                findings=text, impression=text)  # fmt: skip
        row = session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.channel == OutboxChannel.HL7)
            .order_by(OutboxMessage.id.desc())
        ).first()
        assert row is not None
        control = oru_control_id(row, RIS, outbox_epoch(session, row))
        return revision.id, row, control


def test_after_a_restore_a_new_report_never_takes_the_uid_of_one_the_restore_lost(
    settings: Settings, session_factory: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    """SR SOP Instance UIDs come from the study and the revision's number, ORU control IDs from
    the outbox row's: a restore forgets the rows made after the backup and numbers new ones the
    same. The PACS already holds the lost revision's SR and files a known UID once, so the new
    report would silently not replace it. Rows numbered past a restore carry it in their
    identifiers; rows the backup held keep theirs."""
    with session_scope(session_factory) as session:
        drafted_study(session, "1.2.826.0.1.3680043.10.543.781")
    kept_revision, kept_row, kept_control = _new_revision(session_factory, "Lungs are clear.")
    kept_uid = _sr_uid(session_factory, settings, kept_revision)
    backup = tmp_path / "backup"
    assert radraft_command(settings, "backup", "create", str(backup)).returncode == 0
    lost_revision, lost_row, lost_control = _new_revision(session_factory, "Left effusion.")
    lost_uid = _sr_uid(session_factory, settings, lost_revision)

    lose_database(settings, engine)
    restored = radraft_command(settings, "backup", "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    new_revision, new_row, new_control = _new_revision(session_factory, "No effusion.")
    assert (new_revision, new_row) == (lost_revision, lost_row), "the numbers came again"
    assert _sr_uid(session_factory, settings, new_revision) != lost_uid
    assert new_control != lost_control
    assert _sr_uid(session_factory, settings, kept_revision) == kept_uid, "held rows keep theirs"
    with session_scope(session_factory) as session:
        [restore] = session.scalars(select(RestoreRecord)).all()
        assert restore.revision_boundary == kept_revision
        assert restore.outbox_boundary < new_row
        again = oru_control_id(kept_row, RIS, outbox_epoch(session, kept_row))
    assert again == kept_control, "a held row's retry keeps its control ID"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_restore_made_with_another_tool_is_recorded_by_backup_restored(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    with session_scope(session_factory) as session:
        drafted_study(session, "1.2.826.0.1.3680043.10.543.791")
    recorded = radraft_command(settings, "backup", "restored", "--by", "dba")
    assert recorded.returncode == 0, recorded.stderr
    assert "restore recorded" in recorded.stdout
    with session_scope(session_factory) as session:
        [restore] = session.scalars(select(RestoreRecord)).all()
        newest = session.scalar(select(func.max(ReportRevision.id)))
    assert restore.revision_boundary == newest
    [row] = audit_rows(session_factory, AuditAction.BACKUP_RESTORED)
    assert row.actor == "cli:dba"
    assert radraft_command(settings, "backup", "restored").returncode == 2, "--by is required"
