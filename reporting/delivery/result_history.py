"""What of a study's results already reached a peer, read from the outbox.

Both the messages that take results back (``reporting.delivery.withdrawals``) and a correction
that replaces one must name what the peer filed, not what stands in radraft now: the RIS files
a result under the order numbers it went out with, and finds it again only by them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import OutboxChannel, OutboxStatus
from radraft.models import OutboxMessage, Study
from radraft.report_outputs import is_report_output

SENT_ORDER = "sent_order"
"""The payload key of an ORU row: PV1-2 and the order numbers its first acknowledged copy went
out with. The RIS files the result under them; if the order changes or is cancelled later (a
study found under the wrong order is cancelled at the RIS first), the withdrawal must still
name them, a copy for a second RIS must say the same, and a correction must name them to
replace the result filed there."""


def settled_outputs(
    session: Session,
    study: Study,
    channel: OutboxChannel,
    *,
    after_row: int,
    before_row: int,
) -> list[OutboxMessage]:
    """The study's report outputs on ``channel`` settled between two outbox rows, oldest first
    (settled: done, which includes sent and deliberately not sent)."""
    rows = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.study_id == study.id,
            OutboxMessage.channel == channel,
            OutboxMessage.status == OutboxStatus.DONE,
            OutboxMessage.id > after_row,
            OutboxMessage.id < before_row,
        )
        .order_by(OutboxMessage.id)
    ).all()
    return [row for row in rows if is_report_output(row)]


def is_acknowledged(row: OutboxMessage) -> bool:
    """Whether at least one RIS (or PACS) acknowledged the row's output."""
    return bool(row.payload.get("delivered_to"))


def newest_result(rows: list[OutboxMessage]) -> OutboxMessage:
    """The row of the newest revision among ``rows`` (report outputs, at least one)."""
    return max(rows, key=lambda row: int(row.payload["report_revision_id"]))


def order_of_corrected_result(
    session: Session, study: Study, correction: OutboxMessage
) -> dict[str, str] | None:
    """The order numbers the result a correction replaces went out with; None if no RIS
    acknowledged an earlier result of the study under its present patient (or the newest was
    sent before the numbers were recorded: then, as for its withdrawal, the standing order's).

    A corrected result (OBR-25 C) replaces the result the RIS filed, which it finds by the
    placer and filler numbers. Those are the ones the earlier result went out with: if the RIS
    changed or cancelled the order since, the standing order's numbers would file the
    correction beside the result it corrects, or nowhere, and the wrong text would stay. Rows
    sent before a patient correction do not count: their results went under the old patient,
    were withdrawn, and the study's results start again under the new one.
    """
    acknowledged = [
        row
        for row in settled_outputs(
            session,
            study,
            OutboxChannel.HL7,
            after_row=study.corrected_through_outbox_id or 0,
            before_row=correction.id,
        )
        if is_acknowledged(row)
    ]
    if not acknowledged:
        return None
    sent_order = newest_result(acknowledged).payload.get(SENT_ORDER)
    return None if sent_order is None else dict(sent_order)
