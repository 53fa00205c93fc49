"""The statistics of a MOS study: rater screening, test-retest, MOS with confidence intervals,
paired significance tests and ranks.

Every function takes plain long-format frames (columns ``rater, dataset, image, method, score``
and, where needed, ``stimulus``) so each can be checked on small hand-made tables.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from study.ratings import GOLD_EXPECTED

STIMULUS = ["dataset", "image", "method"]
BLOCK = ["rater", "image"]


def bt500_screening(trial: pd.DataFrame) -> pd.DataFrame:
    """ITU-R BT.500 observer screening (the beta2 kurtosis test of Annex 2, section 2.3.1).

    For each stimulus the scores of all raters give a mean, a standard deviation s and the kurtosis
    beta2 = m4 / m2**2; the distribution counts as normal when 2 <= beta2 <= 4, and a score is an
    outlier when it lies beyond mean +- 2 s (normal) or mean +- sqrt(20) s (otherwise). With P and Q
    a rater's outliers above and below and N their number of scores, the rater is rejected when
    (P + Q) / N > 0.05 and |P - Q| / (P + Q) < 0.3 (outliers on both sides, not a consistent bias).
    """
    score = trial["score"].astype(float)
    keys = [trial[c] for c in STIMULUS]
    mean = score.groupby(keys).transform("mean")
    std = score.groupby(keys).transform("std")  # ddof=1, as in the Recommendation
    deviation = score - mean
    m2 = (deviation**2).groupby(keys).transform("mean")
    m4 = (deviation**4).groupby(keys).transform("mean")
    beta2 = (m4 / m2**2).where(m2 > 0)
    normal = (beta2 >= 2) & (beta2 <= 4)
    width = np.where(normal, 2.0, math.sqrt(20.0)) * std
    flags = pd.DataFrame(
        {
            "rater": trial["rater"],
            "above": score > mean + width,
            "below": score < mean - width,
        }
    )
    per_rater = flags.groupby("rater").agg(
        n_scores=("above", "size"), above=("above", "sum"), below=("below", "sum")
    )
    outliers = per_rater["above"] + per_rater["below"]
    per_rater["outlier_rate"] = outliers / per_rater["n_scores"]
    per_rater["asymmetry"] = ((per_rater["above"] - per_rater["below"]).abs() / outliers).where(outliers > 0)
    per_rater["rejected"] = (per_rater["outlier_rate"] > 0.05) & (per_rater["asymmetry"] < 0.3)
    return per_rater.reset_index().sort_values("rater", ignore_index=True)


def gold_failures(gold: pd.DataFrame) -> pd.DataFrame:
    """Per rater: gold items answered and failed (a score outside the range `GOLD_EXPECTED` gives)."""
    low = gold["method"].map(lambda m: GOLD_EXPECTED[m][0])
    high = gold["method"].map(lambda m: GOLD_EXPECTED[m][1])
    failed = (gold["score"] < low) | (gold["score"] > high)
    table = pd.DataFrame({"rater": gold["rater"], "failed": failed})
    return (
        table.groupby("rater")
        .agg(gold_items=("failed", "size"), gold_failed=("failed", "sum"))
        .reset_index()
        .sort_values("rater", ignore_index=True)
    )


def retest_pairs(trial: pd.DataFrame, repeat: pd.DataFrame) -> pd.DataFrame:
    """First (trial) and second (repeat) score of every stimulus a rater saw twice."""
    first = trial[["rater", "stimulus", "score"]].rename(columns={"score": "first"})
    second = repeat[["rater", "stimulus", "score"]].rename(columns={"score": "second"})
    return first.merge(second, on=["rater", "stimulus"]).sort_values(["rater", "stimulus"], ignore_index=True)


def retest_reliability(pairs: pd.DataFrame) -> dict[str, float]:
    """Reliability of repeated items: Spearman rho, mean absolute difference, and a two-sided
    Wilcoxon signed-rank test of first against second showing (zero differences dropped)."""
    n = len(pairs)
    first, second = pairs["first"].to_numpy(float), pairs["second"].to_numpy(float)
    result = {"n_pairs": float(n), "spearman_rho": math.nan, "spearman_p": math.nan,
              "mean_abs_diff": math.nan, "wilcoxon_stat": math.nan, "wilcoxon_p": math.nan}
    if n == 0:
        return result
    result["mean_abs_diff"] = float(np.mean(np.abs(first - second)))
    if n >= 2 and np.ptp(first) > 0 and np.ptp(second) > 0:
        rho = stats.spearmanr(first, second)
        result["spearman_rho"], result["spearman_p"] = float(rho.statistic), float(rho.pvalue)
    result["wilcoxon_stat"], result["wilcoxon_p"] = _wilcoxon(first, second)
    return result


def summarize_scores(scores: np.ndarray, n_resamples: int, seed: int, confidence: float = 0.95) -> dict[str, float]:
    """MOS, standard deviation, and two confidence intervals of the mean: Student t and BCa bootstrap."""
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    mos = float(np.mean(scores))
    std = float(np.std(scores, ddof=1)) if n > 1 else math.nan
    summary = {"n": n, "mos": mos, "std": std, "t_low": math.nan, "t_high": math.nan,
               "boot_low": math.nan, "boot_high": math.nan}
    if n < 2:
        return summary
    if std == 0:  # every rating equal: the interval is the point
        summary.update(t_low=mos, t_high=mos, boot_low=mos, boot_high=mos)
        return summary
    low, high = stats.t.interval(confidence, n - 1, loc=mos, scale=std / math.sqrt(n))
    boot = stats.bootstrap(
        (scores,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
        method="BCa", rng=np.random.default_rng(seed),
    ).confidence_interval
    summary.update(t_low=float(low), t_high=float(high), boot_low=float(boot.low), boot_high=float(boot.high))
    return summary


def mos_table(trial: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """One row per (dataset, method): ratings, raters, images, MOS, std and both 95 % intervals."""
    rows = []
    for (dataset, method), group in trial.groupby(["dataset", "method"], sort=True):
        summary = summarize_scores(group["score"].to_numpy(), n_resamples, seed)
        rows.append({"dataset": dataset, "method": method, "raters": group["rater"].nunique(),
                     "images": group["image"].nunique(), **summary})
    return pd.DataFrame(rows)


def paired_scores(trial: pd.DataFrame) -> pd.DataFrame:
    """Scores of one dataset as a (rater, image) x method table: the blocks the paired tests use."""
    return trial.pivot_table(index=BLOCK, columns="method", values="score", aggfunc="first").sort_index()


def pairwise_wilcoxon(paired: pd.DataFrame, methods: list[str], alpha: float = 0.05) -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank test for every pair of methods, on the (rater, image) blocks
    that rated both; p-values also Holm-corrected over all pairs of the table."""
    rows = []
    for a, b in itertools.combinations(methods, 2):
        both = paired[[a, b]].dropna()
        x, y = both[a].to_numpy(float), both[b].to_numpy(float)
        stat, p = _wilcoxon(x, y) if len(both) else (math.nan, math.nan)
        rows.append({"method_a": a, "method_b": b, "n_pairs": len(both),
                     "mean_a": float(x.mean()) if len(x) else math.nan,
                     "mean_b": float(y.mean()) if len(y) else math.nan,
                     "statistic": stat, "p": p})
    table = pd.DataFrame(rows, columns=["method_a", "method_b", "n_pairs", "mean_a", "mean_b", "statistic", "p"])
    tested = table["p"].notna()
    table["p_holm"] = math.nan
    if tested.any():
        table.loc[tested, "p_holm"] = multipletests(table.loc[tested, "p"], alpha=alpha, method="holm")[1]
    table["significant"] = table["p"] < alpha
    table["significant_holm"] = table["p_holm"] < alpha
    return table


