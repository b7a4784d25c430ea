"""ADT merges and updates on the order port: read them, apply, rewrite the files, answer.

With ``RADRAFT_HL7_PATIENT_MERGES`` on, the order listener hands these ADT events here instead
of refusing them as "not an order":

- A40 (merge patient) and A47 (change patient identifier list) name the prior identifier in
  MRG-1 and the surviving patient in PID; the studies of the prior identifier move to it.
- A08 (update patient information) and A31 (update person information) name the patient in PID
  as registration has it now; the studies of its identifier take its name, birth date and sex.

``radraft.patient_merge`` changes the studies, and their spooled files are rewritten in the
same transaction (``gateway.patient_files``), so DICOMweb serves them under the patient as it is
now and a re-send from the PACS (which follows the same feed) lands on the same files. Every
failure is answered AE with its reason and changes nothing; the sender sends it again.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.adt_identifiers import NotOurPatientError, choose_identifier, identifiers_of
from gateway.er7 import Er7Message, OrderRejectedError
from gateway.patient_files import PatientFileMove, PatientFilesError
from gateway.spool import Spool
from radraft.hl7ack import AckCode
from radraft.logs import log_event, printable_token
from radraft.patient_merge import PatientMerge, PatientUpdate, merge_patient, update_patient
from radraft.timeutil import utcnow

logger = logging.getLogger(__name__)

MERGE_EVENTS = frozenset({"A40", "A47"})
UPDATE_EVENTS = frozenset({"A08", "A31"})
MAX_ID_CHARACTERS = 64
"""A DICOM Patient ID (LO) or Issuer of Patient ID."""
MAX_NAME_COMPONENT_CHARACTERS = 64
"""A DICOM Person Name component group holds at most 64 characters."""
SEXES = {"M": "M", "F": "F", "O": "O"}
"""HL7 table 0001 values DICOM's Patient's Sex can say; others (U, A, N) leave a study's own."""
DATE = re.compile(r"\d{8}")
MAX_MERGES_PER_MESSAGE = 100
"""Patient groups read from one ADT_A39 (more is a batch, which belongs in several messages)."""


def parse_merges(
    message: Er7Message, event: str = "A40", authority: str = ""
) -> list[PatientMerge]:
    """Every merge of an ADT^A40 or A47: ADT_A39 repeats its patient group (PID ... MRG), so
    one message may merge several patients, and each PID pairs with the MRG that follows it.
    Identifiers are the ones of ``authority`` (``gateway.adt_identifiers``); a pair whose prior
    patient has none is left out (not ours).

    Raises
    ------
    OrderRejectedError
        AE with the reason, if the PID and MRG segments do not pair up, there are more than
        ``MAX_MERGES_PER_MESSAGE``, or any pair has an identifier missing, ambiguous or too
        long, or a name too long: nothing of the message is applied then.
    NotOurPatientError
        If no pair's prior patient has an identifier of ``authority``.
    """
    pids, mrgs = message.segments.get("PID", []), message.segments.get("MRG", [])
    if not mrgs:
        raise OrderRejectedError(AckCode.ERROR, "no prior patient identifier (MRG-1)")
    if len(pids) != len(mrgs):
        raise OrderRejectedError(
            AckCode.ERROR,
            f"{len(pids)} PID and {len(mrgs)} MRG segments: each merge needs one of each",
        )
    if len(mrgs) > MAX_MERGES_PER_MESSAGE:
        raise OrderRejectedError(
            AckCode.ERROR, f"more than {MAX_MERGES_PER_MESSAGE} merges in one message"
        )
    merges: list[PatientMerge] = []
    not_ours: list[NotOurPatientError] = []
    for pid, mrg in zip(pids, mrgs, strict=True):
        try:
            merges.append(_merge(message, pid, mrg, event, authority))
        except NotOurPatientError as error:
            not_ours.append(error)
    if not merges:
        raise not_ours[0]
    return merges


def _merge(
    message: Er7Message, pid: list[str], mrg: list[str], event: str, authority: str
) -> PatientMerge:
    priors = identifiers_of(message, mrg, 1)
    if not priors:
        raise OrderRejectedError(AckCode.ERROR, "no prior patient identifier (MRG-1)")
    prior = choose_identifier(priors, authority, "MRG-1")
    _check_identifier(prior.value, prior.authority)
    try:
        patient = _patient(message, pid, "surviving patient identifier", authority)
    except NotOurPatientError as error:
        raise OrderRejectedError(
            AckCode.ERROR, f"{error}: the prior patient's studies would have no identifier"
        ) from error
    return PatientMerge(prior.value, prior.authority, patient, event)


