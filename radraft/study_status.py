"""The only writer of ``Study.status``: a table of the moves a study may make, checked on write.

Five services and modules move a study (intake, completion, the worker, the report lifecycle);
with one table a move that nobody planned fails loudly where it is made, instead of leaving a
study in a state the worklist and the completion check do not expect.
"""

from __future__ import annotations

from collections.abc import Mapping

from radraft.enums import ReportState, StudyStatus
from radraft.errors import RadraftError
from radraft.models import Study

S = StudyStatus
REPORTED = frozenset({S.DRAFTED, S.PRELIMINARY, S.FINAL, S.AMENDED})
"""Statuses that mirror the report's state once a study has a report."""

PEOPLE_OWN = frozenset({S.PRELIMINARY, S.FINAL, S.AMENDED})
"""A person submitted or signed the report: the drafting side no longer moves the study."""

HUMAN = frozenset({S.PRELIMINARY, S.FINAL})
"""People submit or sign a report whatever the drafting side is doing (a newer job may be queued,
running or failed); the study then shows the report's state."""

ALLOWED_MOVES: Mapping[StudyStatus, frozenset[StudyStatus]] = {
    # Completion decides a study that was (re-)opened by new images.
    S.RECEIVING: frozenset({S.NOT_ELIGIBLE, S.QUEUED}) | REPORTED,
    S.NOT_ELIGIBLE: frozenset({S.RECEIVING}),
    # A queued job is taken or dead-lettered; new images re-open the study.
    S.QUEUED: frozenset({S.DRAFTING, S.FAILED, S.RECEIVING}) | HUMAN,
    S.DRAFTING: frozenset({S.DRAFTED, S.FAILED, S.RECEIVING}) | HUMAN,
    S.DRAFTED: frozenset({S.RECEIVING}) | HUMAN,
    S.PRELIMINARY: frozenset({S.DRAFTED, S.FINAL}),  # sent back, or signed
    S.FINAL: frozenset({S.AMENDED}),
    S.AMENDED: frozenset(),
    # A failed study gets another job only with new images; its older draft may still be read.
    S.FAILED: frozenset({S.RECEIVING}) | HUMAN,
}
"""Where each status may go; staying where one is is always allowed (a redelivered task)."""

STUDY_STATUS_FOR_REPORT_STATE: Mapping[ReportState, StudyStatus] = {
    ReportState.DRAFTED: S.DRAFTED,
    ReportState.PRELIMINARY: S.PRELIMINARY,
    ReportState.FINAL: S.FINAL,
    ReportState.AMENDED: S.AMENDED,
}
"""A study's status once it has a report: the report's state (worklist and API)."""


class StudyStatusError(RadraftError):
    """A move the table does not allow; a bug in the caller, never an input error."""

    def __init__(self, study_id: int | None, current: StudyStatus, target: StudyStatus) -> None:
        super().__init__(f"study {study_id}: {current.value} -> {target.value} is not allowed")
        self.study_id = study_id
        self.current = current
        self.target = target


def can_move(current: StudyStatus, target: StudyStatus) -> bool:
    """Whether the table allows ``current -> target``."""
    return target == current or target in ALLOWED_MOVES[current]


def moved_status(study_id: int | None, current: StudyStatus, target: StudyStatus) -> StudyStatus:
    """``target``, or ``StudyStatusError`` if the table does not allow ``current -> target``.

    For writers that update the study's row with a statement rather than through its object
    (the gateway's intake); ``move_study`` is the same check for an object.
    """
    if not can_move(current, target):
        raise StudyStatusError(study_id, current, target)
    return target


def move_study(study: Study, target: StudyStatus) -> None:
    """Set the study's status, or raise ``StudyStatusError`` if the table does not allow it."""
    study.status = moved_status(study.id, StudyStatus(study.status), target)


STATUSES_RESET_BY_NEW_INSTANCES = frozenset(
    {S.RECEIVING, S.NOT_ELIGIBLE, S.QUEUED, S.DRAFTING, S.DRAFTED, S.FAILED}
)
"""Statuses a study leaves for ``RECEIVING`` when its images change (a new image, or one
rejected by an IOCM rejection note): no one has submitted or signed it yet."""
