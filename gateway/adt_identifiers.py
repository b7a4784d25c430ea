"""Which of an ADT message's patient identifiers is the one radraft's studies are filed under.

PID-3 and MRG-1 repeat: an ADT system lists every identifier it knows for the patient (the
hospital's medical record number, an enterprise number, a national or an insurer's number) in
an order of its own, and a study's Patient ID is one of them, from one authority. Taking the
first repetition moved or renamed the studies of whichever number came first: with an
enterprise number first, a merge wrote that number into the studies and their files, and the
next amendment went out under an identifier the RIS does not file results by.

So the identifier is chosen by its assigning authority (CX.4) when
``RADRAFT_HL7_ASSIGNING_AUTHORITY`` names one (the authority radraft's ORUs state), else it is
the only one, else the only one typed MR (CX.5, HL7 table 0203: medical record number). A
message with several and none told apart is refused rather than guessed, and one with no
identifier of the configured authority is about a patient of another domain: not radraft's.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.er7 import Er7Message, OrderRejectedError
from gateway.orders import MAX_PATIENT_IDENTIFIERS
from radraft.hl7ack import AckCode

MEDICAL_RECORD_NUMBER = "MR"
"""HL7 table 0203's identifier type code of a medical record number."""


@dataclass(frozen=True)
class PatientIdentifier:
    """One repetition of a CX field."""

    value: str
    """CX.1 ID Number."""
    authority: str
    """CX.4.1 the assigning authority's namespace (empty: not given)."""
    type_code: str
    """CX.5 Identifier Type Code (MR, PI, SS...; empty: not given)."""


class NotOurPatientError(Exception):
    """The message names the patient only under other authorities: nothing of radraft's."""


def identifiers_of(
    message: Er7Message, segment: list[str] | None, number: int
) -> list[PatientIdentifier]:
    """Every repetition of a CX field with an ID (PID-3, MRG-1), unescaped.

    Raises
    ------
    OrderRejectedError
        AE, if the field repeats more than ``MAX_PATIENT_IDENTIFIERS`` times.
    """
    count = message.repetition_count(segment, number)
    if count > MAX_PATIENT_IDENTIFIERS:
        raise OrderRejectedError(
            AckCode.ERROR, f"more than {MAX_PATIENT_IDENTIFIERS} patient identifiers"
        )
    found = (
        PatientIdentifier(
            value=message.field(segment, number, 0, repetition=index),
            authority=message.field(segment, number, 3, 0, repetition=index),
            type_code=message.field(segment, number, 4, repetition=index).upper(),
        )
        for index in range(count)
    )
    return [identifier for identifier in found if identifier.value]


def choose_identifier(
    identifiers: list[PatientIdentifier], authority: str, field: str
) -> PatientIdentifier:
    """The identifier radraft's studies are filed under, from a non-empty list.

    With ``authority`` set, only its identifiers (or, if it has none, those that name no
    authority) are candidates; without, all are.

    Raises
    ------
    NotOurPatientError
        If ``authority`` is set and every identifier names another one.
    OrderRejectedError
        AE, if several candidates remain and none is the only medical record number.
    """
    candidates = identifiers
    if authority:
        candidates = [i for i in identifiers if i.authority == authority] or [
            i for i in identifiers if not i.authority
        ]
        if not candidates:
            raise NotOurPatientError(f"no identifier of {authority} in {field}")
    for narrowed in (candidates, [i for i in candidates if i.type_code == MEDICAL_RECORD_NUMBER]):
        if len({(i.value, i.authority) for i in narrowed}) == 1:
            return narrowed[0]
    raise OrderRejectedError(
        AckCode.ERROR,
        f"{field} names {len(candidates)} identifiers and none can be chosen as the one studies "
        "are filed under: set RADRAFT_HL7_ASSIGNING_AUTHORITY, or type one of them MR",
    )
