"""Synthetic reading times from the primary model, with known effects (power, tests, demos).

log(seconds) = log(baseline) + log(ratio of the arm) + position_effect * position
               + reader effect + case effect + residual, the effects normal with the given SDs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TimeModel:
    """Parameters of simulated reading times."""

    baseline_seconds: float = 150.0
    arm_ratios: Mapping[str, float] = field(default_factory=dict)
    """Time ratio of each arm against the reference (missing arms: 1)."""
    reader_sd: float = 0.30
    case_sd: float = 0.25
    residual_sd: float = 0.35
    position_effect: float = 0.0
    """Change of log time per earlier read (a learning curve when negative)."""

    def log_mean(self, arm: str, position: int) -> float:
        """Expected log seconds for a read without random effects."""
        ratio = self.arm_ratios.get(arm, 1.0)
        return math.log(self.baseline_seconds) + math.log(ratio) + self.position_effect * position


def simulate_reads(
    model: TimeModel,
    *,
    readers: int,
    cases: int,
    reads_per_reader: int,
    arms: list[str],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """A balanced crossed design (cyclic windows, rotating arms) with simulated active times."""
    reader_effects = rng.normal(0, model.reader_sd, readers)
    case_effects = rng.normal(0, model.case_sd, cases)
    rows = []
    for reader in range(readers):
        start = reader * cases // readers
        window = [(start + k) % cases for k in range(reads_per_reader)]
        order = rng.permutation(len(window))
        for position, slot in enumerate(order):
            case = window[slot]
            arm = arms[(case + reader) % len(arms)]
            log_time = (
                model.log_mean(arm, position)
                + reader_effects[reader]
                + case_effects[case]
                + rng.normal(0, model.residual_sd)
            )
            rows.append(
                {
                    "reader": f"reader{reader}",
                    "case": f"case{case}",
                    "arm": arm,
                    "position": position,
                    "active_s": math.exp(log_time),
                }
            )
    return pd.DataFrame(rows)
