"""The ORU builder on its own: result statuses, escaping, names, structure read back twice."""

from __future__ import annotations

import hl7
import pytest

from radraft.enums import ReportState
from radraft.timeutil import utcnow
from reporting.hl7 import CodedValue, OruContent, ResultStatus, build_oru, parse, person_name_to_xpn

CHEST = CodedValue("36643-5", "XR Chest 2 Views", "LN")


def content(
    state: ReportState, findings: str = "Lungs | clear ^ & ~ fine\\ok", **more: object
) -> OruContent:
    defaults: dict[str, object] = {
        "control_id": "C1", "sent_at": utcnow(), "state": state, "findings": findings,
        "impression": "Normal.", "accession_number": "ACC1", "patient_id": "P1",
        "procedure": CHEST, "patient_name": "DOE^JANE",
        "interpreter": ("att", "Attending", "Alan"),
    }  # fmt: skip
    return OruContent(**{**defaults, **more})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (ReportState.DRAFTED, ResultStatus.RESULTS_STORED),
        (ReportState.PRELIMINARY, ResultStatus.PRELIMINARY),
        (ReportState.FINAL, ResultStatus.FINAL),
        (ReportState.AMENDED, ResultStatus.CORRECTED),
    ],
)
def test_result_status_and_structure(state: ReportState, status: ResultStatus) -> None:
    message = parse(build_oru(content(state)))
    assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert message.msh.msh_18.to_er7() == "UNICODE UTF-8"
    order = message.oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_25.to_er7() == status.value
    assert order.obr.obr_18.to_er7() == "ACC1"
    assert order.obr.obr_4.to_er7() == "36643-5^XR Chest 2 Views^LN"
    statuses = {obs.obx.obx_11.to_er7() for obs in order.oru_r01_observation}
    assert statuses == {status.value}
    signed = status in (ResultStatus.FINAL, ResultStatus.CORRECTED)
    assert bool(order.obr.obr_32.to_er7()) is signed
    assert message.oru_r01_patient_result.oru_r01_patient.oru_r01_visit.pv1.pv1_2.to_er7() == "U"


def test_report_text_is_escaped_and_one_obx_per_line_with_section_sub_ids() -> None:
    er7 = build_oru(content(ReportState.FINAL, findings="line one | a\nline two ^ b"))
    obx_lines = [segment.split("|") for segment in er7.split("\r") if segment.startswith("OBX")]
    assert len(obx_lines) == 3  # two findings lines, one impression line
    assert obx_lines[0][5] == "line one \\F\\ a"
    assert obx_lines[1][5] == "line two \\S\\ b"
    assert [line[4] for line in obx_lines] == ["1", "1", "2"], "OBX-4 groups a section's lines"
    assert [line[1] for line in obx_lines] == ["1", "2", "3"]


def test_any_report_text_survives_a_second_parser() -> None:
    text = "Tube tip 2 cm above carina | R^L & ~ C:\\path 50% <ok> Jürgen 山田"
    parsed = hl7.parse(build_oru(content(ReportState.FINAL, findings=text)))
    obx = parsed.segments("OBX")[0]
    assert len(obx[5]) == 1, "no component split inside the text"
    assert parsed.unescape(str(obx[5])) == text


def test_pid_carries_the_assigning_authority_and_the_order_patient_class() -> None:
    parsed = hl7.parse(
        build_oru(content(ReportState.FINAL, assigning_authority="HOSP", patient_class="I"))
    )
    assert str(parsed.segment("PID")[3]) == "P1^^^HOSP^MR"
    assert str(parsed.segment("PV1")[2]) == "I"


@pytest.mark.parametrize(
    ("person_name", "xpn"),
    [
        ("DOE^JANE", "DOE^JANE"),
        ("Müller^José", "Müller^José"),
        (
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            "Yamada^Tarou^^^^^^A~山田^太郎^^^^^^I~やまだ^たろう^^^^^^P",
        ),
        ("Wang^XiaoDong=王^小東=", "Wang^XiaoDong^^^^^^A~王^小東^^^^^^I"),
        ("Smith^John^Q^Dr^Jr", "Smith^John^Q^Jr^Dr"),
    ],
)
def test_dicom_person_names_become_xpn_repetitions(person_name: str, xpn: str) -> None:
    assert person_name_to_xpn(person_name) == xpn


def test_japanese_name_reads_back_group_by_group() -> None:
    parsed = hl7.parse(
        build_oru(content(ReportState.FINAL, patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう"))
    )
    repetitions = parsed.segment("PID")[5]
    groups = ["^".join(str(repetition[index]) for index in range(2)) for repetition in repetitions]
    assert groups == ["Yamada^Tarou", "山田^太郎", "やまだ^たろう"]
    assert [str(repetition[7]) for repetition in repetitions] == ["A", "I", "P"]
