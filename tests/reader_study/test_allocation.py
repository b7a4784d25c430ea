"""Protocol checks and the balanced, seeded allocation."""

from __future__ import annotations

from collections import Counter

import pytest

from radraft.enums import Arm, Role
from reporting.reader_study.arms import CHAINED_SOURCE
from reporting.reader_study.assignment import allocate, arm_cycle
from reporting.reader_study.protocol import ProtocolError, parse_protocol

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
CASES = [f"c{i}" for i in range(50)]
RESIDENT_WEIGHTS = {Arm.RESIDENT_SCRATCH: 1, Arm.RESIDENT_MODEL: 2}
ATTENDING_WEIGHTS = {
    Arm.ATTENDING_RESIDENT_SCRATCH: 1,
    Arm.ATTENDING_MODEL: 1,
    Arm.ATTENDING_RESIDENT_MODEL: 1,
}


def chexagent_design(seed: int) -> list:  # type: ignore[type-arg]
    return allocate(
        readers={Role.RESIDENT: ["r0", "r1", "r2", "r3"], Role.ATTENDING: ["a0", "a1", "a2"]},
        cases=CASES,
        practice_cases=["p0", "p1"],
        reads_per_reader={Role.RESIDENT: 30, Role.ATTENDING: 30},
        weights={Role.RESIDENT: RESIDENT_WEIGHTS, Role.ATTENDING: ATTENDING_WEIGHTS},
        seed=seed,
    )


def test_arm_cycle_interleaves_in_proportion(backend: str) -> None:
    cycle = arm_cycle(RESIDENT_WEIGHTS)
    assert Counter(cycle) == {Arm.RESIDENT_SCRATCH: 1, Arm.RESIDENT_MODEL: 2}
    assert arm_cycle({Arm.RESIDENT_SCRATCH: 2, Arm.RESIDENT_MODEL: 2})[:2] != [
        Arm.RESIDENT_SCRATCH,
        Arm.RESIDENT_SCRATCH,
    ]


def test_allocation_is_balanced_seeded_and_chains_on_resident_reads(backend: str) -> None:
    table = chexagent_design(seed=3)
    assert table == chexagent_design(seed=3), "the seed reproduces the table"
    assert table != chexagent_design(seed=4)
    by_reader: dict[str, list] = {}  # type: ignore[type-arg]
    for row in table:
        by_reader.setdefault(row.reader, []).append(row)
    for reader, rows in by_reader.items():
        study_rows = [r for r in rows if not r.practice]
        assert len(study_rows) == 30
        assert len({r.case for r in study_rows}) == 30, f"{reader} reads a case twice"
        assert sorted(r.position for r in rows) == list(range(len(rows)))
        practice = [r for r in rows if r.practice]
        assert practice, "every reader has practice reads"
        assert max(r.position for r in practice) < min(r.position for r in study_rows)
        arms = Counter(r.arm for r in study_rows)
        if reader.startswith("r"):
            assert arms == {Arm.RESIDENT_SCRATCH: 10, Arm.RESIDENT_MODEL: 20}, reader
        else:
            assert max(arms.values()) - min(arms.values()) <= 4, (reader, arms)
        first_half = Counter(r.arm for r in study_rows if r.position < 17)
        assert len(first_half) >= 2, "arms are interleaved, not blocked"
    resident_arms_per_case = {
        case: {r.arm for r in table if r.case == case and r.role == Role.RESIDENT} for case in CASES
    }
    read_twice = [arms for arms in resident_arms_per_case.values() if arms]
    both = sum(1 for arms in read_twice if len(arms) == 2)
    assert both / len(read_twice) > 0.5, "cases rotate through the arms across readers"
    residents = {(r.reader, r.case): r for r in table if r.role == Role.RESIDENT}
    for row in table:
        if row.arm in CHAINED_SOURCE:
            assert row.source is not None
            source = residents[row.source]
            assert source.case == row.case
            assert source.arm == CHAINED_SOURCE[row.arm]
        else:
            assert row.source is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("arms:\n  resident: {scratch: 1, typo: 2}\n", "unknown resident arm 'typo'"),
        ("reads_per_reader: {resident: 99}\n", "between 1 and the 3 cases"),
        ("practice_cases: [c1]\n", "practice cases are also study cases"),
        ("readers: {admin: [x]}\n", "only residents and attendings read"),
        ("seed: [not a number]\n", "seed"),
        ("colour: blue\n", "colour"),
    ],
)
def test_protocol_errors_name_the_problem(change: str, message: str, backend: str) -> None:
    base = {
        "name": "name: s1\n",
        "seed": "seed: 1\n",
        "readers": "readers: {resident: [r0]}\n",
        "cases": "cases: [c1, c2, c3]\n",
        "reads_per_reader": "reads_per_reader: {resident: 2}\n",
        "arms": "arms:\n  resident: {scratch: 1, model: 2}\n",
    }
    key = change.split(":")[0]
    text = "".join(value for name, value in base.items() if name != key) + change
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(")):
        parse_protocol(text)


def test_protocol_that_is_not_yaml_is_refused(backend: str) -> None:
    with pytest.raises(ProtocolError, match="not valid YAML"):
        parse_protocol("name: [unclosed")
    with pytest.raises(ProtocolError, match="mapping"):
        parse_protocol("- just a list")
