"""The report's figures (matplotlib, Agg backend, PNG): score distributions in the style of the
paper's Fig. 5, MOS with confidence intervals, and the perception-distortion plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from srgan_core.paths import replacing
from study.schema import SCORE_LABELS  # noqa: E402

SCORE_COLOURS = plt.get_cmap("RdYlGn")(np.linspace(0.05, 0.95, len(SCORE_LABELS)))
PNG_METADATA = {"Software": None}  # no version string: the same input gives the same bytes


def score_distribution(trial: pd.DataFrame, dataset: str, methods: list[str], path: Path) -> None:
    """Share of each score 1..5 per method (stacked, colour-coded), the MOS marked in red."""
    counts = (
        trial.groupby("method")["score"].value_counts().unstack(fill_value=0)
        .reindex(index=methods, columns=list(SCORE_LABELS), fill_value=0)
    )
    shares = counts.div(counts.sum(axis=1), axis=0)
    mos = trial.groupby("method")["score"].mean().reindex(methods)
    fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2.5, 4.2))
    x = np.arange(len(methods))
    bottom = np.zeros(len(methods))
    for colour, (score, label) in zip(SCORE_COLOURS, SCORE_LABELS.items()):
        ax.bar(x, shares[score], bottom=bottom, color=colour, label=f"{score} {label}", width=0.7, edgecolor="white")
        bottom += shares[score].to_numpy()
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of ratings")
    ax.set_xticks(x, methods, rotation=30, ha="right")
    mos_axis = ax.twinx()
    mos_axis.plot(x, mos, "o", color="red", markersize=8, label="MOS")
    mos_axis.set_ylim(0.5, 5.5)
    mos_axis.set_ylabel("MOS (red)")
    ax.set_title(f"{dataset}: distribution of scores ({int(counts.to_numpy().sum())} ratings)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8, title="score")
    _save(fig, path)


def mos_with_intervals(mos: pd.DataFrame, datasets: list[str], methods: list[str], path: Path) -> None:
    """MOS of each method per dataset with its 95 % interval from resampling raters (``rater_low`` / ``rater_high``,
    the one that allows for each rater rating many images); a MOS without that interval is marked "n/a"."""
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 4.0), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        present = mos[mos["dataset"] == dataset].set_index("method")
        rows = present.reindex([m for m in methods if m in present.index])
        x = np.arange(len(rows))
        low, high, centre = (rows[c].to_numpy(float) for c in ("rater_low", "rater_high", "mos"))
        known = ~np.isnan(low)
        ax.vlines(x[known], low[known], high[known], color="tab:blue", lw=2)
        ax.plot(np.tile(x[known], 2), np.concatenate([low[known], high[known]]), "_", color="tab:blue", markersize=10)
        ax.plot(x, centre, "o", color="tab:blue")
        for k in x[~known]:
            ax.annotate("n/a", (k, centre[k]), textcoords="offset points", xytext=(6, -3), fontsize=8, color="grey")
        ax.set_xticks(x, rows.index, rotation=30, ha="right")
        ax.set_ylim(1, 5)
        ax.set_title(dataset)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("MOS, 95 % CI resampling raters")
    fig.suptitle("MOS with 95 % intervals from resampling raters\n(n/a: fewer than 2 raters)", fontsize=9)
    _save(fig, path)


def perception_distortion(mos: pd.DataFrame, datasets: list[str], path: Path) -> None:
    """MOS against PSNR, one point per method and dataset (methods without a PSNR are left out)."""
    points = mos.dropna(subset=["psnr", "mos"])
    datasets = [d for d in datasets if d in set(points["dataset"])]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 4.0), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = points[points["dataset"] == dataset].sort_values("method")
        ax.scatter(rows["psnr"], rows["mos"], color="tab:purple")
        for row in rows.itertuples(index=False):
            ax.annotate(row.method, (row.psnr, row.mos), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("PSNR [dB] (distortion: higher is better)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MOS (perception: higher is better)")
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with replacing(path) as partial:
        fig.savefig(partial, format="png", dpi=110, metadata=PNG_METADATA)
    plt.close(fig)
