"""Power by simulation from the primary model: readers x cases grid.

For each design, datasets are drawn from ``TimeModel`` and fitted with the primary mixed
model; power is the share of fits with p < alpha for the arm effect, and the share whose TOST
concludes equivalence at the margin (the attending question). The model's spread can come
from a pilot study (``time_model_from_pilot``), the effect always from the plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from radraft.enums import Role
from radraft.errors import RadraftError
from reporting.reader_study.analysis.dataset import analysed_reads, comparable_reads
from reporting.reader_study.analysis.simulation import TimeModel, simulate_reads
from reporting.reader_study.analysis.stats import MixedModelFit, fit_mixed_model, tost
from reporting.reader_study.arms import REFERENCE_ARM


class PilotError(RadraftError):
    """A pilot study's reads cannot give a planning model (the message says what is missing)."""


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


def time_model_from_pilot(
    reads: pd.DataFrame, *, role: Role, ratio: float
) -> tuple[TimeModel, MixedModelFit]:
    """A planning model whose spread is a pilot's and whose effect is the planned ``ratio``.

    Reader, case and residual SDs, the learning curve and the reference arm's geometric-mean
    time come from the primary model fitted to the pilot's reads of ``role``. The pilot's own
    arm effect is deliberately not used: power computed from an observed effect only restates
    that estimate's p-value, and a small pilot's effect is too noisy to plan on.
    """
    if reads.empty:
        raise PilotError("the pilot has no submitted reads")
    own = comparable_reads(analysed_reads(reads), role)
    reference = REFERENCE_ARM[role]
    if own is None:
        raise PilotError(f"the pilot has no analysable {role} reads in {reference} and another arm")
    fit = fit_mixed_model(own, role=role, reference=reference)
    reference_times = own.loc[own["arm"] == reference, "active_s"].astype(float)
    model = TimeModel(
        baseline_seconds=float(np.exp(np.log(reference_times).mean())),
        arm_ratios={"draft": ratio},
        reader_sd=_sd(fit.reader_variance),
        case_sd=_sd(fit.case_variance),
        residual_sd=_sd(fit.residual_variance),
        position_effect=fit.position_beta,
    )
    return model, fit


def _sd(variance: float) -> float:
    """A variance component as an SD; a component the fit could not estimate counts as 0."""
    return math.sqrt(variance) if math.isfinite(variance) and variance > 0 else 0.0
