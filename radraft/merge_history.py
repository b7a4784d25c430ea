"""Which patient an identifier became: the merges radraft was told of, followed in order.

An ADT merge moves the studies radraft holds then (``radraft.patient_merge``), but the merge
outlives that moment. A modality that read its worklist before the merge still sends the
remaining views of a study under the prior identifier, and a study of a patient registered
under a temporary number may arrive after that number was merged away. Filed under the prior
identifier, the late view would contradict its study's patient (an identity dispute that holds
the report, for what the ADT system already resolved) and a late study would go out under a
number the RIS no longer files by. So every merge is kept, and an identifier is followed through
the merges made after one another (A merged into B, later B into C: A is C). This is what a PACS
does too (dcm4chee accepts a study's instances under its patient's merged identifiers).

Only merges later than the one just followed are followed, so a chain ends, and an identifier
merged back (B into A after A into B) is itself again. An assigning authority, when both the
merge and the identifier name one, must agree: the same number from another authority is
another patient.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.orm import Session

from radraft.models import PatientMergeRecord

MAX_MERGES_FOLLOWED = 16
"""A longer chain is not a real patient's history; past it the identifier is taken as it is."""
MERGES = cast(Table, PatientMergeRecord.__table__)
MERGES_OF = (
    select(MERGES.c.id, MERGES.c.prior_issuer, MERGES.c.patient)
    .where(MERGES.c.prior_patient_id == bindparam("patient_id"), MERGES.c.id > bindparam("after"))
    .order_by(MERGES.c.id.desc())
)


def surviving_patients(
    connection: Connection | Session, patient_id: str, issuer: str = ""
) -> list[dict[str, str]]:
    """The patients ``patient_id`` was merged into, in the order of the merges (empty: never
    merged); each is the surviving Patient module as its ADT said it."""
    chain: list[dict[str, str]] = []
    after = 0
    current, current_issuer = patient_id, issuer
    while current and len(chain) < MAX_MERGES_FOLLOWED:
        record = next(
            (
                row
                for row in connection.execute(MERGES_OF, {"patient_id": current, "after": after})
                if same_authority(row.prior_issuer, current_issuer)
            ),
            None,
        )
        if record is None:
            break
        patient = {name: str(value or "") for name, value in dict(record.patient).items()}
        chain.append(patient)
        after = record.id
        current = patient.get("patient_id", "")
        current_issuer = patient.get("issuer_of_patient_id") or current_issuer
    return chain


def merged_into(
    connection: Connection | Session, claimed_id: str | None, claimed_issuer: str | None, known: str
) -> bool:
    """Whether the identifier ``claimed_id`` was merged (directly or through later merges) into
    the patient ``known``."""
    if not claimed_id or not known or claimed_id == known:
        return False
    return any(
        patient.get("patient_id") == known
        for patient in surviving_patients(connection, claimed_id, claimed_issuer or "")
    )


def merged_patient(
    connection: Connection | Session, patient: dict[str, Any]
) -> dict[str, Any] | None:
    """``patient`` (Patient module values) as the merges made it: each merge's non-empty values
    over the ones before, as the merges would have moved a study held then; None if its
    identifier was never merged."""
    chain = surviving_patients(
        connection,
        str(patient.get("patient_id") or ""),
        str(patient.get("issuer_of_patient_id") or ""),
    )
    if not chain:
        return None
    merged = dict(patient)
    for surviving in chain:
        merged.update({name: value for name, value in surviving.items() if value})
    return merged


def same_authority(issuer: str | None, other: str | None) -> bool:
    """Whether two assigning authorities allow one patient: equal, or either not given (the
    same number from another authority is another patient)."""
    return not (issuer and other and issuer != other)