def parse_update(message: Er7Message, event: str = "A08", authority: str = "") -> PatientUpdate:
    """The patient of an ADT^A08 or A31, as registration has it now.

    Raises
    ------
    OrderRejectedError
        AE with the reason, if the identifier is missing, ambiguous or too long, or the name
        too long.
    NotOurPatientError
        If the patient has no identifier of ``authority``.
    """
    patient = _patient(message, message.first("PID"), "patient identifier", authority)
    return PatientUpdate(patient, event)


def _patient(
    message: Er7Message, pid: list[str] | None, role: str, authority: str
) -> dict[str, str]:
    """PID as ``PATIENT_FIELDS``: the identifier of PID-3 studies are filed under with its
    assigning authority, the name as a DICOM PN, the birth date if it is a date, the sex if
    DICOM can say it."""
    identifiers = identifiers_of(message, pid, 3)
    if not identifiers:
        raise OrderRejectedError(AckCode.ERROR, f"no {role} (PID-3)")
    chosen = choose_identifier(identifiers, authority, "PID-3")
    _check_identifier(chosen.value, chosen.authority)
    birth = message.field(pid, 7)[:8]
    return {
        "patient_id": chosen.value,
        "issuer_of_patient_id": chosen.authority,
        "patient_name": _person_name(message, pid),
        "patient_birth_date": birth if DATE.fullmatch(birth) else "",
        "patient_sex": SEXES.get(message.field(pid, 8).upper(), ""),
    }


def _check_identifier(patient_id: str, issuer: str) -> None:
    if max(len(patient_id), len(issuer)) > MAX_ID_CHARACTERS:
        raise OrderRejectedError(
            AckCode.ERROR, f"a patient identifier or authority over {MAX_ID_CHARACTERS} characters"
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
    """Applies ADT merges and updates to the database and the spool
    (``RADRAFT_HL7_PATIENT_MERGES``)."""

    def __init__(
        self, session_factory: sessionmaker[Session], spool: Spool, authority: str = ""
    ) -> None:
        self._session_factory = session_factory
        self._spool = spool
        self._authority = authority
        """``RADRAFT_HL7_ASSIGNING_AUTHORITY``: whose identifiers the studies are filed under."""

    def handles(self, message: Er7Message) -> bool:
        """Whether the message is an ADT event radraft follows (MSH-9)."""
        return _event(message) in MERGE_EVENTS | UPDATE_EVENTS

    def answer(self, message: Er7Message, sender: str) -> tuple[AckCode, str]:
        """Merge or update; the ACK's code and text (AA says how many studies changed)."""
        event = _event(message) or ""
        merging = event in MERGE_EVENTS
        verb = "merged" if merging else "updated"
        try:
            changes = (
                parse_merges(message, event, self._authority)
                if merging
                else [parse_update(message, event, self._authority)]
            )
        except OrderRejectedError as error:
            log_event(logger, "gateway.merge_refused", logging.WARNING, code=error.code.value)
            return error.code, error.reason
        except NotOurPatientError as error:
            log_event(logger, "gateway.merge_not_ours", trigger=event)
            return AckCode.ACCEPT, f"{verb} 0 studies: {error}"
        actor = f"hl7:{printable_token(sender) or 'unknown'}"
        move = PatientFileMove(self._spool)
        try:
            with move.transaction(self._session_factory) as session:
                changed = self._apply(session, changes, actor)
                for study_id, patient in changed.items():
                    move.rewrite(session, study_id, patient)
        except PatientFilesError as error:
            log_event(logger, "gateway.merge_not_applied", logging.ERROR, reason="files")
            return AckCode.ERROR, str(error)
        except SQLAlchemyError as error:
            log_event(logger, "gateway.merge_not_applied", logging.ERROR,
                      reason=type(error).__name__)  # fmt: skip
            return (
                AckCode.ERROR,
                f"cannot record the {'merge' if merging else 'update'} now; send it again",
            )
        log_event(logger, f"gateway.patient_{verb}", trigger=event, studies=len(changed),
                  files=move.files)  # fmt: skip
        return AckCode.ACCEPT, f"{verb} {len(changed)} studies"

    @staticmethod
    def _apply(
        session: Session, changes: list[PatientMerge] | list[PatientUpdate], actor: str
    ) -> dict[int, dict[str, str]]:
        """Apply each change in order (a later merge may move a study an earlier one moved);
        each changed study's Patient module as it ends, for its files (rewritten once)."""
        changed: dict[int, dict[str, str]] = {}
        now = utcnow()
        for change in changes:
            studies = (
                merge_patient(session, change, actor=actor, now=now)
                if isinstance(change, PatientMerge)
                else update_patient(session, change, actor=actor, now=now)
            )
            changed.update((study.study_id, study.patient) for study in studies)
        return changed


def _event(message: Er7Message) -> str | None:
    """The trigger event of an ADT message (MSH-9.2); None for any other message type."""
    msh = message.first("MSH")
    return message.field(msh, 9, 1) if message.field(msh, 9, 0) == "ADT" else None
