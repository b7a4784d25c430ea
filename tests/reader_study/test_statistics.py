"""Statistics against hand computations, text metrics, and the power calculator."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from radraft.enums import Role
from reporting.reader_study.analysis.power import PilotError, time_model_from_pilot
from reporting.reader_study.analysis.simulation import TimeModel, simulate_reads
from reporting.reader_study.analysis.stats import (
    arm_effect,
    fit_mixed_model,
    legacy_comparison,
    tost,
)
from reporting.reader_study.analysis.textmetrics import (
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
        [sys.executable, "-m", "radraft_cli", "reader-study", "power", "--readers", "2,4",
         "--cases", "40", "--simulations", "6", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    assert printed["model"]["arm_ratios"] == {"draft": 0.64}
    points = printed["points"]
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


def test_pilot_gives_the_planning_spread_but_not_its_effect(backend: str) -> None:
    planted = TimeModel(baseline_seconds=120.0, arm_ratios={"resident_model": 0.5},
                        reader_sd=0.3, case_sd=0.25, residual_sd=0.35)  # fmt: skip
    reads = simulate_reads(planted, readers=10, cases=80, reads_per_reader=40,
                           arms=["resident_scratch", "resident_model"],
                           rng=np.random.default_rng(5))  # fmt: skip
    reads = reads.assign(role="resident", practice=False)
    model, fit = time_model_from_pilot(reads, role=Role.RESIDENT, ratio=0.8)
    assert fit.n_reads == 400
    assert model.arm_ratios == {"draft": 0.8}, "the planned effect, not the pilot's 0.5"
    assert model.residual_sd == pytest.approx(0.35, rel=0.15)
    assert 0.1 <= model.reader_sd <= 0.6
    assert 0.1 <= model.case_sd <= 0.45
    # the geometric mean of the reference arm carries the reader and case draws of the pilot
    assert 80 <= model.baseline_seconds <= 180


def test_pilot_without_the_reference_arm_is_refused(backend: str) -> None:
    reads = simulate_reads(TimeModel(), readers=3, cases=20, reads_per_reader=10,
                           arms=["resident_model"], rng=np.random.default_rng(1))  # fmt: skip
    with pytest.raises(PilotError, match="no analysable resident reads in resident_scratch"):
        time_model_from_pilot(reads.assign(role="resident", practice=False),
                              role=Role.RESIDENT, ratio=0.64)  # fmt: skip
    with pytest.raises(PilotError, match="no submitted reads"):
        time_model_from_pilot(pd.DataFrame(), role=Role.ATTENDING, ratio=1.0)
