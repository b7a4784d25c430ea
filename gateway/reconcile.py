"""The spool and the database brought back into agreement, after a restore or a lost disk.

The gateway keeps the two in step itself: a file is in the spool before its row commits, and a
purge marks the row as it deletes the file. A restore breaks that. A department that restores
last night's database beside a spool that survived has files of instances the gateway
acknowledged since, with no row: the PACS was told they are stored, yet no study shows them and
nothing drafts them. One that restores an older spool beside a newer database (or lost the
spool's disk) has rows whose files are gone: every read of them (WADO-RS, the previews, the
worker, an SR's evidence) fails for an instance radraft says it holds.

So ``reconcile`` walks both once:

- a file no held row names is recorded again through the intake every C-STORE takes
  (``gateway.intake``), with its checks: a study the restored database lacks is filed, its
  stability timer started and drafted as if it had just arrived; an instance whose row was
  marked purged gets its file back; one that contradicts the restored rows (another patient) is
  refused as the gateway refuses it, with its dispute, and its file kept in ``.unfiled`` inside
  the spool, with the reason, for an administrator;
- a held row whose file is missing is marked purged, under the study's lock, as spool
  retention marks the rows of the files it deletes (``gateway.retention``): the row, its
  study and its reports stay, the instance is answered as unavailable, and a re-send from the
  PACS brings the file back.

A patient correction or an ADT merge made after the backup moved the study's files to names of
the new patient: they are among the files no held row names, and recorded again they contradict
the restored rows, so the study is held as disputed with the files' patient kept for ``radraft
study correct-patient``; the restored rows and their files agree with each other meanwhile.

Each repair is in the audit log, with counts and no identifiers.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.intake import InstanceIntake, ReceivedInstance
from gateway.spool import Spool
from gateway.statuses import StoreStatus
from radraft.db import session_scope
from radraft.dicom_errors import UNREADABLE_DICOM_ERRORS
from radraft.errors import RadraftError
from radraft.logs import log_event
from radraft.models import AuditEntry, Instance, Study

logger = logging.getLogger(__name__)

UNFILED_FOLDER = ".unfiled"
"""Inside the spool: files the intake refused when they were recorded again, kept for an
administrator (nothing radraft was told of may be deleted by a repair)."""
RECOVERY_AE_TITLE = "SPOOL-RECOVERY"
"""The calling AE title recorded for an instance recorded again from its spooled file (the
sender's own is not in the file)."""
FILES_MISSING_ACTION = "instance.files_missing"
"""Audit action: held rows of a study whose files were gone, marked purged."""
RECONCILED_ACTION = "spool.reconciled"
"""Audit action: one reconciliation, with its counts."""


class MostFilesMissingError(RadraftError):
    """Most of the spool's held files are missing: more likely the wrong folder than a loss."""


@dataclass(frozen=True)
class UnfiledFile:
    """A spooled file the intake refused: where it is kept now and why."""

    path: Path
    reason: str


@dataclass
class Reconciliation:
    """What one reconciliation found (and, unless a dry run, did)."""

    files_seen: int = 0
    rows_without_file: int = 0
    studies_without_files: int = 0
    files_without_row: int = 0
    recorded: int = 0
    unfiled: list[UnfiledFile] = field(default_factory=list)

    @property
    def in_agreement(self) -> bool:
        """Nothing was out of step."""
        return not (self.rows_without_file or self.files_without_row)


def spooled_files(spool: Spool) -> Iterator[str]:
    """Relative paths of the spooled instance files, in the two-character folders the spool
    names them in; its own folders (``.purging``, ``.rewriting``, ``.unfiled``) are not held
    instances."""
    for folder in sorted(spool.root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.endswith(".dcm") and entry.is_file():
                yield f"{folder.name}/{entry.name}"


def reconcile(
    factory: sessionmaker[Session],
    spool: Spool,
    intake: InstanceIntake,
    *,
    now: datetime,
    actor: str,
    origin: str | None = None,
    dry_run: bool = False,
    mark_most_missing: bool = False,
) -> Reconciliation:
    """Compare the spool with the held rows and, unless ``dry_run``, repair both ways.

    ``origin``: the DICOMweb root this gateway records with its instances
    (``RADRAFT_DICOMWEB_BASE_URL``, None where unset). Only rows of that origin are this
    spool's: gateways on other hosts keep theirs in their own spools, and their files missing
    here are not missing.

    Raises
    ------
    MostFilesMissingError
        If more than half of this spool's held rows have no file and not
        ``mark_most_missing``: a spool that is not mounted, or the wrong data folder, looks
        like that, and marking them purged would make every image unreadable until re-sent.
    """
    found = Reconciliation()
    files = list(spooled_files(spool))
    found.files_seen = len(files)
    with session_scope(factory) as session:
        held = session.execute(
            select(Instance.spool_path, Instance.study_id, Instance.origin).where(
                Instance.purged_at.is_(None)
            )
        ).all()
    held_paths = {row.spool_path for row in held}
    on_disk = set(files)
    own = [row for row in held if row.origin == origin]
    short = [row for row in own if row.spool_path not in on_disk]
    studies_short = sorted({row.study_id for row in short})
    unrecorded = [relative for relative in files if relative not in held_paths]
    found.files_without_row = len(unrecorded)
    if dry_run:
        found.rows_without_file = len(short)
        found.studies_without_files = len(studies_short)
        return found
    if len(short) * 2 > len(own) and not mark_most_missing:
        raise MostFilesMissingError(
            f"{len(short)} of the {len(own)} instances held in {spool.root} have no file: is "
            "the spool's disk mounted, is this the installation's data folder? If the files "
            "are truly lost, run again with --mark-most-missing"
        )
    for study_id in studies_short:
        marked = _mark_missing(factory, spool, study_id, now=now, actor=actor)
        found.rows_without_file += marked
        found.studies_without_files += 1 if marked else 0
    for relative in unrecorded:
        unfiled = _record_again(spool, intake, relative)
        if unfiled is None:
            found.recorded += 1
        else:
            found.unfiled.append(unfiled)
    if not found.in_agreement:
        _audit_reconciliation(factory, found, now=now, actor=actor)
    log_event(
        logger, "gateway.spool_reconciled", files=found.files_seen,
        rows_without_file=found.rows_without_file, recorded=found.recorded,
        unfiled=len(found.unfiled),
    )  # fmt: skip
    return found


def _mark_missing(
    factory: sessionmaker[Session], spool: Spool, study_id: int, *, now: datetime, actor: str
) -> int:
    """Mark the study's held rows whose files are gone as purged, under its lock (a re-send
    that put a file back meanwhile is seen); returns how many."""
    with session_scope(factory) as session:
        session.execute(select(Study.id).where(Study.id == study_id).with_for_update())
        rows = session.execute(
            select(Instance.id, Instance.spool_path).where(
                Instance.study_id == study_id, Instance.purged_at.is_(None)
            )
        ).all()
        gone = [row.id for row in rows if not spool.path_of(row.spool_path).is_file()]
        if not gone:
            return 0
        session.execute(update(Instance).where(Instance.id.in_(gone)).values(purged_at=now))
        session.add(
            AuditEntry(
                at=now, actor=actor, action=FILES_MISSING_ACTION, object_type="study",
                object_id=str(study_id), details={"files": len(gone)},
            )
        )  # fmt: skip
    return len(gone)


def _record_again(spool: Spool, intake: InstanceIntake, relative: str) -> UnfiledFile | None:
    """Record one spooled file through the intake; None when it was stored, else where it is
    kept and why.

    The file is moved to ``.unfiled`` first and a copy is what the intake takes (it moves the
    file it accepts into place, and removes one it refuses for a conflict): so a refusal keeps
    the bytes, and a file whose spool name is not its identity's (a patient update rewrote it
    in place) is not left behind under the old name once stored under its own.
    """
    unfiled_dir = spool.root / UNFILED_FOLDER
    unfiled_dir.mkdir(exist_ok=True)
    kept = unfiled_dir / Path(relative).name
    os.replace(spool.path_of(relative), kept)
    try:
        header = dcmread(
            kept, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
        )
        sop_class = str(header.get("SOPClassUID", ""))
        sop_instance = str(header.get("SOPInstanceUID", ""))
    except UNREADABLE_DICOM_ERRORS as error:
        return UnfiledFile(kept, f"not a readable DICOM file: {type(error).__name__}")
    copy = spool.incoming / f"recovery-{uuid.uuid4().hex}.dcm"
    try:
        shutil.copyfile(kept, copy)
    except OSError as error:  # a full disk: the file stays kept, the run goes on
        copy.unlink(missing_ok=True)
        return UnfiledFile(kept, f"cannot copy it for the intake: {error.strerror}")
    outcome = intake.accept(ReceivedInstance(copy, RECOVERY_AE_TITLE, sop_class, sop_instance))
    copy.unlink(missing_ok=True)  # a refused copy may still be there
    if outcome.status != StoreStatus.SUCCESS:
        return UnfiledFile(kept, outcome.comment or outcome.status.name)
    kept.unlink()
    return None


def _audit_reconciliation(
    factory: sessionmaker[Session], found: Reconciliation, *, now: datetime, actor: str
) -> None:
    with session_scope(factory) as session:
        session.add(
            AuditEntry(
                at=now, actor=actor, action=RECONCILED_ACTION, object_type="spool", object_id="*",
                details={
                    "files": found.files_seen, "rows_without_file": found.rows_without_file,
                    "recorded": found.recorded, "unfiled": len(found.unfiled),
                },
            )
        )  # fmt: skip
