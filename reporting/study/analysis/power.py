"""Power by simulation from the primary model: readers x cases grid.

For each design, datasets are drawn from ``TimeModel`` and fitted with the primary mixed
model; power is the share of fits with p < alpha for the arm effect, and the share whose TOST
concludes equivalence at the margin (the attending question).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reporting.study.analysis.simulation import TimeModel, simulate_reads
from reporting.study.analysis.stats import fit_mixed_model, tost


@dataclass(frozen=True)
class PowerPoint:
    """Power of one design."""

    readers: int
    cases: int
    reads_per_reader: int
    simulations: int
    power_difference: float
    power_equivalence: float


def power_grid(
    model: TimeModel,
    *,
    arms: Sequence[str],
    readers: Sequence[int],
    cases: Sequence[int],
    reads_per_reader: int,
    simulations: int,
    margin: float = 0.20,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[PowerPoint]:
    """Power over the grid; ``arms[0]`` is the reference arm."""
    rng = np.random.default_rng(seed)
    points = []
    for n_readers in readers:
        for n_cases in cases:
            per_reader = min(reads_per_reader, n_cases)
            different = equivalent = 0
            for _ in range(simulations):
                reads = simulate_reads(
                    model,
                    readers=n_readers,
                    cases=n_cases,
                    reads_per_reader=per_reader,
                    arms=list(arms),
                    rng=rng,
                )
                effect = fit_mixed_model(reads, role="simulated", reference=arms[0]).effects[0]
                different += effect.p_value < alpha
                equivalent += tost(effect, margin, alpha).equivalent
            points.append(
                PowerPoint(
                    n_readers,
                    n_cases,
                    per_reader,
                    simulations,
                    different / simulations,
                    equivalent / simulations,
                )
            )
    return points
