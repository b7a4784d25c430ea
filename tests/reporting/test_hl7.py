"""The ORU builder on its own: result statuses, escaping, structure read back by hl7apy."""

from __future__ import annotations

import hl7
import pytest

from radraft.enums import ReportState
from radraft.timeutil import utcnow
from reporting.hl7 import OruContent, ResultStatus, build_oru, parse


def content(state: ReportState, findings: str = "Lungs | clear ^ & ~ fine\\ok") -> OruContent:
    return OruContent(
        control_id="C1", sent_at=utcnow(), state=state, findings=findings,
        impression="Normal.", accession_number="ACC1", patient_id="P1",
        patient_name="DOE^JANE", interpreter="att&Attending&Alan",
    )  # fmt: skip


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
    order = message.oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_25.to_er7() == status.value
    assert order.obr.obr_18.to_er7() == "ACC1"
    statuses = {obs.obx.obx_11.to_er7() for obs in order.oru_r01_observation}
    assert statuses == {status.value}
    signed = status in (ResultStatus.FINAL, ResultStatus.CORRECTED)
    assert bool(order.obr.obr_32.to_er7()) is signed


def test_report_text_is_escaped_and_one_obx_per_line() -> None:
    er7 = build_oru(content(ReportState.FINAL, findings="line one | a\nline two ^ b"))
    obx_lines = [segment for segment in er7.split("\r") if segment.startswith("OBX")]
    assert len(obx_lines) == 3  # two findings lines, one impression line
    assert "line one \\F\\ a" in obx_lines[0]
    assert "line two \\S\\ b" in obx_lines[1]


def test_any_report_text_survives_a_second_parser() -> None:
    text = "Tube tip 2 cm above carina | R^L & ~ C:\\path 50% <ok>"
    parsed = hl7.parse(build_oru(content(ReportState.FINAL, findings=text)))
    obx = parsed.segments("OBX")[0]
    assert len(obx[5]) == 1, "no component split inside the text"
    assert parsed.unescape(str(obx[5])) == text
