"""Which order a study belongs to now, and the indication that follows from it: one answer.

Order messages are kept as they came (one row each, for the audit trail); what they mean
together is decided here. The newest message about an order wins: a cancel (ORC-1 CA, OC, CR,
DC, OD) withdraws the order, a new or changed order (NW, XO, XX) gives its details, a status
change (SC) alone changes nothing we use. The worker's prompt and the case page both ask
``indication_for``, so the radiologist sees the clinical question the model was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import OrderControl
from radraft.models import Order, Study

NEUTRAL_INDICATION = "chest radiograph"
"""Used when neither an order nor the DICOM header gives a reason for the exam."""
MAX_INDICATION_CHARACTERS = 1000
"""An indication is a sentence or two; a longer text is cut here before it reaches a prompt."""


def _same_order(a: Order, b: Order) -> bool:
    """Two messages are about the same order if a placer or filler number matches."""
    if a.placer_order_number and a.placer_order_number == b.placer_order_number:
        return True
    if a.filler_order_number and a.filler_order_number == b.filler_order_number:
        return True
    no_numbers = not (a.placer_order_number or a.filler_order_number)
    return no_numbers and not (b.placer_order_number or b.filler_order_number)


def standing_order(messages: Sequence[Order]) -> Order | None:
    """The newest order message with details whose order no later message withdrew.

    ``messages`` are one accession's order messages, newest first.
    """
    withdrawn: list[Order] = []
    for message in messages:
        control = OrderControl(message.order_control)
        if control.withdraws:
            withdrawn.append(message)
            continue
        if not control.gives_details:
            continue
        if any(_same_order(message, cancel) for cancel in withdrawn):
            continue
        return message
    return None


def latest_order(session: Session, accession_number: str | None) -> Order | None:
    """The order that stands for an accession number now, or None."""
    if not accession_number:
        return None
    messages = session.scalars(
        select(Order).where(Order.accession_number == accession_number).order_by(Order.id.desc())
    ).all()
    return standing_order(messages)


@dataclass(frozen=True)
class Indication:
    """The clinical question for a study and where it came from (shown beside the draft)."""

    text: str
    source: str


def normalise_indication(text: str) -> str:
    """One line, at most ``MAX_INDICATION_CHARACTERS`` (cut at a word, marked with an ellipsis)."""
    line = " ".join(text.split())
    if len(line) <= MAX_INDICATION_CHARACTERS:
        return line
    cut = line[: MAX_INDICATION_CHARACTERS - 1].rsplit(" ", 1)[0]
    return cut + "\u2026"


def indication_for(session: Session, study: Study) -> Indication:
    """The indication of a study: the standing order's reason, else the header's, else neutral.

    Header sources in order: Reason for the Requested Procedure, Requested Procedure
    Description, Admitting Diagnoses Description, Study Description.
    """
    order = latest_order(session, study.accession_number)
    candidates = (
        ("HL7 order", order.reason_for_exam if order else None),
        ("Reason for the Requested Procedure", study.reason_for_requested_procedure),
        ("Requested Procedure Description", study.requested_procedure_description),
        ("Admitting Diagnoses", study.admitting_diagnoses),
        ("Study Description", study.study_description),
    )
    for source, text in candidates:
        if text and text.strip():
            return Indication(normalise_indication(text), source)
    return Indication(NEUTRAL_INDICATION, "none given")
