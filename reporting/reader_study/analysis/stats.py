"""The statistics of a timing study, each with the formula it implements in its docstring.

Primary: log(active seconds) ~ arm + position + (1 | reader) + (1 | case), a linear mixed
model with crossed random intercepts (statsmodels MixedLM: one group holding every read, the
reader and case effects as variance components). exp(beta_arm) is the time ratio of the arm
against the role's reference arm, 1 - ratio the saving, both with Wald 95% CIs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Summary:
    """Seconds: n, mean +/- SD, median [IQR], geometric mean."""

    n: int
    mean: float
    sd: float
    median: float
    q1: float
    q3: float
    geometric_mean: float


def describe(seconds: pd.Series) -> Summary:
    """Summary of positive times (SD with n - 1)."""
    values = seconds.to_numpy(dtype=float)
    return Summary(
        n=len(values),
        mean=float(values.mean()),
        sd=float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
        median=float(np.median(values)),
        q1=float(np.percentile(values, 25)),
        q3=float(np.percentile(values, 75)),
        geometric_mean=float(np.exp(np.log(values).mean())),
    )


@dataclass(frozen=True)
class LegacyComparison:
    """The CheXagent paper's figures: ratio of pooled means and an unpaired Mann-Whitney U."""

    mean_arm: float
    mean_reference: float
    saving_percent: float
    """100 * (1 - mean_arm / mean_reference); no confidence interval, as in the paper."""
    mann_whitney_u: float
    p_value: float


def legacy_comparison(arm: pd.Series, reference: pd.Series) -> LegacyComparison:
    """Ratio of pooled means and a two-sided Mann-Whitney U test (reads as if independent)."""
    result = scipy_stats.mannwhitneyu(arm, reference, alternative="two-sided")
    mean_arm, mean_reference = float(arm.mean()), float(reference.mean())
    return LegacyComparison(
        mean_arm=mean_arm,
        mean_reference=mean_reference,
        saving_percent=100.0 * (1 - mean_arm / mean_reference),
        mann_whitney_u=float(result.statistic),
        p_value=float(result.pvalue),
    )


@dataclass(frozen=True)
class ArmEffect:
    """One arm against the reference arm: log-scale coefficient and time ratio with CIs."""

    arm: str
    reference: str
    beta: float
    se: float
    p_value: float
    ratio: float
    ratio_low: float
    ratio_high: float
    saving_percent: float
    saving_low: float
    saving_high: float


@dataclass(frozen=True)
class MixedModelFit:
    """The primary model of one role."""

    role: str
    n_reads: int
    n_readers: int
    n_cases: int
    formula: str
    random_slope: bool
    reader_variance: float
    case_variance: float
    residual_variance: float
    position_beta: float
    effects: list[ArmEffect]
    converged: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def arm_effect(arm: str, reference: str, beta: float, se: float) -> ArmEffect:
    """Wald z-test and 95% CI, turned into a time ratio and a % saving."""
    z = beta / se
    low, high = beta - Z_95 * se, beta + Z_95 * se
    return ArmEffect(
        arm=arm,
        reference=reference,
        beta=beta,
        se=se,
        p_value=float(2 * scipy_stats.norm.sf(abs(z))),
        ratio=math.exp(beta),
        ratio_low=math.exp(low),
        ratio_high=math.exp(high),
        saving_percent=100 * (1 - math.exp(beta)),
        saving_low=100 * (1 - math.exp(high)),
        saving_high=100 * (1 - math.exp(low)),
    )


