"""The report lifecycle: DRAFTED -> PRELIMINARY -> FINAL -> AMENDED, one transaction each.

Every transition stores a revision (full text, author, role, time), an audit row and the
outbox rows of the revision's SR and ORU, in the caller's transaction. ``version`` on the report
is the optimistic-concurrency token: a save based on an older version is refused, so two people
editing the same report never silently overwrite each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from radraft.enums import ReportState, Role
from radraft.errors import (
    ConflictError,
    InvalidInputError,
    NotAllowedError,
    NotFoundError,
    RadraftError,
)
from radraft.models import AuditEntry, Report, ReportRevision, User
from radraft.reports import NewRevision, append_revision, lock_report, lock_study

MAX_SECTION_CHARACTERS = 20_000
"""Longer sections are refused: no chest X-ray report is that long, a runaway paste is."""


class LifecycleError(RadraftError):
    """A transition that is not allowed; the web layer answers it with a 4xx."""


class UnknownReportError(LifecycleError, NotFoundError):
    """No report with that id."""


class StaleVersionError(LifecycleError, ConflictError):
    """The report changed since the editor loaded it; ``current_version`` says to what."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"the report was changed meanwhile (now version {current_version})")
        self.current_version = current_version

    def details(self) -> dict[str, object]:
        """The editor reloads from this version."""
        return {"current_version": self.current_version}


class TransitionNotAllowedError(LifecycleError, ConflictError):
    """The transition is not possible from the report's current state."""


class RoleNotAllowedError(LifecycleError, NotAllowedError):
    """The user's role may never make this transition."""


class IdentityDisputedError(LifecycleError, ConflictError):
    """The study's patient identity is disputed: not signed or amended until it is confirmed."""


class StudyWithdrawnError(LifecycleError, ConflictError):
    """The study's reports were withdrawn as another patient's: its report is closed."""


class InvalidTextError(LifecycleError, InvalidInputError):
    """A section is empty where it must not be, or too long."""


@dataclass(frozen=True)
class Transition:
    """Who may move a report from which states to which."""

    target: ReportState
    sources: frozenset[ReportState]
    roles: frozenset[Role]
    audit_action: str


SUBMIT = Transition(
    ReportState.PRELIMINARY,
    frozenset({ReportState.DRAFTED}),
    frozenset({Role.RESIDENT}),
    "report.submitted",
)
SIGN = Transition(
    ReportState.FINAL,
    frozenset({ReportState.DRAFTED, ReportState.PRELIMINARY}),
    frozenset({Role.ATTENDING}),
    "report.signed",
)
SEND_BACK = Transition(
    ReportState.DRAFTED,
    frozenset({ReportState.PRELIMINARY}),
    frozenset({Role.ATTENDING}),
    "report.sent_back",
)
AMEND = Transition(
    ReportState.AMENDED,
    frozenset({ReportState.FINAL, ReportState.AMENDED}),
    frozenset({Role.ATTENDING}),
    "report.amended",
)


def validate_text(findings: str, impression: str) -> None:
    """Refuse oversized sections and a report with no impression."""
    for name, text in (("findings", findings), ("impression", impression)):
        if len(text) > MAX_SECTION_CHARACTERS:
            raise InvalidTextError(f"{name} is longer than {MAX_SECTION_CHARACTERS} characters")
    if not impression.strip():
        raise InvalidTextError("the impression is empty")


def apply_transition(
    session: Session,
    report_id: int,
    transition: Transition,
    *,
    user: User,
    expected_version: int,
    findings: str,
    impression: str,
    now: datetime,
) -> ReportRevision:
    """Make one transition; raises a ``LifecycleError`` and changes nothing if it is refused.

    The revision itself is appended by the core's ``append_revision``, which the worker's drafts
    use too; this function owns who may do what, from which state, on which version.
    """
    found = session.get(Report, report_id)
    if found is None:
        raise UnknownReportError(f"report {report_id} does not exist")
    study = lock_study(session, found.study_id)
    report = lock_report(session, study.id)
    if report is None or report.id != report_id:
        raise UnknownReportError(f"report {report_id} does not exist")
    if Role(user.role) not in transition.roles:
        raise RoleNotAllowedError(f"a {user.role} cannot do {transition.audit_action}")
    if ReportState(report.state) not in transition.sources:
        raise TransitionNotAllowedError(
            f"{transition.audit_action} is not possible from {report.state}"
        )
    if report.version != expected_version:
        raise StaleVersionError(report.version)
    if study.withdrawn_at is not None:
        raise StudyWithdrawnError(
            "this study's reports were withdrawn: radraft's copy of it belongs to another"
            " patient, so it is reported at the PACS, not here"
        )
    if transition.target.is_signed and study.identity_disputed_at is not None:
        raise IdentityDisputedError(
            "this study's patient identity is disputed: the sender has since sent it under"
            " another Patient ID; an administrator must check it with the PACS and confirm it"
            " before it can be signed"
        )
    validate_text(findings, impression)
    revision = append_revision(
        session,
        study,
        report,
        NewRevision(transition.target, findings, impression, author=user),
        now=now,
    )
    session.add(
        AuditEntry(
            at=now,
            actor=f"user:{user.id}",
            action=transition.audit_action,
            object_type="report",
            object_id=str(report.id),
            details={"revision": revision.number, "version": report.version},
        )
    )
    return revision
