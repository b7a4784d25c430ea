"""ADT^A40 (merge patient) on the order port: read it, merge, rewrite the files, answer.

With ``RADRAFT_HL7_PATIENT_MERGES`` on, the order listener hands an ADT^A40 here instead of
refusing it as "not an order". The message names the prior identifier in MRG-1 and the
surviving patient in PID; ``radraft.patient_merge`` moves the studies, and their spooled files
are rewritten for the surviving patient in the same transaction (``gateway.patient_files``), so
DICOMweb serves them under it and a re-send from the merged PACS lands on the same files.
Every failure is answered AE with its reason and changes nothing; the sender sends it again.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.orders import Er7Message, OrderRejectedError
from gateway.patient_files import PatientFileMove, PatientFilesError
from gateway.spool import Spool
from radraft.hl7ack import AckCode
from radraft.logs import log_event, printable_token
from radraft.patient_merge import PatientMerge, merge_patient
from radraft.timeutil import utcnow

logger = logging.getLogger(__name__)

MERGE_TYPES = {("ADT", "A40")}
MAX_ID_CHARACTERS = 64
"""A DICOM Patient ID (LO) or Issuer of Patient ID."""
MAX_NAME_COMPONENT_CHARACTERS = 64
"""A DICOM Person Name component group holds at most 64 characters."""
SEXES = {"M": "M", "F": "F", "O": "O"}
"""HL7 table 0001 values DICOM's Patient's Sex can say; others (U, A, N) leave a study's own."""
DATE = re.compile(r"\d{8}")


def parse_merge(message: Er7Message) -> PatientMerge:
    """The prior identifier and the surviving patient of an ADT^A40.

    Raises
    ------
    OrderRejectedError
        AE with the reason, if an identifier is missing or too long, or the name too long.
    """
    pid, mrg = message.first("PID"), message.first("MRG")
    patient_id = message.field(pid, 3)
    prior_id = message.field(mrg, 1)
    if not patient_id:
        raise OrderRejectedError(AckCode.ERROR, "no surviving patient identifier (PID-3)")
    if not prior_id:
        raise OrderRejectedError(AckCode.ERROR, "no prior patient identifier (MRG-1)")
    issuer, prior_issuer = message.field(pid, 3, 3, 0), message.field(mrg, 1, 3, 0)
    if max(map(len, (patient_id, prior_id, issuer, prior_issuer))) > MAX_ID_CHARACTERS:
        raise OrderRejectedError(
            AckCode.ERROR, f"a patient identifier or authority over {MAX_ID_CHARACTERS} characters"
        )
    birth = message.field(pid, 7)[:8]
    return PatientMerge(
        prior_patient_id=prior_id,
        prior_issuer=prior_issuer,
        patient={
            "patient_id": patient_id,
            "issuer_of_patient_id": issuer,
            "patient_name": _person_name(message, pid),
            "patient_birth_date": birth if DATE.fullmatch(birth) else "",
            "patient_sex": SEXES.get(message.field(pid, 8).upper(), ""),
        },
    )


def _person_name(message: Er7Message, pid: list[str] | None) -> str:
    """PID-5 (XPN: family^given^middle^suffix^prefix) as a DICOM PN (family^given^middle^prefix^
    suffix), trailing empty components dropped."""
    family, given, middle, suffix, prefix = (
        message.field(pid, 5, 0, 0),
        *(message.field(pid, 5, number) for number in (1, 2, 3, 4)),
    )
    components = [family, given, middle, prefix, suffix]
    if any(len(part) > MAX_NAME_COMPONENT_CHARACTERS for part in components):
        raise OrderRejectedError(
            AckCode.ERROR,
            f"a patient name component over {MAX_NAME_COMPONENT_CHARACTERS} characters",
        )
    return "^".join(components).rstrip("^")


class PatientMerges:
    """Applies ADT^A40 merges to the database and the spool (``RADRAFT_HL7_PATIENT_MERGES``)."""

    def __init__(self, session_factory: sessionmaker[Session], spool: Spool) -> None:
        self._session_factory = session_factory
        self._spool = spool

    def handles(self, message: Er7Message) -> bool:
        """Whether the message is a merge radraft follows (MSH-9)."""
        msh = message.first("MSH")
        return (message.field(msh, 9, 0), message.field(msh, 9, 1)) in MERGE_TYPES

    def answer(self, message: Er7Message, sender: str) -> tuple[AckCode, str]:
        """Merge; the ACK's code and text (AA says how many studies moved)."""
        try:
            merge = parse_merge(message)
        except OrderRejectedError as error:
            log_event(logger, "gateway.merge_refused", logging.WARNING, code=error.code.value)
            return error.code, error.reason
        move = PatientFileMove(self._spool)
        try:
            with move.transaction(self._session_factory) as session:
                merged = merge_patient(
                    session,
                    merge,
                    actor=f"hl7:{printable_token(sender) or 'unknown'}",
                    now=utcnow(),
                )
                for study in merged:
                    move.rewrite(session, study.study_id, study.patient)
        except PatientFilesError as error:
            log_event(logger, "gateway.merge_not_applied", logging.ERROR, reason="files")
            return AckCode.ERROR, str(error)
        except SQLAlchemyError as error:
            log_event(logger, "gateway.merge_not_applied", logging.ERROR,
                      reason=type(error).__name__)  # fmt: skip
            return AckCode.ERROR, "cannot record the merge now; send it again"
        log_event(logger, "gateway.patient_merged", studies=len(merged), files=move.files)
        return AckCode.ACCEPT, f"merged {len(merged)} studies"
