"""The allocation table of a study as rows (API, CSV export, analysis)."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from radraft.models import ReaderStudy, Study, StudyCase, StudyRead, StudyReader, User


def allocation_rows(session: Session, study: ReaderStudy) -> list[dict[str, Any]]:
    """One row per planned read, in reader and position order."""
    source = aliased(StudyRead)
    source_reader = aliased(StudyReader)
    source_user = aliased(User)
    rows = session.execute(
        select(StudyRead, User.username, StudyReader.role, Study.study_instance_uid,
               source_user.username)
        .join(StudyReader, StudyRead.reader_id == StudyReader.id)
        .join(User, StudyReader.user_id == User.id)
        .join(StudyCase, StudyRead.case_id == StudyCase.id)
        .join(Study, StudyCase.study_id == Study.id)
        .outerjoin(source, StudyRead.source_read_id == source.id)
        .outerjoin(source_reader, source.reader_id == source_reader.id)
        .outerjoin(source_user, source_reader.user_id == source_user.id)
        .where(StudyRead.reader_study_id == study.id)
        .order_by(User.username, StudyRead.position)
    ).all()  # fmt: skip
    return [
        {
            "study": study.name,
            "seed": study.seed,
            "read_id": read.id,
            "reader": username,
            "role": role,
            "case": case_uid,
            "arm": read.arm,
            "position": read.position,
            "practice": read.practice,
            "source_reader": source_name,
            "status": read.status,
        }
        for read, username, role, case_uid, source_name in rows
    ]


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text with a header row."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