def significance_matrix(pairwise: pd.DataFrame, methods: list[str], column: str = "significant_holm") -> pd.DataFrame:
    """Method x method: '>' where the row method scored significantly higher than the column method,
    '<' significantly lower, '=' no significant difference, '' on the diagonal."""
    matrix = pd.DataFrame("", index=methods, columns=methods)
    for row in pairwise.itertuples(index=False):
        a, b = row.method_a, row.method_b
        if not getattr(row, column):
            matrix.loc[a, b] = matrix.loc[b, a] = "="
        else:
            higher = row.mean_a > row.mean_b
            matrix.loc[a, b], matrix.loc[b, a] = (">", "<") if higher else ("<", ">")
    return matrix


def complete_blocks(paired: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """The (rater, image) blocks that rated every one of `methods`."""
    return paired[methods].dropna()


def friedman(paired: pd.DataFrame, methods: list[str]) -> dict[str, float]:
    """Friedman omnibus test over the complete (rater, image) blocks (needs 3 or more methods)."""
    blocks = complete_blocks(paired, methods)
    result = {"n_blocks": float(len(blocks)), "statistic": math.nan, "p": math.nan}
    if len(methods) < 3 or len(blocks) < 2 or (blocks.nunique(axis=1) == 1).all():
        return result
    test = stats.friedmanchisquare(*(blocks[m].to_numpy(float) for m in methods))
    result["statistic"], result["p"] = float(test.statistic), float(test.pvalue)
    return result


def mean_ranks(paired: pd.DataFrame, methods: list[str]) -> pd.Series:
    """Mean ordinal rank of each method within the complete blocks: 1 = best, ties share the average rank."""
    blocks = complete_blocks(paired, methods)
    if blocks.empty:
        return pd.Series(math.nan, index=methods, name="mean_rank")
    ranks = blocks.rank(axis=1, ascending=False, method="average")
    return ranks.mean().reindex(methods).rename("mean_rank")


def _wilcoxon(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided signed-rank test; (nan, 1.0) when every pair is tied (no evidence of a difference)."""
    if not np.any(x != y):
        return math.nan, 1.0
    test = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    return float(test.statistic), float(test.pvalue)
