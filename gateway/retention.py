"""Spool retention: delete the files of settled studies nobody touched for the retention period.

radraft is not the archive (the PACS that sent a study keeps it), but its spool kept every file
for ever, so a busy department filled its disk and the gateway then refused every instance.
With ``RADRAFT_SPOOL_RETENTION_DAYS`` set, the full gateway purges, every janitor round, each
study that is settled (signed, amended, not eligible, or withdrawn), not disputed, has no
drafting job or SR on its way, is not a case a timing study still has reads of to do, and
saw nothing for that many days: no instance received or re-sent, no report revision. Only
files go; the rows stay (``Instance.purged_at``), so the worklist, the reports, the audit trail
and an amendment's SR evidence still name every instance, and DICOMweb and the previews answer
410 Gone for them.

A PACS may re-send an instance while its study is purged. Both sides take the study's row lock
(SQLite: the database's write lock): the purge moves each file aside, marks the rows and commits
under it, and the gateway records a re-sent instance under it. A re-send whose file the purge
moved aside between the gateway's rename and its lock finds its row purged and its file gone,
and is refused (0xA700, send again) instead of acknowledged; one recorded after the purge
committed brings its file and row back. The purge moves files aside, never deletes them, until
its rows commit, so a failed commit puts every file back, and files left aside by a crash are
put back or dropped by what the rows say when the gateway starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.spool import Spool
from radraft.db import session_scope
from radraft.enums import JobStatus, OutboxChannel, OutboxStatus, ReadStatus, StudyStatus
from radraft.logs import log_event
from radraft.models import (
    AuditEntry,
    DraftingJob,
    Instance,
    OutboxMessage,
    Report,
    ReportRevision,
    Study,
    StudyCase,
    StudyRead,
)

logger = logging.getLogger(__name__)

PURGED_ACTION = "spool.purged"
"""The audit action of one study's purge (the study's id, how many files, how many bytes)."""
SETTLED_STATUSES = (StudyStatus.FINAL, StudyStatus.AMENDED, StudyStatus.NOT_ELIGIBLE)
"""Studies whose images radraft no longer needs: the report is signed, or none will be written.
A withdrawn study (another patient's copy) is settled whatever its status."""
STUDIES_PER_ROUND = 200
"""Studies purged by one round at most, so a first round after years of files ends in minutes
and leaves the database to the gateway between rounds."""


@dataclass(frozen=True)
class PurgedStudy:
    """One study whose files a purge deleted."""

    study_id: int
    files: int
    bytes: int


@dataclass(frozen=True)
class RetentionRound:
    """What one round did: the studies purged, and whether more were waiting past the bound."""

    purged: tuple[PurgedStudy, ...]
    more_waiting: bool

    @property
    def files(self) -> int:
        """Files deleted in this round."""
        return sum(study.files for study in self.purged)

    @property
    def bytes(self) -> int:
        """Bytes freed in this round."""
        return sum(study.bytes for study in self.purged)


@dataclass(frozen=True)
class RetentionRule:
    """Which studies' files may go: idle since ``cutoff``; ``sr_deliveries``: SRs are sent to a
    PACS (``RADRAFT_SR_DESTINATION``), so one waiting to be built holds its study's files."""

    cutoff: datetime
    sr_deliveries: bool
    reason: str = "age"
    """Why this rule purges, for the audit row: ``age`` (the retention period) or
    ``free_space`` (``gateway.space_purge``)."""

    def purgeable(self) -> ColumnElement[bool]:
        """Settled, undisputed, idle, with files, needed by nothing radraft still has to do.

        One expression, used both to list candidates and to check one again under its lock.
        An SR waiting to be built would read the files (it confirms its evidence there); an ORU,
        or an SR for a PACS not configured (it waits for one, and names purged sources from
        their rows), does not.
        """
        conditions = [*_idle_and_settled(self.cutoff)]
        if self.sr_deliveries:
            conditions.append(~exists().where(
                OutboxMessage.study_id == Study.id,
                OutboxMessage.channel == OutboxChannel.DICOM,
                OutboxMessage.status == OutboxStatus.PENDING,
            ))  # fmt: skip
        return and_(*conditions)


def _idle_and_settled(cutoff: datetime) -> list[ColumnElement[bool]]:
    study_files = Instance.study_id == Study.id
    return [
        or_(Study.status.in_(SETTLED_STATUSES), Study.withdrawn_at.is_not(None)),
        Study.identity_disputed_at.is_(None),
        Study.last_received_at < cutoff,
        exists().where(study_files, Instance.purged_at.is_(None)),
        ~exists().where(study_files, Instance.received_at >= cutoff),
        ~exists().where(
            DraftingJob.study_id == Study.id,
            DraftingJob.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
        ),
        ~exists().where(
            Report.study_id == Study.id,
            ReportRevision.report_id == Report.id,
            ReportRevision.created_at >= cutoff,
        ),
        ~exists().where(
            StudyCase.study_id == Study.id,
            StudyRead.case_id == StudyCase.id,
            StudyRead.status != ReadStatus.DONE,
        ),
    ]


def purge_candidates(session: Session, rule: RetentionRule, limit: int) -> list[int]:
    """Ids of studies the rule lets go now, the longest idle first."""
    statement = (
        select(Study.id).where(rule.purgeable()).order_by(Study.last_received_at).limit(limit)
    )
    return list(session.scalars(statement))


def held_files(session: Session, study_ids: list[int]) -> tuple[int, int]:
    """Files and bytes the spool holds for these studies (what a purge of them would free)."""
    if not study_ids:
        return 0, 0
    files, size = session.execute(
        select(func.count(Instance.id), func.coalesce(func.sum(Instance.size_bytes), 0)).where(
            Instance.study_id.in_(study_ids), Instance.purged_at.is_(None)
        )
    ).one()
    return int(files), int(size)


def purge_study(
    factory: sessionmaker[Session], spool: Spool, study_id: int, *, rule: RetentionRule,
    now: datetime, actor: str,
) -> PurgedStudy | None:  # fmt: skip
    """Delete one study's files if the rule still lets them go under its row lock; else None.

    Files are moved aside before the rows commit and deleted after, so a failed commit (the
    database went away) puts them back and loses nothing.
    """
    moved: list[str] = []
    try:
        with session_scope(factory) as session:
            # Lock first, then check: on Postgres a statement that waited for the lock still
            # reads with the snapshot it began with, and would miss a re-send that just committed.
            session.execute(select(Study.id).where(Study.id == study_id).with_for_update())
            still = select(Study.id).where(Study.id == study_id, rule.purgeable())
            if session.scalar(still) is None:
                return None
            held = session.execute(
                select(Instance.id, Instance.spool_path, Instance.size_bytes).where(
                    Instance.study_id == study_id, Instance.purged_at.is_(None)
                )
            ).all()
            for row in held:
                if spool.set_aside(row.spool_path):
                    moved.append(row.spool_path)
            session.execute(
                update(Instance)
                .where(Instance.id.in_([row.id for row in held]))
                .values(purged_at=now)
            )
            purged = PurgedStudy(study_id, len(held), sum(row.size_bytes for row in held))
            session.add(
                AuditEntry(
                    at=now,
                    actor=actor,
                    action=PURGED_ACTION,
                    object_type="study",
                    object_id=str(study_id),
                    details={"files": purged.files, "bytes": purged.bytes, "reason": rule.reason},
                )
            )
    except BaseException:
        for relative in moved:
            spool.put_back(relative)
        raise
    spool.drop_set_aside(moved)
    return purged


def run_retention(
    factory: sessionmaker[Session], spool: Spool, *, retention_days: int, sr_deliveries: bool,
    now: datetime, actor: str = "gateway", limit: int = STUDIES_PER_ROUND,
) -> RetentionRound:  # fmt: skip
    """Purge up to ``limit`` studies idle for ``retention_days``; logs the round (counts)."""
    rule = RetentionRule(now - timedelta(days=retention_days), sr_deliveries)
    with session_scope(factory) as session:
        candidates = purge_candidates(session, rule, limit + 1)
    purged = purge_studies(factory, spool, candidates[:limit], rule=rule, now=now, actor=actor)
    finished = RetentionRound(tuple(purged), more_waiting=len(candidates) > limit)
    if purged:
        log_event(logger, "gateway.spool_purged", studies=len(purged), files=finished.files,
                  bytes=finished.bytes, more_waiting=finished.more_waiting)  # fmt: skip
    return finished


def purge_studies(
    factory: sessionmaker[Session], spool: Spool, study_ids: list[int], *, rule: RetentionRule,
    now: datetime, actor: str, enough: Callable[[], bool] = lambda: False,
) -> list[PurgedStudy]:  # fmt: skip
    """Purge each study in turn (``purge_study``) until ``enough`` says so.

    A study whose files fail to move (permissions, a failing disk; ``purge_study`` put back
    what it moved) is logged and skipped: the others still go, and the next round tries it again.
    """
    purged = []
    for study_id in study_ids:
        if enough():
            break
        try:
            done = purge_study(factory, spool, study_id, rule=rule, now=now, actor=actor)
        except OSError as error:
            log_event(logger, "gateway.purge_failed", logging.ERROR, study_id=study_id,
                      error=type(error).__name__)  # fmt: skip
            continue
        if done is not None:
            purged.append(done)
    return purged


def recover_set_aside(factory: sessionmaker[Session], spool: Spool) -> int:
    """Settle files a crashed purge left aside: back in place if their rows are not purged,
    deleted if they are (or no row names them). Returns how many were put back."""
    left = spool.set_aside_files()
    if not left:
        return 0
    with session_scope(factory) as session:
        unpurged = set(
            session.scalars(
                select(Instance.spool_path).where(
                    Instance.spool_path.in_(left), Instance.purged_at.is_(None)
                )
            )
        )
    for relative in unpurged:
        spool.put_back(relative)
    spool.drop_set_aside([relative for relative in left if relative not in unpurged])
    log_event(logger, "gateway.purge_recovered", put_back=len(unpurged),
              dropped=len(left) - len(unpurged))  # fmt: skip
    return len(unpurged)
