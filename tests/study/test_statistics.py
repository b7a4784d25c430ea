"""Statistics against hand computations, text metrics, and the power calculator."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from reporting.study.analysis.simulation import TimeModel, simulate_reads
from reporting.study.analysis.stats import arm_effect, fit_mixed_model, legacy_comparison, tost
from reporting.study.analysis.textmetrics import (
    bleu4,
    char_edit_distance,
    report_diff_percent,
    rouge_l,
    word_edit_rate,
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def test_legacy_figures_equal_a_hand_computation(backend: str) -> None:
    draft = pd.Series([100.0, 120.0, 80.0])
    scratch = pd.Series([150.0, 160.0, 170.0])
    legacy = legacy_comparison(draft, scratch)
    # ratio of pooled means: 100 / 160 -> 37.5% saving
    assert legacy.mean_arm == 100.0
    assert legacy.mean_reference == 160.0
    assert legacy.saving_percent == pytest.approx(37.5)
    # every draft time is below every scratch time: U = 0, and the exact two-sided p is
    # 2 / C(6, 3) = 2 / 20 = 0.1
    assert legacy.mann_whitney_u == 0.0
    assert legacy.p_value == pytest.approx(0.1)


def test_time_ratio_and_tost_by_hand(backend: str) -> None:
    effect = arm_effect("draft", "scratch", beta=math.log(0.64), se=0.1)
    assert effect.ratio == pytest.approx(0.64)
    assert effect.ratio_low == pytest.approx(0.64 * math.exp(-1.959964 * 0.1), rel=1e-6)
    assert effect.saving_percent == pytest.approx(36.0)
    equivalent = tost(arm_effect("a", "b", beta=0.02, se=0.05), margin=0.2)
    assert equivalent.equivalent
    assert equivalent.lower_bound == pytest.approx(0.8)
    assert equivalent.upper_bound == pytest.approx(1.25)
    # 90% CI: exp(0.02 -/+ 1.645 * 0.05)
    assert equivalent.ci90_low == pytest.approx(math.exp(0.02 - 1.644854 * 0.05), rel=1e-6)
    not_equivalent = tost(arm_effect("a", "b", beta=0.15, se=0.08), margin=0.2)
    assert not not_equivalent.equivalent


def test_text_metrics(backend: str) -> None:
    assert char_edit_distance("kitten", "sitting") == 3
    assert report_diff_percent("kitten", "sitting") == pytest.approx(300 / 7)
    assert word_edit_rate("no acute findings", "no acute findings seen") == pytest.approx(0.25)
    assert bleu4("the lungs are clear today", "the lungs are clear today") == pytest.approx(1.0)
    assert bleu4("completely different words here", "the lungs are clear") == 0.0
    # LCS of (a b c d) and (a c d e) is (a c d): P = R = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)


def test_power_calculator_prints_the_grid(backend: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "radraft.cli", "study", "power", "--readers", "2,4",
         "--cases", "40", "--simulations", "6", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    points = json.loads(completed.stdout)
    assert [(p["readers"], p["cases"]) for p in points] == [(2, 40), (4, 40)]
    assert all(0.0 <= p["power_difference"] <= 1.0 for p in points)
    assert points[1]["power_difference"] >= 0.8, "a 36% saving is found with 4 x 30 reads"


def test_random_reader_slope_with_enough_readers(backend: str) -> None:
    model = TimeModel(arm_ratios={"draft": 0.7})
    few = simulate_reads(model, readers=4, cases=40, reads_per_reader=20,
                         arms=["scratch", "draft"], rng=np.random.default_rng(3))  # fmt: skip
    many = simulate_reads(model, readers=8, cases=40, reads_per_reader=20,
                          arms=["scratch", "draft"], rng=np.random.default_rng(3))  # fmt: skip
    assert fit_mixed_model(few, role="resident", reference="scratch").random_slope is False
    fit = fit_mixed_model(many, role="resident", reference="scratch")
    assert fit.random_slope is True
    assert "(arm|reader)" in fit.formula
    (effect,) = fit.effects
    assert effect.ratio_low <= 0.7 <= effect.ratio_high
