"""Choosing the patient identifier of an ADT message whose PID-3 and MRG-1 repeat."""

from __future__ import annotations

import re

import pytest

from gateway.adt_identifiers import NotOurPatientError
from gateway.er7 import Er7Message, OrderRejectedError
from gateway.patient_merges import parse_merges, parse_update

UPDATE = (
    "MSH|^~\\&|ADT|HOSP|RADRAFT|HOSP|20261203010000||ADT^A08^ADT_A01|UPD0002|P|2.5\r"
    "PID|1||{pid3}||Doe^Jane||19700101|F\r"
)
MERGE = (
    "MSH|^~\\&|ADT|HOSP|RADRAFT|HOSP|20261203010000||ADT^A40^ADT_A39|MRG0002|P|2.5\r"
    "PID|1||{pid3}||Doe^Jane||19700101|F\r"
    "MRG|{mrg1}\r"
)


def _updated_identifier(pid3: str, authority: str = "") -> tuple[str, str]:
    patient = parse_update(Er7Message(UPDATE.format(pid3=pid3)), authority=authority).patient
    return patient["patient_id"], patient["issuer_of_patient_id"]


@pytest.mark.parametrize(
    ("pid3", "authority", "chosen"),
    [
        ("PAT-5^^^HOSP^MR", "", ("PAT-5", "HOSP")),
        ("PAT-5", "", ("PAT-5", "")),
        ("E-77^^^ENT^PI~PAT-5^^^HOSP^MR~998877^^^SSA^SS", "", ("PAT-5", "HOSP")),
        ("E-77^^^ENT^PI~PAT-5^^^HOSP^mr", "", ("PAT-5", "HOSP")),
        ("PAT-5^^^HOSP^MR~PAT-5^^^HOSP^MR", "", ("PAT-5", "HOSP")),
        ("~~PAT-5^^^HOSP^PI~", "", ("PAT-5", "HOSP")),
        ("C-1^^^CLINIC^MR~PAT-5^^^HOSP^PI", "HOSP", ("PAT-5", "HOSP")),
        ("C-1^^^CLINIC^MR~PAT-5^^^HOSP&1.2.3&ISO^PI", "HOSP", ("PAT-5", "HOSP")),
        ("C-1^^^CLINIC^MR~PAT-5", "HOSP", ("PAT-5", "")),
        ("C-1^^^CLINIC^MR~H-1^^^HOSP^PI~PAT-5^^^HOSP^MR", "HOSP", ("PAT-5", "HOSP")),
        ("P\\T\\5^^^HOSP^MR", "", ("P&5", "HOSP")),
    ],
)
def test_the_identifier_studies_are_filed_under_is_chosen_not_the_first(
    pid3: str, authority: str, chosen: tuple[str, str]
) -> None:
    assert _updated_identifier(pid3, authority) == chosen


@pytest.mark.parametrize(
    ("pid3", "authority"),
    [
        ("E-77^^^ENT^PI~PAT-5^^^HOSP^PI", ""),
        ("E-77^^^ENT^MR~PAT-5^^^HOSP^MR", ""),
        ("E-77~PAT-5", ""),
        ("H-1^^^HOSP^MR~PAT-5^^^HOSP^MR", "HOSP"),
        ("C-1^^^CLINIC^MR~H-1~PAT-5", "HOSP"),
    ],
)
def test_identifiers_that_cannot_be_told_apart_are_refused_not_guessed(
    pid3: str, authority: str
) -> None:
    with pytest.raises(OrderRejectedError) as refused:
        _updated_identifier(pid3, authority)
    assert refused.value.code.value == "AE"
    assert "RADRAFT_HL7_ASSIGNING_AUTHORITY" in refused.value.reason


def test_a_patient_of_other_authorities_only_is_not_ours() -> None:
    with pytest.raises(NotOurPatientError, match="no identifier of HOSP in PID-3"):
        _updated_identifier("C-1^^^CLINIC^MR~998877^^^SSA^SS", "HOSP")


def test_more_repetitions_than_a_ris_sends_are_refused() -> None:
    with pytest.raises(OrderRejectedError, match="more than 32 patient identifiers"):
        _updated_identifier("~".join(f"ID-{n}^^^A{n}^PI" for n in range(33)))


def test_a_merge_chooses_in_mrg_1_and_pid_3_alike() -> None:
    (merge,) = parse_merges(
        Er7Message(
            MERGE.format(
                pid3="E-77^^^ENT^PI~MRN-42^^^HOSP^MR", mrg1="E-12^^^ENT^PI~TEMP-9^^^HOSP^MR"
            )
        )
    )
    assert (merge.prior_patient_id, merge.prior_issuer) == ("TEMP-9", "HOSP")
    assert merge.patient["patient_id"] == "MRN-42"


def test_a_merge_whose_surviving_patient_is_of_another_authority_is_refused() -> None:
    message = Er7Message(MERGE.format(pid3="C-1^^^CLINIC^MR", mrg1="TEMP-9^^^HOSP^MR"))
    with pytest.raises(OrderRejectedError, match="no identifier of HOSP in PID-3"):
        parse_merges(message, authority="HOSP")
    prior_elsewhere = Er7Message(MERGE.format(pid3="MRN-42^^^HOSP^MR", mrg1="C-9^^^CLINIC^MR"))
    with pytest.raises(NotOurPatientError, match="no identifier of HOSP in MRG-1"):
        parse_merges(prior_elsewhere, authority="HOSP")


def _merges(*pairs: tuple[str, str]) -> Er7Message:
    """An ADT_A39 with one patient group (PID, MRG) per pair."""
    header = MERGE.split("PID|")[0]
    groups = "".join(f"PID|1||{pid3}||Doe^Jane\rMRG|{mrg1}\r" for pid3, mrg1 in pairs)
    return Er7Message(header + groups)


def test_every_patient_group_of_a_merge_message_is_read_in_order() -> None:
    merges = parse_merges(
        _merges(("MRN-2^^^HOSP^MR", "TEMP-1^^^HOSP^MR"), ("MRN-3^^^HOSP^MR", "TEMP-2^^^HOSP^MR")),
        authority="HOSP",
    )
    assert [(m.prior_patient_id, m.patient["patient_id"]) for m in merges] == [
        ("TEMP-1", "MRN-2"), ("TEMP-2", "MRN-3"),
    ]  # fmt: skip
    mixed = parse_merges(
        _merges(("C-2^^^CLINIC^MR", "C-1^^^CLINIC^MR"), ("MRN-3^^^HOSP^MR", "TEMP-2^^^HOSP^MR")),
        authority="HOSP",
    )
    assert [m.prior_patient_id for m in mixed] == ["TEMP-2"], "another domain's pair left out"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            Er7Message(MERGE.format(pid3="MRN-2", mrg1="TEMP-1") + "PID|1||MRN-3\r"),
            "2 PID and 1 MRG segments",
        ),
        (_merges(*[(f"M-{n}", f"T-{n}") for n in range(101)]), "more than 100 merges"),
        (_merges(("MRN-2", "TEMP-1"), ("MRN-3", "")), "no prior patient identifier (MRG-1)"),
    ],
)
def test_a_merge_message_whose_groups_do_not_all_read_is_refused_whole(
    message: Er7Message, reason: str
) -> None:
    with pytest.raises(OrderRejectedError, match=re.escape(reason)):
        parse_merges(message)
