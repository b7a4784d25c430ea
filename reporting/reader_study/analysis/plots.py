"""The report's figures (matplotlib, no display needed); each takes the tidy reads table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from radraft.enums import Role
from reporting.reader_study.analysis.stats import Z_95
from reporting.reader_study.arms import REFERENCE_ARM

LIKERT_COLOURS = ["#b2182b", "#ef8a62", "#d9d9d9", "#67a9cf", "#2166ac"]


def _figure(path: Path, draw: Callable[[Axes], None], size: tuple[float, float] = (8, 4.5)) -> Path:
    figure, axes = plt.subplots(figsize=size)
    try:
        draw(axes)
    except ValueError:
        axes.text(0.5, 0.5, "not enough data", ha="center", transform=axes.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def time_by_arm(reads: pd.DataFrame, path: Path) -> Path:
    """Active time per role and arm, log scale, every read shown."""

    def draw(axes: Axes) -> None:
        groups = list(reads.groupby(["role", "arm"])["active_s"])
        axes.boxplot([g.to_numpy() for _, g in groups], showfliers=False)
        for index, (_, values) in enumerate(groups, start=1):
            jitter = np.random.default_rng(index).uniform(-0.15, 0.15, len(values))
            axes.scatter(index + jitter, values, s=8, alpha=0.5)
        axes.set_xticks(range(1, len(groups) + 1), [f"{r}\n{a}" for (r, a), _ in groups],
                        fontsize=7)  # fmt: skip
        axes.set_yscale("log")
        axes.set_ylabel("active seconds (log scale)")

    return _figure(path, draw)


def reader_forest(reads: pd.DataFrame, path: Path) -> Path:
    """Per reader: geometric-mean time ratio of each arm against the role's reference, 95% CI."""

    def draw(axes: Axes) -> None:
        rows = []
        for (reader, role), own in reads.groupby(["reader", "role"]):
            reference = REFERENCE_ARM[Role(role)]
            base = np.log(own.loc[own["arm"] == reference, "active_s"])
            for arm, values in own[own["arm"] != reference].groupby("arm")["active_s"]:
                logs = np.log(values)
                if len(base) < 2 or len(logs) < 2:
                    continue
                diff = logs.mean() - base.mean()
                se = np.sqrt(logs.var(ddof=1) / len(logs) + base.var(ddof=1) / len(base))
                rows.append((f"{reader} {arm}", diff, se))
        if not rows:
            raise ValueError("no reader has both arms")
        for y, (_label, diff, se) in enumerate(rows):
            axes.errorbar(np.exp(diff), y, xerr=[[np.exp(diff) - np.exp(diff - Z_95 * se)],
                          [np.exp(diff + Z_95 * se) - np.exp(diff)]], fmt="o")  # fmt: skip
        axes.set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=7)
        axes.axvline(1.0, color="grey", linestyle="--")
        axes.set_xscale("log")
        axes.set_xlabel("time ratio against the reference arm (95% CI)")

    return _figure(path, draw, (8, 6))


def ecdf_time_to_submit(reads: pd.DataFrame, path: Path) -> Path:
    """ECDF of the time from case open to submit, per role and arm."""

    def draw(axes: Axes) -> None:
        for (role, arm), values in reads.groupby(["role", "arm"])["total_s"]:
            ordered = np.sort(values.to_numpy())
            axes.step(ordered, np.arange(1, len(ordered) + 1) / len(ordered), label=f"{role} {arm}")
        axes.set_xscale("log")
        axes.set_xlabel("seconds from case open to submit (log scale)")
        axes.set_ylabel("share of reads")
        axes.legend(fontsize=7)

    return _figure(path, draw)


def time_vs_edit_distance(reads: pd.DataFrame, path: Path) -> Path:
    """Active time against how much of the draft was changed."""

    def draw(axes: Axes) -> None:
        edited = reads.dropna(subset=["report_diff_percent"])
        if edited.empty:
            raise ValueError("no drafts")
        for (role, arm), group in edited.groupby(["role", "arm"]):
            axes.scatter(
                group["report_diff_percent"], group["active_s"], s=10, label=f"{role} {arm}"
            )
        axes.set_yscale("log")
        axes.set_xlabel("ReportDiff: character edits per 100 final characters")
        axes.set_ylabel("active seconds")
        axes.legend(fontsize=7)

    return _figure(path, draw)


def learning_curve(reads: pd.DataFrame, path: Path) -> Path:
    """Geometric-mean active time by reading position, per role and arm."""

    def draw(axes: Axes) -> None:
        for (role, arm), group in reads.groupby(["role", "arm"]):
            bins = (group["position"] // 5) * 5
            means = np.exp(np.log(group["active_s"]).groupby(bins).mean())
            axes.plot(means.index, means.to_numpy(), marker="o", label=f"{role} {arm}")
        axes.set_yscale("log")
        axes.set_xlabel("reading position (blocks of 5)")
        axes.set_ylabel("geometric mean active seconds")
        axes.legend(fontsize=7)

    return _figure(path, draw)


def edit_reasons(reads: pd.DataFrame, path: Path) -> Path:
    """How often each edit reason was given, per role."""

    def draw(axes: Axes) -> None:
        exploded = reads.assign(reason=reads["edit_reasons"].str.split(";")).explode("reason")
        exploded = exploded[exploded["reason"].astype(bool) & exploded["reason"].notna()]
        if exploded.empty:
            raise ValueError("no reasons")
        counts = exploded.groupby(["reason", "role"]).size().unstack(fill_value=0)
        counts.plot.barh(ax=axes)
        axes.set_xlabel("reads")

    return _figure(path, draw)


def likert(reads: pd.DataFrame, path: Path) -> Path:
    """Diverging bars: 'the draft helps answer the exam indication', per role and arm."""

    def draw(axes: Axes) -> None:
        answered = reads.dropna(subset=["helps_answer_indication"])
        if answered.empty:
            raise ValueError("no answers")
        groups = list(answered.groupby(["role", "arm"])["helps_answer_indication"])
        for y, (_, values) in enumerate(groups):
            shares = [(values == level).mean() for level in range(1, 6)]
            left = -(shares[0] + shares[1] + shares[2] / 2)
            for level, share in enumerate(shares):
                axes.barh(y, share, left=left, color=LIKERT_COLOURS[level],
                          label=str(level + 1) if y == 0 else None)  # fmt: skip
                left += share
        axes.set_yticks(range(len(groups)), [f"{r} {a}" for (r, a), _ in groups], fontsize=7)
        axes.axvline(0, color="black")
        axes.set_xlabel("share of reads (1 = strongly disagree ... 5 = strongly agree)")
        axes.legend(ncol=5, fontsize=7)

    return _figure(path, draw)


PLOTS: dict[str, Callable[[pd.DataFrame, Path], Path]] = {
    "time_by_arm.png": time_by_arm,
    "reader_forest.png": reader_forest,
    "ecdf_time_to_submit.png": ecdf_time_to_submit,
    "time_vs_edit_distance.png": time_vs_edit_distance,
    "learning_curve.png": learning_curve,
    "edit_reasons.png": edit_reasons,
    "likert.png": likert,
}
