"""Create a timing study from a checked protocol: readers, cases, the allocation table.

Every case must already be in radraft with a model draft; the draft is copied into the case
row, so what readers are shown cannot change while the study runs.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from radraft.enums import ReadStatus, Role
from radraft.models import (
    ReaderStudy,
    Report,
    ReportRevision,
    Study,
    StudyCase,
    StudyRead,
    StudyReader,
    User,
)
from reporting.reader_study.arms import CHAINED_SOURCE, MODEL_DRAFT_ARMS
from reporting.reader_study.assignment import Allocation, allocate
from reporting.reader_study.blinding import normalise_draft
from reporting.reader_study.protocol import Protocol, ProtocolError


def create_reader_study(session: Session, protocol: Protocol) -> ReaderStudy:
    """Store the study and its allocation; ``ProtocolError`` if it cannot run as written."""
    if session.scalar(select(ReaderStudy).where(ReaderStudy.name == protocol.name)) is not None:
        raise ProtocolError(f"a study named {protocol.name!r} exists")
    users = _readers(session, protocol)
    cases = _cases(session, protocol.cases + protocol.practice_cases)
    allocations = allocate(
        readers=protocol.readers,
        cases=protocol.cases,
        practice_cases=protocol.practice_cases,
        reads_per_reader=protocol.reads_per_reader,
        weights={role: protocol.arm_weights(role) for role in protocol.readers},
        seed=protocol.seed,
    )
    study = ReaderStudy(name=protocol.name, protocol=protocol.model_dump(mode="json"),
                        seed=protocol.seed)  # fmt: skip
    session.add(study)
    session.flush()
    readers = {}
    for role, names in protocol.readers.items():
        for name in names:
            readers[name] = StudyReader(reader_study_id=study.id, user_id=users[name].id, role=role)
            session.add(readers[name])
    case_rows = {}
    for key, (study_row, revision) in cases.items():
        case_rows[key] = StudyCase(
            reader_study_id=study.id,
            study_id=study_row.id,
            practice=key in protocol.practice_cases,
            model_findings=revision.findings,
            model_impression=revision.impression,
            model_revision_id=revision.id,
        )
        session.add(case_rows[key])
    session.flush()
    reads: dict[tuple[str, str], StudyRead] = {}
    for allocation in allocations:
        read = _read(study, allocation, readers, case_rows, protocol.template)
        if allocation.source is not None:
            read.source_read_id = reads[allocation.source].id
        session.add(read)
        session.flush()
        reads[(allocation.reader, allocation.case)] = read
    return study


def _read(
    study: ReaderStudy,
    allocation: Allocation,
    readers: dict[str, StudyReader],
    cases: dict[str, StudyCase],
    template: str,
) -> StudyRead:
    case = cases[allocation.case]
    draft_findings, draft_impression = template, ""
    if allocation.arm in MODEL_DRAFT_ARMS:
        draft_findings = normalise_draft(case.model_findings)
        draft_impression = normalise_draft(case.model_impression)
    chained = allocation.arm in CHAINED_SOURCE
    return StudyRead(
        reader_study_id=study.id,
        reader_id=readers[allocation.reader].id,
        case_id=case.id,
        arm=allocation.arm,
        position=allocation.position,
        practice=allocation.practice,
        status=ReadStatus.WAITING if chained else ReadStatus.READY,
        draft_findings=None if chained else draft_findings,
        draft_impression=None if chained else draft_impression,
    )


def _readers(session: Session, protocol: Protocol) -> dict[str, User]:
    found = {}
    for role, names in protocol.readers.items():
        for name in names:
            user = session.scalar(select(User).where(User.username == name))
            if user is None or not user.active:
                raise ProtocolError(f"reader {name!r} is not an active radraft user")
            if Role(user.role) != role:
                raise ProtocolError(f"reader {name!r} is a {user.role}, listed as a {role}")
            if name in found:
                raise ProtocolError(f"reader {name!r} is listed twice")
            found[name] = user
    return found


def _cases(session: Session, keys: list[str]) -> dict[str, tuple[Study, ReportRevision]]:
    """Each case key (Study Instance UID or accession) with its study and model draft."""
    found: dict[str, tuple[Study, ReportRevision]] = {}
    problems = []
    for key in keys:
        study = session.scalar(
            select(Study).where(or_(Study.study_instance_uid == key, Study.accession_number == key))
        )
        draft = None
        if study is not None:
            draft = session.scalar(
                select(ReportRevision)
                .join(Report)
                .where(Report.study_id == study.id, ReportRevision.model_name.is_not(None))
                .order_by(ReportRevision.id)
            )
        if study is None:
            problems.append(f"{key}: not in radraft")
        elif draft is None:
            problems.append(f"{key}: no model draft yet")
        else:
            found[key] = (study, draft)
    if problems:
        raise ProtocolError("cases not usable: " + "; ".join(problems))
    return found
