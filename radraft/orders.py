"""Which order a study belongs to now, and the indication that follows from it: one answer.

Order messages are kept as they came (one row each, for the audit trail); what they mean
together is decided here. The newest message about an order wins: a cancel (ORC-1 CA, OC, CR,
DC, OD) withdraws the order, a new or changed order (NW, XO, XX) gives its details, a status
change (SC) alone changes nothing we use. The worker's prompt and the case page both ask
``indication_for``, so the radiologist sees the clinical question the model was given.

An accession number alone does not prove that an order is this study's: a number keyed wrongly
at the modality, or the same number issued by two RIS, points at another patient's order. Its
reason for exam would then reach the prompt and the case page, and its placer and filler order
numbers the SR and the ORU, where the RIS files the report under that order: another patient's.
So an order stands for a study only if one of its patient identifiers (PID-3) is the study's
Patient ID, or was merged into it by an ADT merge; otherwise it is not used at all, and the
case page and the drafting log say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from radraft.enums import OrderControl
from radraft.merge_history import merged_into
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


def _standing_order_of(session: Session, accession_number: str | None) -> Order | None:
    """The order that stands for an accession number now, or None."""
    if not accession_number:
        return None
    messages = session.scalars(
        select(Order).where(Order.accession_number == accession_number).order_by(Order.id.desc())
    ).all()
    return standing_order(messages)


def names_patient(order: Order, patient_id: str | None) -> bool:
    """Whether ``order`` names the patient with ``patient_id`` among its PID-3 identifiers.

    The identifiers are compared exactly (as the RIS and the modality both take them from the
    same master patient index); their assigning authorities are not, as RIS and modalities
    spell the same authority differently. An empty Patient ID matches nothing.
    """
    wanted = (patient_id or "").strip()
    return bool(wanted) and wanted in (order.patient_ids or [])


@dataclass(frozen=True)
class StudyOrder:
    """The order a study belongs to, as every output and the prompt must see it."""

    order: Order | None
    """The standing order of the study's accession number, if it names the study's patient."""
    other_patient: bool = False
    """A standing order has the study's accession number but not its patient: not used."""


def order_numbers(order: Order | None) -> dict[str, str]:
    """An order's PV1-2 patient class and placer/filler numbers as an ORU states them (empty
    without an order)."""
    if order is None:
        return {}
    return {
        "patient_class": order.patient_class or "",
        "placer_order_number": order.placer_order_number or "",
        "filler_order_number": order.filler_order_number or "",
    }


def order_for_study(session: Session, study: Study) -> StudyOrder:
    """The standing order of ``study``'s accession number, only if it names its patient."""
    order = _standing_order_of(session, study.accession_number)
    if order is None:
        return StudyOrder(None)
    if names_patient(order, study.patient_id) or _names_merged_patient(session, order, study):
        return StudyOrder(order)
    return StudyOrder(None, other_patient=True)


def _names_merged_patient(session: Session, order: Order, study: Study) -> bool:
    """Whether an identifier the order names was merged into the study's patient: the order
    was placed under a temporary number that an ADT merge folded into the patient before (or
    after) the study arrived (``radraft.merge_history``). Only asked when no identifier
    matches, so the usual study costs nothing."""
    return any(
        merged_into(session, identifier, "", study.patient_id or "")
        for identifier in order.patient_ids or []
    )


@dataclass(frozen=True)
class Indication:
    """The clinical question for a study and where it came from (shown beside the draft)."""

    text: str
    source: str
    order_of_other_patient: bool = False
    """An order with this accession number names another patient, so it was not used."""


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
    matched = order_for_study(session, study)
    order = matched.order
    candidates = (
        ("HL7 order", order.reason_for_exam if order else None),
        ("Reason for the Requested Procedure", study.reason_for_requested_procedure),
        ("Requested Procedure Description", study.requested_procedure_description),
        ("Admitting Diagnoses", study.admitting_diagnoses),
        ("Study Description", study.study_description),
    )
    for source, text in candidates:
        if text and text.strip():
            return Indication(normalise_indication(text), source, matched.other_patient)
    return Indication(NEUTRAL_INDICATION, "none given", matched.other_patient)
