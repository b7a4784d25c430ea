"""A backup read back: damaged, missing and planted files found by ``radraft backup verify``, and
never restored as if they were the images the PACS sent.

Real gateways receive from storescu; the backups are made, checked and restored with the
``radraft`` command, on SQLite and Postgres (``pg_dump``, ``pg_restore --list``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from radraft.db import session_scope
from radraft.models import Instance, RestoreRecord, Study
from radraft.settings import Settings
from tests.conftest import RecordingPublisher
from tests.dicom_peers import storescu, synthetic_study_files
from tests.gateway.conftest import order_port_gateway
from tests.gateway.test_retention import receive_studies
from tests.processes import radraft_command
from tests.test_backup import digests, lose_database


def flip_a_byte(path: Path) -> None:
    """One bit of rot in the middle of the file (its size unchanged)."""
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))


def held_by_path(factory: sessionmaker[Session]) -> dict[str, bool]:
    """Each instance's spool path and whether its file is held."""
    with session_scope(factory) as session:
        rows = session.execute(select(Instance.spool_path, Instance.purged_at)).all()
    return {path: purged is None for path, purged in rows}


def test_a_damaged_or_planted_file_is_found_by_verify_and_never_restored(
    settings: Settings,
    session_factory: sessionmaker[Session],
    engine: Engine,
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    backup = tmp_path / "backup"
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        sent = receive_studies(gateway, session_factory, tmp_path, 771, 772)
        made = radraft_command(settings, "backup", "create", str(backup))
        assert made.returncode == 0, made.stderr
    manifest = json.loads((backup / "manifest.json").read_text())
    spooled = sorted(name for name in manifest["digests"] if name.startswith("spool/"))
    assert len(spooled) == 4
    assert set(manifest["digests"]) >= {*spooled, "radraft.db" if settings.effective_database_url
                                        .startswith("sqlite") else "radraft.pgdump"}  # fmt: skip

    good = radraft_command(settings, "backup", "verify", str(backup))
    assert good.returncode == 0, good.stderr
    assert f"{len(manifest['digests'])} files intact, 0 damaged, 0 missing" in good.stdout
    assert "database: ok" in good.stdout

    damaged, lost = spooled[0], spooled[2]
    flip_a_byte(backup / damaged)
    (backup / lost).unlink()  # a copy off the host cut short
    planted = backup / "spool" / "zz" / "planted.dcm"  # a valid image, not the backup's
    planted.parent.mkdir()
    shutil.copyfile(sent[771][0], planted)
    bad = radraft_command(settings, "backup", "verify", str(backup))
    assert bad.returncode == 1
    assert "1 damaged, 1 missing, 1 not in the manifest; database: ok" in bad.stdout
    assert f"damaged: {damaged}" in bad.stdout
    assert f"missing: {lost}" in bad.stdout
    assert "not in the manifest: spool/zz/planted.dcm" in bad.stdout
    assert "cannot be restored whole" in bad.stderr

    # The disk under the spool and the database is replaced; a restore interrupted on it before
    # left a partial copy behind.
    lose_database(settings, engine)
    shutil.rmtree(settings.spool_dir)
    leftover = settings.spool_dir / spooled[1].removeprefix("spool/")
    leftover.parent.mkdir(parents=True)
    leftover.with_suffix(".restoring").write_bytes(b"half an image")

    restored = radraft_command(settings, "backup", "restore", str(backup))
    assert restored.returncode == 1
    assert "2 files copied back, 0 already in the spool" in restored.stdout
    assert re.search(
        r"2 rows of [12] studies without their file were marked purged", restored.stdout
    )
    assert "3 backed-up files differ from the manifest (damaged, missing, or put" in (
        restored.stderr
    )
    assert all(name in restored.stderr for name in (damaged, lost, "spool/zz/planted.dcm"))
    intact = [name for name in spooled if name not in (damaged, lost)]
    in_spool = digests(settings.spool_dir)
    assert set(in_spool) == {name.removeprefix("spool/") for name in intact}
    assert all(in_spool[name.removeprefix("spool/")] == manifest["digests"][name]
               for name in intact)  # fmt: skip
    assert not list(settings.spool_dir.rglob("*.restoring")), "no partial copy is left"
    assert held_by_path(session_factory) == {
        name.removeprefix("spool/"): name in intact for name in spooled
    }, "the damaged and lost files' instances say purged (re-send them); the planted is none"


def test_a_damaged_database_is_never_restored_over_the_one_in_use(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    backup = tmp_path / "backup"
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        receive_studies(gateway, session_factory, tmp_path, 781)
        assert radraft_command(settings, "backup", "create", str(backup)).returncode == 0
        later = synthetic_study_files(782, tmp_path / "782", size=64)
        assert storescu(later, port=gateway.port).returncode == 0
    [database] = [name for name in ("radraft.db", "radraft.pgdump") if (backup / name).exists()]
    flip_a_byte(backup / database)

    checked = radraft_command(settings, "backup", "verify", str(backup))
    assert checked.returncode == 1
    assert f"database: {database} is damaged" in checked.stdout

    refused = radraft_command(settings, "backup", "restore", str(backup), "--replace")
    assert refused.returncode == 2
    assert f"the backup's database ({database}) is damaged" in refused.stderr
    assert "Restore an older backup" in refused.stderr
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 2, "nothing replaced"
        assert session.scalar(select(func.count()).select_from(Instance)) == 4
        assert session.scalar(select(func.count()).select_from(RestoreRecord)) == 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_backup_made_before_digests_were_kept_still_restores(
    settings: Settings,
    session_factory: sessionmaker[Session],
    engine: Engine,
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    backup = tmp_path / "backup"
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        receive_studies(gateway, session_factory, tmp_path, 791)
        assert radraft_command(settings, "backup", "create", str(backup)).returncode == 0
    manifest = json.loads((backup / "manifest.json").read_text())
    del manifest["digests"]
    (backup / "manifest.json").write_text(json.dumps(manifest))

    checked = radraft_command(settings, "backup", "verify", str(backup))
    assert checked.returncode == 0, checked.stderr
    assert "0 files intact, 0 damaged, 0 missing, 0 not in the manifest" in checked.stdout
    assert "3 files not checked: the backup was made before" in checked.stdout
    assert "database: ok" in checked.stdout  # SQLite's integrity check, without a digest

    lose_database(settings, engine)
    shutil.rmtree(settings.spool_dir)
    restored = radraft_command(settings, "backup", "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "2 files copied back" in restored.stdout
    assert held_by_path(session_factory) == dict.fromkeys(digests(settings.spool_dir), True)
    assert len(digests(settings.spool_dir)) == 2


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_backup_links_the_unchanged_copies_of_the_previous_one_and_restores_whole(
    settings: Settings,
    session_factory: sessionmaker[Session],
    engine: Engine,
    publisher: RecordingPublisher,
    tmp_path: Path,
) -> None:
    """A nightly backup with ``--link-dest`` takes the space of what changed; a copy in the
    previous backup damaged since is not taken over."""
    monday, tuesday = tmp_path / "monday", tmp_path / "tuesday"
    with order_port_gateway(settings, session_factory, publisher) as gateway:
        receive_studies(gateway, session_factory, tmp_path, 801, 802)
        assert radraft_command(settings, "backup", "create", str(monday)).returncode == 0
        later = synthetic_study_files(803, tmp_path / "803", size=64)
        assert storescu(later, port=gateway.port).returncode == 0
    before = sorted(name for name in digests(monday / "spool"))
    rotten = before[0]
    flip_a_byte(monday / "spool" / rotten)

    made = radraft_command(
        settings, "backup", "create", str(tuesday), "--link-dest", str(monday), "--by", "cron"
    )
    assert made.returncode == 0, made.stderr
    assert "6 files, " in made.stdout
    assert f"3 files linked to {monday}" in made.stdout
    for name in before:
        old, new = (monday / "spool" / name).stat(), (tuesday / "spool" / name).stat()
        assert (old.st_ino == new.st_ino) == (name != rotten), name
    assert (tuesday / "spool" / rotten).stat().st_mode & 0o777 == 0o600
    assert json.loads((tuesday / "manifest.json").read_text())["linked"] == 3

    checked = radraft_command(settings, "backup", "verify", str(tuesday))
    assert checked.returncode == 0, checked.stdout
    assert "0 damaged, 0 missing, 0 not in the manifest; database: ok" in checked.stdout

    lose_database(settings, engine)
    shutil.rmtree(settings.spool_dir)
    restored = radraft_command(settings, "backup", "restore", str(tuesday))
    assert restored.returncode == 0, restored.stderr
    assert "6 files copied back" in restored.stdout
    assert held_by_path(session_factory) == dict.fromkeys(digests(tuesday / "spool"), True)
    assert digests(settings.spool_dir) == digests(tuesday / "spool")

    nowhere = radraft_command(
        settings, "backup", "create", str(tmp_path / "w"), "--link-dest", str(tmp_path / "none")
    )
    assert nowhere.returncode == 2
    assert "not a finished radraft backup" in nowhere.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    "digests_listed",
    [{"../../outside.dcm": "00"}, {"/etc/hostname": "00"}, ["spool/a.dcm"], {"spool/a.dcm": 1}],
    ids=["parent", "absolute", "not a mapping", "not a digest"],
)
def test_a_manifest_naming_files_outside_the_backup_is_refused(
    digests_listed: object, settings: Settings, tmp_path: Path
) -> None:
    """The manifest comes from storage radraft does not control."""
    backup = tmp_path / "backup"
    assert radraft_command(settings, "backup", "create", str(backup)).returncode == 0
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["digests"] = digests_listed
    (backup / "manifest.json").write_text(json.dumps(manifest))
    for arguments in (("verify", str(backup)), ("restore", str(backup), "--replace")):
        refused = radraft_command(settings, "backup", *arguments)
        assert refused.returncode == 2, (arguments, refused.stderr)
        assert "lists files outside the backup or is garbled" in refused.stderr
        assert "Traceback" not in refused.stderr
