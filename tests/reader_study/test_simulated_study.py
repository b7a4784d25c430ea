"""Acceptance: a simulated study through the API, analysed by ``radraft reader-study analyze``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from radraft.settings import Settings, settings_to_environment
from reporting.reader_study.analysis.plots import PLOTS
from reporting.reader_study.analysis.report import fmt
from reporting.reader_study.analysis.simulation import TimeModel, simulate_reads
from reporting.reader_study.analysis.stats import fit_mixed_model
from reporting.web.app import create_app
from tests.reader_study.simulated import PlantedStudy, build_world, protocol_yaml, run_reads
from tests.reporting.web_support import login

RESIDENT_RATIO = 0.64  # the CheXagent paper's 36% saving
PRACTICE = "1.2.826.0.1.3680043.99.50"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_planted_saving_is_recovered_and_attendings_are_equivalent(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    residents, attendings, cases = build_world(session_factory, residents=4, attendings=4,
                                               cases=51)  # fmt: skip
    protocol = protocol_yaml("sim", residents, attendings, cases[:50], reads_per_reader=30,
                             seed=7, practice=[PRACTICE])  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as admin:
        created = admin.post("/api/reader-studies", json={"protocol": protocol},
                             headers=login(admin, "admin"))  # fmt: skip
        assert created.status_code == 201, created.text
        planted = PlantedStudy(arm_ratios={"resident_model": RESIDENT_RATIO})
        readers = dict.fromkeys(residents, "resident") | dict.fromkeys(attendings, "attending")
        done = run_reads(app, "sim", planted, readers, seed=11)
    assert set(done.values()) == {31}, "30 reads and one practice read each"
    out = tmp_path / "analysis"
    completed = subprocess.run(
        [sys.executable, "-m", "radraft_cli", "reader-study", "analyze", "sim", "--out", str(out),
         "--bootstrap", "200"],
        env=settings_to_environment(settings) | {"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["practice_reads_excluded"] == 8
    assert results["reads_analysed"] == 240

    (resident,) = results["mixed"]["resident"]["effects"]
    assert resident["arm"] == "resident_model"
    assert resident["ratio_low"] <= RESIDENT_RATIO <= resident["ratio_high"]
    assert resident["p_value"] < 0.05
    boot = results["bootstrap"]["resident"]["resident_model"]
    assert boot["ratio_low"] <= RESIDENT_RATIO <= boot["ratio_high"]
    equivalence = results["equivalence"]["attending"]["attending_model"]
    assert equivalence["equivalent"] is True
    assert 0.8 <= equivalence["ci90_low"] <= equivalence["ci90_high"] <= 1.25

    for name in PLOTS:
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    assert (out / "reads.csv").exists()
    assert (out / "events.csv").exists()
    check_report_numbers(out / "report.html", results)
    assert "time ratio" in completed.stdout
    check_pilot_planning(settings, results["mixed"]["resident"])


def check_pilot_planning(settings: Settings, resident_fit: dict) -> None:  # type: ignore[type-arg]
    """``radraft reader-study power --pilot`` plans with the fitted spread, not the effect."""
    environment = settings_to_environment(settings) | {"PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "radraft_cli", "reader-study", "power", "--role", "resident",
               "--readers", "4", "--cases", "50", "--simulations", "3", "--ratio", "0.8",
               "--json", "--pilot"]  # fmt: skip
    planned = subprocess.run([*command, "sim"], env=environment, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert "pilot 'sim': 120 resident reads by 4 readers of" in planned.stderr
    model = json.loads(planned.stdout)["model"]
    assert model["arm_ratios"] == {"draft": 0.8}
    assert model["residual_sd"] == pytest.approx(resident_fit["residual_variance"] ** 0.5)
    assert model["reader_sd"] == pytest.approx(resident_fit["reader_variance"] ** 0.5)
    unknown = subprocess.run([*command, "no-such-study"], env=environment, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert unknown.returncode == 2
    assert "no study named 'no-such-study'" in unknown.stderr


def check_report_numbers(html_path: Path, results: dict) -> None:  # type: ignore[type-arg]
    """Every tagged cell of the HTML equals the computed value, printed the report's way."""
    html = html_path.read_text()
    cells = dict(re.findall(r'data-key="([^"]+)">([^<]*)<', html))
    expected = {}
    for role, fit in results["mixed"].items():
        for effect in fit["effects"]:
            key = f"mixed.{role}.{effect['arm']}"
            expected[f"{key}.ratio"] = fmt(effect["ratio"], 3)
            expected[f"{key}.saving_percent"] = fmt(effect["saving_percent"])
            expected[f"{key}.saving_low"] = fmt(effect["saving_low"])
            expected[f"{key}.saving_high"] = fmt(effect["saving_high"])
            expected[f"{key}.p_value"] = fmt(effect["p_value"], 4)
    for role, arms in results["equivalence"].items():
        for arm, equivalence in arms.items():
            expected[f"equivalence.{role}.{arm}.equivalent"] = fmt(equivalence["equivalent"])
    for role, arms in results["legacy"].items():
        for arm, legacy in arms.items():
            expected[f"legacy.{role}.{arm}.saving_percent"] = fmt(legacy["saving_percent"])
    for summary in results["summaries"]:
        key = f"summary.{summary['role']}.{summary['arm']}.{summary['outcome']}.mean"
        expected[key] = fmt(summary["mean"])
    assert len(expected) > 10
    for key, value in expected.items():
        assert cells.get(key) == value, key


def test_no_planted_effect_is_rarely_significant() -> None:
    """Type I error of the primary model on designs like the study's (tolerance for 40 runs)."""
    model = TimeModel(baseline_seconds=100, reader_sd=0.25, case_sd=0.2, residual_sd=0.3)
    significant = 0
    runs = 40
    for run in range(runs):
        rng = np.random.default_rng(1000 + run)
        reads = simulate_reads(model, readers=4, cases=50, reads_per_reader=30,
                               arms=["scratch", "draft"], rng=rng)  # fmt: skip
        effect = fit_mixed_model(reads, role="resident", reference="scratch").effects[0]
        significant += effect.p_value < 0.05
    assert significant <= 4, f"{significant} of {runs} null simulations called significant"
