"""Run the whole analysis of a study's tables and write CSVs, results.json, plots, report.html.

The HTML shows numbers from the same ``results`` dictionary that results.json holds, each
cell tagged with its key (``data-key``), so a test can check that the report says what was
computed.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, select_autoescape

from radraft.enums import Arm, Role
from reporting.reader_study.analysis.dataset import analysed_reads, comparable_reads
from reporting.reader_study.analysis.plots import PLOTS
from reporting.reader_study.analysis.stats import (
    cluster_bootstrap,
    describe,
    fit_mixed_model,
    legacy_comparison,
    tost,
)
from reporting.reader_study.arms import CHAINED_SOURCE, REFERENCE_ARM

IMPROVED = ("interpretation", "writing")
TEMPLATE_PATH = Path(__file__).with_name("report.html.j2")


def analyze(
    reads: pd.DataFrame,
    events: pd.DataFrame,
    *,
    out: Path,
    study_name: str,
    margin: float = 0.20,
    bootstrap_replicates: int = 400,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of the report; writes the files into ``out`` and returns the results."""
    out.mkdir(parents=True, exist_ok=True)
    reads.to_csv(out / "reads.csv", index=False)
    events.to_csv(out / "events.csv", index=False)
    analysed = analysed_reads(reads)
    results: dict[str, Any] = {
        "study": study_name,
        "software": _versions(),
        "reads_submitted": len(reads),
        "reads_analysed": len(analysed),
        "practice_reads_excluded": int(reads["practice"].astype(bool).sum()),
        "margin": margin,
        "summaries": _summaries(analysed),
        "legacy": {},
        "mixed": {},
        "bootstrap": {},
        "equivalence": {},
    }
    for role in (Role.RESIDENT, Role.ATTENDING):
        own = comparable_reads(analysed, role)
        if own is None:
            continue
        reference = REFERENCE_ARM[role]
        results["legacy"][role] = {
            arm: asdict(legacy_comparison(group["total_s"], own.loc[own["arm"] == reference,
                                                                     "total_s"]))
            for arm, group in own.groupby("arm") if arm != reference
        }  # fmt: skip
        fit = fit_mixed_model(own, role=role, reference=reference)
        results["mixed"][role] = fit.to_dict()
        results["bootstrap"][role] = {
            effect.arm: asdict(
                cluster_bootstrap(own, arm=effect.arm, reference=reference,
                                  replicates=bootstrap_replicates, seed=seed)
            )
            for effect in fit.effects
        }  # fmt: skip
        if role == Role.ATTENDING:
            results["equivalence"][role] = {
                effect.arm: asdict(tost(effect, margin)) for effect in fit.effects
            }
    results["end_to_end"] = _end_to_end(analysed)
    results["edit_metrics"] = _edit_metrics(analysed)
    results["survey"] = _survey(analysed)
    results["blinding"] = _blinding(analysed)
    for name, plot in PLOTS.items():
        plot(analysed, out / name)
    (out / "results.json").write_text(json.dumps(_finite(results), indent=2, default=str))
    (out / "report.html").write_text(render_html(_finite(results), list(PLOTS)))
    return results


def _summaries(reads: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for (role, arm), group in reads.groupby(["role", "arm"]):
        for outcome in ("active_s", "total_s"):
            rows.append({"role": role, "arm": arm, "outcome": outcome,
                         **asdict(describe(group[outcome]))})  # fmt: skip
    return rows


def _end_to_end(reads: pd.DataFrame) -> list[dict[str, Any]]:
    """Resident plus attending time per case along each chained pipeline."""
    by_id = reads.set_index("read_id")
    rows = []
    for arm, source_arm in CHAINED_SOURCE.items():
        chained = reads[(reads["arm"] == arm) & reads["source_read_id"].notna()]
        totals = [
            row["active_s"] + by_id.loc[int(row["source_read_id"]), "active_s"]
            for _, row in chained.iterrows()
            if int(row["source_read_id"]) in by_id.index
        ]
        if totals:
            summary = describe(pd.Series(totals))
            rows.append({"pipeline": f"{source_arm} -> {arm}", **asdict(summary)})
    return rows


def _edit_metrics(reads: pd.DataFrame) -> list[dict[str, Any]]:
    edited = reads.dropna(subset=["report_diff_percent"])
    rows = []
    for (role, arm), group in edited.groupby(["role", "arm"]):
        rows.append(
            {
                "role": role,
                "arm": arm,
                "n": len(group),
                "report_diff_percent": float(group["report_diff_percent"].mean()),
                "word_edit_rate": float(group["word_edit_rate"].mean()),
                "bleu4": float(group["bleu4"].mean()),
                "rouge_l": float(group["rouge_l"].mean()),
                "accepted_unchanged_percent": 100 * float(group["accepted_unchanged"].mean()),
            }
        )
    return rows


def _survey(reads: pd.DataFrame) -> list[dict[str, Any]]:
    """The paper's 'improved efficiency' proportions, and Likert summaries, per role and arm."""
    answered = reads.dropna(subset=["efficiency"])
    rows = []
    for (role, arm), group in answered.groupby(["role", "arm"]):
        likert = group["helps_answer_indication"].dropna()
        rows.append(
            {
                "role": role,
                "arm": arm,
                "n": len(group),
                "improved_efficiency_percent": 100
                * float(group["efficiency"].isin(IMPROVED).mean()),
                "improved_writing_percent": 100 * float((group["efficiency"] == "writing").mean()),
                "likert_median": float(likert.median()) if len(likert) else None,
                "likert_agree_percent": 100 * float((likert >= 4).mean()) if len(likert) else None,
            }
        )
    return rows


def _blinding(reads: pd.DataFrame) -> list[dict[str, Any]]:
    """Confusion table: was the draft from the model (truth) vs 'written by a model?' (answer)."""
    answered = reads.dropna(subset=["thinks_model_wrote_draft"])
    rows = []
    for truth, group in answered.groupby(answered["draft_source"] == "model"):
        guesses = group["thinks_model_wrote_draft"].astype(bool)
        rows.append({"model_draft": bool(truth), "answered_model": int(guesses.sum()),
                     "answered_not_model": int((~guesses).sum())})  # fmt: skip
    return rows


def _versions() -> dict[str, str]:
    packages = ("radraft", "statsmodels", "scipy", "numpy", "pandas", "matplotlib")
    return {"python": platform.python_version(), **{name: version(name) for name in packages}}


def _finite(value: Any) -> Any:
    """JSON has no NaN: None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def fmt(value: Any, digits: int = 1) -> str:
    """How the report prints a number (the test uses the same function)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if abs(value) < 0.001 and value != 0:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def render_html(results: dict[str, Any], plots: list[str]) -> str:
    """The report page."""
    environment = Environment(autoescape=select_autoescape(default=True))
    template = environment.from_string(TEMPLATE_PATH.read_text())
    return template.render(r=results, f=fmt, plots=plots)


__all__ = ["Arm", "analyze", "fmt", "render_html"]
