"""Balanced, seeded allocation of cases and arms to readers.

The cases are shuffled once by the seed. Reader ``i`` of a role reads a contiguous window of
that order (windows spread evenly over the pool and wrapping at its end, so every case is read
about equally often), and the arm of the window's ``u``-th slot (counted from the pool's start,
without wrapping) is ``cycle[(u + i) % len(cycle)]``, where the cycle
interleaves the arms in proportion to their weights. Over a window each reader gets the arms
in proportion; over readers each case rotates through the arms (a Latin-square design when the
numbers divide). An attending arm that edits a resident's read is only given where a resident
read of that case in the needed arm exists, and then waits for it. Each reader's reads are
put in a seeded random order after their practice cases.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from radraft.enums import Arm, Role
from reporting.reader_study.arms import CHAINED_SOURCE
from reporting.reader_study.protocol import ProtocolError


@dataclass(frozen=True)
class Allocation:
    """One planned read; ``source`` is the (reader, case) read a chained arm edits."""

    reader: str
    role: Role
    case: str
    arm: Arm
    position: int
    practice: bool
    source: tuple[str, str] | None = None


def arm_cycle(weights: Mapping[Arm, int]) -> list[Arm]:
    """Arms interleaved in proportion to their weights: {A: 1, B: 2} -> [B, A, B]."""
    total = sum(weights.values())
    cycle: list[Arm] = []
    credit = dict.fromkeys(weights, 0.0)
    for _ in range(total):
        for arm, weight in weights.items():
            credit[arm] += weight / total
        chosen = max(credit, key=lambda arm: (credit[arm], -list(weights).index(arm)))
        credit[chosen] -= 1
        cycle.append(chosen)
    return cycle


def allocate(
    *,
    readers: Mapping[Role, Sequence[str]],
    cases: Sequence[str],
    practice_cases: Sequence[str],
    reads_per_reader: Mapping[Role, int],
    weights: Mapping[Role, Mapping[Arm, int]],
    seed: int,
) -> list[Allocation]:
    """The whole allocation table (residents first, since attendings may chain on them)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible allocation, not a secret
    order = list(cases)
    rng.shuffle(order)
    planned: list[Allocation] = []
    for role in (Role.RESIDENT, Role.ATTENDING):
        names = list(readers.get(role, ()))
        if not names:
            continue
        cycle = arm_cycle(weights[role])
        per_reader = reads_per_reader[role]
        for index, reader in enumerate(names):
            start = index * len(order) // len(names)
            window = [start + k for k in range(per_reader)]  # unwrapped: arms stay in step
            chosen = _arms_for_window(reader, index, window, order, cycle, planned)
            reads = [
                (order[u % len(order)], arm, source)
                for u, (arm, source) in zip(window, chosen, strict=True)
            ]
            rng.shuffle(reads)
            practice_arms = [arm for arm in cycle if arm not in CHAINED_SOURCE]
            practice = [
                Allocation(reader, role, case, practice_arms[k % len(practice_arms)], k, True)
                for k, case in enumerate(practice_cases if practice_arms else ())
            ]
            planned.extend(practice)
            planned.extend(
                Allocation(reader, role, case, arm, len(practice) + k, False, source)
                for k, (case, arm, source) in enumerate(reads)
            )
    return planned


def _arms_for_window(
    reader: str,
    index: int,
    window: Sequence[int],
    order: Sequence[str],
    cycle: Sequence[Arm],
    planned: Sequence[Allocation],
) -> list[tuple[Arm, tuple[str, str] | None]]:
    """The arm of each case of a reader's window, honouring chained arms' feasibility."""
    target = Counter(cycle[(u + index) % len(cycle)] for u in window)
    used: Counter[Arm] = Counter()
    uses_of_source: Counter[tuple[str, str]] = Counter(
        a.source for a in planned if a.source is not None
    )
    chosen: list[tuple[Arm, tuple[str, str] | None]] = []
    for u in window:
        case = order[u % len(order)]
        preferred = cycle[(u + index) % len(cycle)]
        ranked = [preferred] + [arm for arm in dict.fromkeys(cycle) if arm != preferred]
        candidates = [arm for arm in ranked if used[arm] < target[arm]] + ranked
        for arm in candidates:
            source = _source_read(arm, case, planned, uses_of_source)
            if arm not in CHAINED_SOURCE or source is not None:
                break
        else:
            raise ProtocolError(
                f"no arm possible for {reader} on case {case}: attending arms that edit a"
                " resident read need residents reading that case in the matching arm"
            )
        used[arm] += 1
        if source is not None:
            uses_of_source[source] += 1
        chosen.append((arm, source))
    return chosen


def _source_read(
    arm: Arm,
    case: str,
    planned: Sequence[Allocation],
    uses: Counter[tuple[str, str]],
) -> tuple[str, str] | None:
    """The least-used resident read of ``case`` in the arm ``arm`` chains on, if any."""
    if arm not in CHAINED_SOURCE:
        return None
    sources = [
        (a.reader, a.case)
        for a in planned
        if a.case == case and a.arm == CHAINED_SOURCE[arm] and not a.practice
    ]
    return min(sources, key=lambda s: uses[s]) if sources else None
