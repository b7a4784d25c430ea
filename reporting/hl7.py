"""HL7 v2.5.1 ORU^R01 of a report revision, written as escaped ER7 and checked with hl7apy.

OBR-25 and every OBX-11 carry the result status: R for an unverified model draft ("results
stored, not yet verified"; never P, which receivers such as dcm4chee read as a verified
preliminary report), P for a resident's preliminary report, F for the signed report, C for a
correction (amendment), W when a result sent for the wrong patient is withdrawn. Every value
is escaped, so report text never splits into fields or components; names keep their DICOM
groups as XPN repetitions with name representation codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hl7apy.core import Message
from hl7apy.parser import parse_message

from radraft.enums import ReportState
from radraft.hl7ack import HL7_VERSION, hl7_timestamp
from radraft.hl7text import escape

__all__ = [
    "CodedValue",
    "OruContent",
    "ResultStatus",
    "build_oru",
    "person_name_to_xpn",
]

FINDINGS_CODE = ("18782-3", "Radiology Study observation (narrative)", "LN")
IMPRESSION_CODE = ("19005-8", "Radiology Imaging study [Impression] (narrative)", "LN")
NAME_REPRESENTATIONS = ("A", "I", "P")
"""XPN-8 Name Representation Code (HL7 table 4000) of DICOM PN groups 1, 2, 3: alphabetic,
ideographic, phonetic."""
UNKNOWN_PATIENT_CLASS = "U"


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
    WRONG = "W"
    """Post original as wrong, e.g. transmitted for the wrong patient: a withdrawal."""


RESULT_STATUS_FOR_STATE: Mapping[ReportState, ResultStatus] = {
    ReportState.DRAFTED: ResultStatus.RESULTS_STORED,
    ReportState.PRELIMINARY: ResultStatus.PRELIMINARY,
    ReportState.FINAL: ResultStatus.FINAL,
    ReportState.AMENDED: ResultStatus.CORRECTED,
}


@dataclass(frozen=True)
class CodedValue:
    """A CE/CWE value: identifier, text and coding system (each escaped on writing)."""

    code: str
    text: str
    system: str

    def er7(self) -> str:
        """The value as ER7 components."""
        return "^".join(escape(part) for part in (self.code, self.text, self.system)).rstrip("^")


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
    procedure: CodedValue
    patient_name: str = ""
    """A DICOM PN (groups separated by ``=``), written as XPN repetitions."""
    assigning_authority: str = ""
    birth_date: str = ""
    sex: str = ""
    patient_class: str = UNKNOWN_PATIENT_CLASS
    placer_order_number: str = ""
    filler_order_number: str = ""
    observed_at: str = ""
    """OBR-7, an HL7 DTM with its UTC offset (the study's date and time)."""
    interpreter: tuple[str, str, str] | None = None
    """OBR-32: user id, family name, given name of the signing physician."""
    sending_application: str = "RADRAFT"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    character_set: str = "UNICODE UTF-8"
    withdrawn: bool = False
    """The result is withdrawn as another patient's: status W, everything else as it was sent."""

    @property
    def result_status(self) -> ResultStatus:
        """OBR-25 for this revision's state, or W for a withdrawal."""
        return ResultStatus.WRONG if self.withdrawn else RESULT_STATUS_FOR_STATE[self.state]


def person_name_to_xpn(person_name: str) -> str:
    """A DICOM PN as XPN repetitions: one per group, components reordered, XPN-8 set.

    DICOM PN components are family^given^middle^prefix^suffix; XPN's are family^given^middle^
    suffix^prefix^degree^type^representation. A name with one group stays plain.
    """
    groups = person_name.split("=")
    repetitions = []
    for index, group in enumerate(groups):
        if not group and index:
            continue
        parts = (group.split("^") + [""] * 5)[:5]
        family, given, middle, prefix, suffix = (escape(part) for part in parts)
        components = [family, given, middle, suffix, prefix]
        if len(groups) > 1 and index < len(NAME_REPRESENTATIONS):
            components += ["", "", NAME_REPRESENTATIONS[index]]
        repetitions.append("^".join(components).rstrip("^"))
    return "~".join(repetitions)


def _segment(name: str, fields: Mapping[int, str]) -> str:
    """A segment with the given (already escaped) fields in HL7 numbering, empty ones between."""
    if not fields:
        return name
    values = [""] * (max(fields) + 1)
    values[0] = name
    for number, value in fields.items():
        values[number] = value
    return "|".join(values)


def build_oru(content: OruContent) -> str:
    """The ORU^R01 as ER7 text (segments separated by carriage returns)."""
    status = content.result_status.value
    signed = content.state.is_signed
    patient_id = escape(content.patient_id)
    if content.assigning_authority:
        patient_id += f"^^^{escape(content.assigning_authority)}^MR"
    msh = "MSH|^~\\&|" + "|".join(
        (
            escape(content.sending_application),
            escape(content.sending_facility),
            escape(content.receiving_application),
            escape(content.receiving_facility),
            hl7_timestamp(content.sent_at),
            "",
            "ORU^R01^ORU_R01",
            escape(content.control_id),
            "P",
            HL7_VERSION,
            "",
            "",
            "",
            "",
            "",
            escape(content.character_set),
        )
    )
    filler = escape(content.filler_order_number or content.accession_number)
    placer = escape(content.placer_order_number)
    obr: dict[int, str] = {
        1: "1",
        2: placer,
        3: filler,
        4: content.procedure.er7(),
        18: escape(content.accession_number),
        22: hl7_timestamp(content.sent_at),
        24: "RAD",
        25: status,
    }
    if content.observed_at:
        obr[7] = content.observed_at
    if signed and content.interpreter is not None:
        obr[32] = "&".join(escape(part) for part in content.interpreter)
    segments = [
        msh,
        _segment(
            "PID",
            {
                1: "1",
                3: patient_id,
                5: person_name_to_xpn(content.patient_name),
                7: escape(content.birth_date),
                8: escape(content.sex[:1]),
            },
        ),
        _segment("PV1", {1: "1", 2: escape(content.patient_class or UNKNOWN_PATIENT_CLASS)}),
        _segment(
            "ORC",
            {1: "RE", 2: placer, 3: filler, 5: "CM" if signed else "IP"},
        ),
        _segment("OBR", obr),
        *_observations(content, status),
    ]
    return "\r".join(segments)


def _observations(content: OruContent, status: str) -> Sequence[str]:
    """One TX OBX per line; OBX-4 groups the lines of a section (1 findings, 2 impression)."""
    out = []
    set_id = 0
    for sub_id, (code, text) in enumerate(
        ((FINDINGS_CODE, content.findings), (IMPRESSION_CODE, content.impression)), start=1
    ):
        identifier = CodedValue(*code).er7()
        for line in text.splitlines() or [""]:
            set_id += 1
            out.append(
                _segment(
                    "OBX",
                    {
                        1: str(set_id),
                        2: "TX",
                        3: identifier,
                        4: str(sub_id),
                        5: escape(line),
                        11: status,
                    },
                )
            )
    return out


def parse(er7: str) -> Message:
    """Parse ER7 text with hl7apy (groups resolved, validation tolerant)."""
    return parse_message(er7.replace("\n", "\r").strip("\r"), find_groups=True)
