"""HL7 v2.5.1 ORU^R01 of a report revision (hl7apy), and the ACKs radraft sends and reads.

OBR-25 and every OBX-11 carry the result status: R for an unverified model draft ("results
stored, not yet verified"; never P, which receivers such as dcm4chee read as a verified
preliminary report), P for a resident's preliminary report, F for the signed report, C for a
correction (amendment).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hl7apy.core import Message
from hl7apy.parser import parse_message, parse_segment

from radraft.enums import ReportState
from radraft.hl7ack import HL7_VERSION, AckCode, ack_code_of, build_ack, hl7_timestamp

__all__ = ["AckCode", "OruContent", "ResultStatus", "ack_code_of", "build_ack", "build_oru"]

FINDINGS_CODE = "18782-3^Radiology Study observation (narrative)^LN"
IMPRESSION_CODE = "19005-8^Radiology Imaging study [Impression] (narrative)^LN"
DEFAULT_PROCEDURE = "36643-5^XR Chest 2 Views^LN"


class ResultStatus(StrEnum):
    """OBR-25 / OBX-11 result status (HL7 table 0123 / 0085)."""

    RESULTS_STORED = "R"
    """Results stored, not yet verified: the model's draft."""
    PRELIMINARY = "P"
    """A resident's preliminary report."""
    FINAL = "F"
    """The attending's signed report."""
    CORRECTED = "C"
    """A correction of a signed report (amendment)."""


RESULT_STATUS_FOR_STATE = {
    ReportState.DRAFTED: ResultStatus.RESULTS_STORED,
    ReportState.PRELIMINARY: ResultStatus.PRELIMINARY,
    ReportState.FINAL: ResultStatus.FINAL,
    ReportState.AMENDED: ResultStatus.CORRECTED,
}


@dataclass(frozen=True)
class OruContent:
    """What one ORU^R01 says; ids and text come from the database, never guessed."""

    control_id: str
    sent_at: datetime
    state: ReportState
    findings: str
    impression: str
    accession_number: str
    patient_id: str
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    placer_order_number: str = ""
    filler_order_number: str = ""
    procedure: str = DEFAULT_PROCEDURE
    observed_at: datetime | None = None
    interpreter: str = ""
    sending_application: str = "RADRAFT"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""

    @property
    def result_status(self) -> ResultStatus:
        """OBR-25 for this revision's state."""
        return RESULT_STATUS_FOR_STATE[self.state]


def build_oru(content: OruContent) -> str:
    """The ORU^R01 as ER7 text (segments separated by carriage returns)."""
    message = Message("ORU_R01", version=HL7_VERSION)
    msh = message.msh
    msh.msh_3 = content.sending_application
    msh.msh_4 = content.sending_facility
    msh.msh_5 = content.receiving_application
    msh.msh_6 = content.receiving_facility
    msh.msh_7 = hl7_timestamp(content.sent_at)
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = content.control_id
    msh.msh_11 = "P"
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.pid.pid_1 = "1"
    patient.pid.pid_3 = content.patient_id
    patient.pid.pid_5 = content.patient_name
    patient.pid.pid_7 = content.birth_date
    patient.pid.pid_8 = content.sex[:1]
    visit = patient.add_group("ORU_R01_VISIT")
    visit.pv1.pv1_1 = "1"
    visit.pv1.pv1_2 = "O"
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    status = content.result_status.value
    order.orc.orc_1 = "RE"
    order.orc.orc_2 = content.placer_order_number
    order.orc.orc_3 = content.filler_order_number or content.accession_number
    order.orc.orc_5 = "CM" if status in ("F", "C") else "IP"
    order.obr.obr_1 = "1"
    order.obr.obr_2 = content.placer_order_number
    order.obr.obr_3 = content.filler_order_number or content.accession_number
    order.obr.obr_4 = content.procedure
    if content.observed_at is not None:
        order.obr.obr_7 = hl7_timestamp(content.observed_at)
    order.obr.obr_18 = content.accession_number
    order.obr.obr_22 = hl7_timestamp(content.sent_at)
    order.obr.obr_24 = "RAD"
    order.obr.obr_25 = status
    if content.interpreter and status in ("F", "C"):
        order.obr.obr_32 = content.interpreter
    set_id = 0
    for code, text in ((FINDINGS_CODE, content.findings), (IMPRESSION_CODE, content.impression)):
        for line in text.splitlines() or [""]:
            set_id += 1
            observation = order.add_group("ORU_R01_OBSERVATION")
            # Built from escaped ER7: hl7apy escapes | ~ \ in a value but leaves ^ and & as
            # separators, which would split report text into components.
            observation.obx = parse_segment(
                f"OBX|{set_id}|TX|{code}||{escape_text(line)}||||||{status}", version=HL7_VERSION
            )
    return str(message.to_er7())


def escape_text(value: str) -> str:
    """HL7 escape sequences for free text (v2.5.1 section 2.7.1); the escape character first."""
    for raw, escaped in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"),
                         ("&", "\\T\\"), ("~", "\\R\\")):  # fmt: skip
        value = value.replace(raw, escaped)
    return value


def parse(er7: str) -> Message:
    """Parse ER7 text with hl7apy (groups resolved, validation tolerant)."""
    return parse_message(er7.replace("\n", "\r").strip("\r"), find_groups=True)
