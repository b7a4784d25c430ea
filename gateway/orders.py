"""HL7 order intake (ORM^O01, OMI^O23 over MLLP): acknowledged, stored, matched by accession.

Reading is tolerant (the message's own delimiters, any 2.x version) and exact about text: the
bytes are decoded by MSH-18 and escape sequences are decoded, so a reason for exam reads back
as the ordering physician wrote it. Every message is stored as one row with its ORC-1 order
control; what they mean together (a cancelled order is never an indication) is decided by
``radraft.orders``. A message we cannot use gets an AE or AR with the reason
(``gateway.order_listener`` serves the port and answers each message with what this module
decides).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.er7 import Er7Message, OrderRejectedError
from radraft.db import session_scope
from radraft.enums import OrderControl
from radraft.hl7ack import AckCode, AcknowledgedMessage, build_ack
from radraft.hl7text import CharacterSetError, decode_message, python_codec, unescape
from radraft.logs import log_event, printable_token
from radraft.mllp import (
    FrameTooLargeError,
)
from radraft.models import Order
from radraft.timeutil import utcnow

logger = logging.getLogger(__name__)

SUPPORTED_TYPES = {("ORM", "O01"), ("OMI", "O23")}
MAX_REASON_CHARACTERS = 10240
"""A reason for exam is kept up to this length (DICOM's LT); the prompt takes at most 1000."""
MAX_PATIENT_IDENTIFIERS = 32
"""PID-3 repetitions kept (an MRN, a national number, an insurer's...); more is not a RIS."""
MAX_ORDERS_PER_MESSAGE = 50
"""Orders read from one message (a RIS sends the procedures of one request together; more is
a batch, which belongs in several messages)."""
MAX_PATIENT_ID_CHARACTERS = 64
"""A DICOM Patient ID (LO) is at most 64 characters: a longer identifier can match no study."""


@dataclass(frozen=True)
class OrderFacts:
    """What radraft keeps of an order message (text unescaped)."""

    message_type: str
    order_control: OrderControl
    accession_number: str
    placer_order_number: str
    filler_order_number: str
    reason_for_exam: str
    procedure: dict[str, str] | None
    patient_class: str
    patient_ids: tuple[str, ...]
    """PID-3's identifiers (CX.1 of each repetition), the study's Patient ID among them."""


def parse_orders(text: str) -> list[OrderFacts]:
    """Read an ORM^O01 or OMI^O23: one ``OrderFacts`` per order it carries.

    Both repeat their order group (ORC, OBR ...; an OMI's IPC per requested procedure), so one
    message may order several procedures, each under its own accession number; every one is
    kept, or none (any group that cannot be read refuses the message with its number).

    Raises
    ------
    OrderRejectedError
        With the reason: AR for what is not an order, AE for an order that cannot be used.
    """
    if not text.startswith("MSH"):
        raise OrderRejectedError(AckCode.REJECT, "not an HL7 v2 message (no MSH segment)")
    message = Er7Message(text)
    msh = message.first("MSH")
    kind = (message.field(msh, 9, 0), message.field(msh, 9, 1))
    if kind not in SUPPORTED_TYPES:
        raise OrderRejectedError(AckCode.REJECT, f"unsupported message type {'^'.join(kind)}")
    patient_ids = _patient_ids(message)
    patient_class = message.field(message.first("PV1"), 2)[:8]
    groups = _order_groups(message)
    orders: list[OrderFacts] = []
    for number, group in enumerate(groups, start=1):
        try:
            orders.extend(_orders_of(message, group, "^".join(kind), patient_ids, patient_class))
        except OrderRejectedError as error:
            if len(groups) == 1:
                raise
            raise OrderRejectedError(error.code, f"order {number}: {error.reason}") from error
        if len(orders) > MAX_ORDERS_PER_MESSAGE:
            raise OrderRejectedError(
                AckCode.ERROR, f"more than {MAX_ORDERS_PER_MESSAGE} orders in one message"
            )
    return orders


@dataclass
class _OrderGroup:
    orc: list[str] | None = None
    obr: list[str] | None = None
    ipcs: list[list[str]] = field(default_factory=list)


def _order_groups(message: Er7Message) -> list[_OrderGroup]:
    """The order groups in the message's order: each ORC starts one, and so does an OBR that
    finds its group's OBR taken (a sender that leaves ORC out); IPCs join the group they follow.
    A message with none is one empty group (refused for its missing accession number)."""
    groups: list[_OrderGroup] = []
    for segment in message.ordered:
        name = segment[0]
        if name == "ORC" or (name == "OBR" and (not groups or groups[-1].obr is not None)):
            groups.append(_OrderGroup())
        if name == "ORC":
            groups[-1].orc = segment
        elif name == "OBR":
            groups[-1].obr = segment
        elif name == "IPC":
            if not groups:
                groups.append(_OrderGroup())
            groups[-1].ipcs.append(segment)
    return groups or [_OrderGroup()]


def _orders_of(
    message: Er7Message,
    group: _OrderGroup,
    message_type: str,
    patient_ids: tuple[str, ...],
    patient_class: str,
) -> list[OrderFacts]:
    """One order group's facts: one per accession number (an OMI names one per IPC)."""
    orc, obr = group.orc, group.obr
    control_code = message.field(orc, 1) or OrderControl.NEW.value
    try:
        control = OrderControl(control_code)
    except ValueError:
        raise OrderRejectedError(
            AckCode.ERROR, f"unsupported order control (ORC-1) {control_code[:8]}"
        ) from None
    accessions = [message.field(ipc, 1) for ipc in group.ipcs]
    accessions = list(dict.fromkeys(filter(None, accessions))) or [
        message.field(obr, 18) or message.field(obr, 20)
    ]
    if not accessions[0]:
        raise OrderRejectedError(AckCode.ERROR, "no accession number (IPC-1 or OBR-18)")
    if any(len(accession) > 64 for accession in accessions):
        raise OrderRejectedError(AckCode.ERROR, "accession number longer than 64 characters")
    reason = (
        message.field(obr, 31, 1)
        or message.field(obr, 31)
        or message.field(orc, 16, 1)
        or message.field(orc, 16)
        or message.field(obr, 13)
    )
    procedure = None
    code, meaning, scheme = (message.field(obr, 4, i) for i in range(3))
    if code or meaning:
        procedure = {"code": code[:64], "meaning": meaning[:199], "scheme": scheme[:20]}
    placer = (message.field(orc, 2) or message.field(obr, 2))[:64]
    filler = (message.field(orc, 3) or message.field(obr, 3))[:64]
    return [
        OrderFacts(
            message_type=message_type,
            order_control=control,
            accession_number=accession,
            placer_order_number=placer,
            filler_order_number=filler,
            reason_for_exam=reason[:MAX_REASON_CHARACTERS],
            procedure=procedure,
            patient_class=patient_class,
            patient_ids=patient_ids,
        )
        for accession in accessions
    ]


def _patient_ids(message: Er7Message) -> tuple[str, ...]:
    """PID-3's identifiers; an order must name its patient, or no study could be shown to be
    its own (``radraft.orders.names_patient``), and the RIS would never hear why."""
    pid = message.first("PID")
    if message.repetition_count(pid, 3) > MAX_PATIENT_IDENTIFIERS:  # counted as the ADT reader
        raise OrderRejectedError(  # counts them (``gateway.adt_identifiers``), empty ones too
            AckCode.ERROR, f"more than {MAX_PATIENT_IDENTIFIERS} patient identifiers in PID-3"
        )
    identifiers = message.repetitions(pid, 3)
    if not identifiers:
        raise OrderRejectedError(AckCode.ERROR, "no patient identifier (PID-3)")
    usable = tuple(dict.fromkeys(i for i in identifiers if len(i) <= MAX_PATIENT_ID_CHARACTERS))
    if not usable:
        raise OrderRejectedError(
            AckCode.ERROR,
            f"no patient identifier (PID-3) of at most {MAX_PATIENT_ID_CHARACTERS} characters",
        )
    return usable


@dataclass(frozen=True)
class OrderAnswer:
    """The ACK to send back, and its code (the listener treats a connection whose messages are
    all refused, AR, as one that has not shown it is a RIS)."""

    code: AckCode
    encoded: bytes


class MergeHandler(Protocol):
    """What answers patient merges on the order port (``gateway.patient_merges``)."""

    def handles(self, message: Er7Message) -> bool: ...
    def answer(self, message: Er7Message, sender: str) -> tuple[AckCode, str]: ...


def answer_order_message(
    session_factory: sessionmaker[Session],
    raw: bytes,
    allowed_senders: Collection[str] = (),
    merges: MergeHandler | None = None,
) -> OrderAnswer:
    """Store one order message and return the ACK to send back (AA, AE or AR).

    With ``allowed_senders`` (MSH-3 values), a message from any other sending application is
    answered AR and stored nowhere: an order puts its reason for exam into a model's prompt and
    its numbers into reports, so, as with calling AE titles, a site can name who may send one.
    With ``merges``, a patient merge it handles is answered by it instead of stored as an order.
    """
    now = utcnow()
    undecodable: CharacterSetError | None = None
    try:
        text, _declared = decode_message(raw)
    except CharacterSetError as error:
        text, undecodable = raw.decode("ascii", "replace"), error
    answered = AcknowledgedMessage.from_message(text)
    # The sender is checked first, whatever the bytes (an AE would count its connection as a
    # RIS's); readable text that is not HL7 at all is refused as such by ``parse_orders``.
    if allowed_senders and (undecodable is not None or text.startswith("MSH")):
        sender = _sending_application(answered)
        if sender not in allowed_senders:
            return _refuse_sender(answered, sender)
    if undecodable is not None:
        return _answer(answered, AckCode.ERROR, str(undecodable))
    if merges is not None and text.startswith("MSH"):
        try:
            message = Er7Message(text)
        except OrderRejectedError as error:
            return _answer(answered, error.code, error.reason)
        if merges.handles(message):
            code, reason = merges.answer(message, _sending_application(answered))
            return _answer(answered, code, reason)
    try:
        orders = parse_orders(text)
    except OrderRejectedError as error:
        log_event(logger, "gateway.order_refused", logging.WARNING, code=error.code.value)
        return _answer(answered, error.code, error.reason)
    try:
        with session_scope(session_factory) as session:
            session.add_all(_order_row(facts, text, now) for facts in orders)
    except SQLAlchemyError as error:
        log_event(logger, "gateway.order_not_stored", logging.ERROR, error=type(error).__name__)
        return _answer(answered, AckCode.ERROR, "cannot store the order now; send it again")
    log_event(
        logger,
        "gateway.order_stored",
        message_type=orders[0].message_type,
        order_control=",".join(dict.fromkeys(facts.order_control.value for facts in orders)),
        orders=len(orders),
    )
    return _answer(answered, AckCode.ACCEPT, "")


def _order_row(facts: OrderFacts, text: str, now: datetime) -> Order:
    """One order's row; each keeps the whole message it came in."""
    return Order(
        accession_number=facts.accession_number,
        placer_order_number=facts.placer_order_number or None,
        filler_order_number=facts.filler_order_number or None,
        message_type=facts.message_type,
        order_control=facts.order_control.value,
        reason_for_exam=facts.reason_for_exam or None,
        procedure=facts.procedure,
        patient_class=facts.patient_class or None,
        patient_ids=list(facts.patient_ids),
        raw_message=text,
        received_at=now,
    )


def _sending_application(answered: AcknowledgedMessage) -> str:
    """MSH-3's first component (its namespace id), unescaped, as ``RADRAFT_HL7_ALLOWED_SENDERS``
    names it."""
    delimiters = answered.delimiters
    return unescape(answered.sending_application.split(delimiters.component)[0], delimiters).strip()


def _refuse_sender(answered: AcknowledgedMessage, sender: str) -> OrderAnswer:
    """AR to a sending application not on ``RADRAFT_HL7_ALLOWED_SENDERS``, stored nowhere, with
    its name (made printable) logged."""
    log_event(
        logger,
        "gateway.order_sender_refused",
        logging.WARNING,
        sending_application=printable_token(sender) or "(empty)",
    )
    return _answer(answered, AckCode.REJECT, "sending application (MSH-3) not accepted here")


def refuse_oversized(error: FrameTooLargeError) -> bytes:
    """The AR for a message over the size limit, addressed by what its MSH says."""
    head = error.head.decode("latin-1").split("\r", 1)[0]
    answered = AcknowledgedMessage.from_message(head)
    return _encoded(answered, AckCode.REJECT, f"message larger than {error.limit} bytes")


def _answer(answered: AcknowledgedMessage, code: AckCode, text: str) -> OrderAnswer:
    return OrderAnswer(code, _encoded(answered, code, text))


def _encoded(answered: AcknowledgedMessage, code: AckCode, text: str) -> bytes:
    """The ACK, encoded in the character set of the message it answers."""
    ack = build_ack(answered, code, text=text, sent_at=utcnow(), control_id=uuid.uuid4().hex[:20])
    try:
        codec = python_codec(answered.character_set) if answered.character_set else "ascii"
    except ValueError:
        codec = "ascii"
    return ack.encode(codec, "replace")