def fit_mixed_model(
    reads: pd.DataFrame,
    *,
    role: str,
    reference: str,
    outcome: str = "active_s",
    random_slope_min_readers: int = 6,
) -> MixedModelFit:
    """log(outcome) ~ arm + position + (1|reader) + (1|case) [+ (arm|reader) with enough readers].

    ``reads`` holds one role's analysed reads with columns reader, case, arm, position and
    ``outcome`` (seconds, > 0).
    """
    data = reads.assign(log_time=np.log(reads[outcome].astype(float))).reset_index(drop=True)
    data["one"] = 1
    arms = [reference, *sorted(set(data["arm"]) - {reference})]
    data["arm"] = pd.Categorical(data["arm"], categories=arms)
    formula = f"log_time ~ C(arm, Treatment('{reference}')) + position"
    components = {"reader": "0 + C(reader)", "case": "0 + C(case)"}
    slope = data["reader"].nunique() >= random_slope_min_readers and len(arms) == 2
    if slope:
        data["treated"] = (data["arm"] != reference).astype(float)
        components["reader_slope"] = "0 + C(reader):treated"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; ``converged`` is reported
        model = smf.mixedlm(formula, data, groups="one", vc_formula=components, re_formula="0")
        result = model.fit(reml=True, method=["lbfgs", "powell"])
    names = list(model.exog_names)
    effects = []
    for arm in arms[1:]:
        term = f"C(arm, Treatment('{reference}'))[T.{arm}]"
        index = names.index(term)
        effects.append(
            arm_effect(arm, reference, float(result.fe_params.iloc[index]),
                       float(result.bse_fe.iloc[index]))
        )  # fmt: skip
    variances = dict(zip(model.exog_vc.names, np.atleast_1d(result.vcomp), strict=True))
    return MixedModelFit(
        role=role,
        n_reads=len(data),
        n_readers=int(data["reader"].nunique()),
        n_cases=int(data["case"].nunique()),
        formula=formula + " + (1|reader) + (1|case)" + (" + (arm|reader)" if slope else ""),
        random_slope=slope,
        reader_variance=float(variances.get("reader", float("nan"))),
        case_variance=float(variances.get("case", float("nan"))),
        residual_variance=float(result.scale),
        position_beta=float(result.fe_params["position"]),
        effects=effects,
        converged=bool(result.converged),
    )


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests on the log time ratio against the margin [1 - m, 1 / (1 - m)]."""

    arm: str
    margin: float
    lower_bound: float
    upper_bound: float
    ratio: float
    ci90_low: float
    ci90_high: float
    p_value: float
    equivalent: bool


def tost(effect: ArmEffect, margin: float, alpha: float = 0.05) -> Equivalence:
    """Equivalent when both one-sided tests reject, i.e. the 90% CI lies inside the margin."""
    low, high = math.log(1 - margin), -math.log(1 - margin)
    p_low = float(scipy_stats.norm.sf((effect.beta - low) / effect.se))
    p_high = float(scipy_stats.norm.cdf((effect.beta - high) / effect.se))
    z90 = scipy_stats.norm.ppf(1 - alpha)
    p_value = max(p_low, p_high)
    return Equivalence(
        arm=effect.arm,
        margin=margin,
        lower_bound=math.exp(low),
        upper_bound=math.exp(high),
        ratio=effect.ratio,
        ci90_low=math.exp(effect.beta - z90 * effect.se),
        ci90_high=math.exp(effect.beta + z90 * effect.se),
        p_value=p_value,
        equivalent=p_value < alpha,
    )


def fixed_effects_ratio(reads: pd.DataFrame, *, arm: str, reference: str, outcome: str) -> float:
    """exp(beta) of OLS log(time) ~ arm + position + reader dummies (the bootstrap's estimator)."""
    data = reads[reads["arm"].isin([arm, reference])]
    y = np.log(data[outcome].to_numpy(dtype=float))
    readers = pd.get_dummies(data["reader"], dtype=float).to_numpy()
    design = np.column_stack(
        [(data["arm"] == arm).to_numpy(dtype=float), data["position"].to_numpy(float), readers]
    )
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.exp(beta[0]))


@dataclass(frozen=True)
class BootstrapInterval:
    """Two-way cluster bootstrap (readers and cases resampled independently)."""

    arm: str
    replicates: int
    ratio: float
    ratio_low: float
    ratio_high: float


def cluster_bootstrap(
    reads: pd.DataFrame,
    *,
    arm: str,
    reference: str,
    outcome: str = "active_s",
    replicates: int = 400,
    seed: int = 0,
) -> BootstrapInterval:
    """Percentile 95% CI of the fixed-effects time ratio.

    Each replicate draws readers and cases with replacement; a read enters once per pair of
    draws of its reader and its case (the pigeonhole bootstrap for crossed designs).
    """
    rng = np.random.default_rng(seed)
    readers = reads["reader"].unique()
    cases = reads["case"].unique()
    ratios = []
    for _ in range(replicates):
        reader_counts = pd.Series(rng.choice(readers, len(readers))).value_counts()
        case_counts = pd.Series(rng.choice(cases, len(cases))).value_counts()
        weights = reads["reader"].map(reader_counts).fillna(0) * reads["case"].map(
            case_counts
        ).fillna(0)
        sample = reads.loc[reads.index.repeat(weights.astype(int))].copy()
        if sample["arm"].nunique() < 2 or sample["reader"].nunique() < 2:
            continue
        ratios.append(fixed_effects_ratio(sample, arm=arm, reference=reference, outcome=outcome))
    low, high = np.percentile(ratios, [2.5, 97.5])
    return BootstrapInterval(
        arm=arm,
        replicates=len(ratios),
        ratio=fixed_effects_ratio(reads, arm=arm, reference=reference, outcome=outcome),
        ratio_low=float(low),
        ratio_high=float(high),
    )
