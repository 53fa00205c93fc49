"""The statistics of a MOS study: rater screening, test-retest, MOS with confidence intervals,
paired significance tests, ranks and inter-rater agreement.

The tests between methods take the **rater** as the unit: one rater's scores are not independent of each other (a
strict rater scores everything low), so each rater gives one paired value, and p-values hold for raters drawn anew
(the images are taken as fixed). A statistic with too little data behind it is not computed: its value is NaN and
its ``note`` says why (``not computable: 3 raters; need >= 10``).

Every function takes plain long-format frames (columns ``rater, dataset, image, method, score``
and, where needed, ``stimulus``) so each can be checked on small hand-made tables.
"""

from __future__ import annotations

import itertools
import math
import warnings

import krippendorff
import numpy as np
import pandas as pd
import pingouin
from scipy import stats
from statsmodels.stats.multitest import multipletests

from study.ratings import CALIBRATION_EXPECTED, GOLD_EXPECTED
from study.schema import SCORES

STIMULUS = ["dataset", "image", "method"]
BLOCK = ["rater", "image"]
MIN_PAIRS = 10  # raters (with a non-zero mean difference) behind a Wilcoxon test between methods; retest pairs
MIN_BLOCKS = 10  # raters behind the Friedman test
MIN_UNITS = 10  # stimuli behind an agreement statistic
MIN_CI_RATINGS = 10  # a MOS interval from fewer ratings is flagged
MIN_CI_RATERS = 5  # below this the raters-resampled interval has too few raters to draw from to mean much
EXACT_MAX_DIFFERENCES = 1000  # up to this many non-zero differences a Wilcoxon p is exact; beyond, the normal approximation
DECIMALS = 9  # mean differences are rounded to this many places, so that equal means tie despite round-off


def shortfall(have: int, need: int, what: str) -> str:
    """Why a statistic is not computed ('' when there is enough): 'not computable: 3 pairs; need >= 10'."""
    return "" if have >= need else f"not computable: {have} {what}; need >= {need}"


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


def fewest_raters_for_outlier(width: float) -> int:
    """The fewest raters of one stimulus among whose scores one can lie more than `width` standard deviations (ddof=1)
    from their mean: with k scores none lies further than (k - 1) / sqrt(k) of them (Samuelson's inequality)."""
    k = 2
    while (k - 1) / math.sqrt(k) <= width:
        k += 1
    return k


OUTLIER_RATERS_2S = fewest_raters_for_outlier(2.0)  # 6: BT.500's +- 2 s bound (scores that count as normal)
OUTLIER_RATERS_SQRT20 = fewest_raters_for_outlier(math.sqrt(20.0))  # 22: its +- sqrt(20) s bound (other scores)


def bt500_reach(trial: pd.DataFrame) -> dict[str, float]:
    """What `bt500_screening` can flag on `trial`: the stimuli, their raters (min, median), and how many stimuli have
    enough raters for a score to lie outside +- 2 s (``reach_2s``) and +- sqrt(20) s (``reach_sqrt20``)."""
    raters = trial.groupby(STIMULUS)["rater"].nunique()
    return {"stimuli": len(raters), "raters_min": int(raters.min()), "raters_median": float(raters.median()),
            "reach_2s": int((raters >= OUTLIER_RATERS_2S).sum()), "reach_sqrt20": int((raters >= OUTLIER_RATERS_SQRT20).sum())}


def calibration_misses(calibration: pd.DataFrame) -> pd.DataFrame:
    """Per rater: calibration items answered and those given another score than the one the page asked for (a sign
    of not reading the page; reported, not a reason to exclude)."""
    missed = calibration["score"] != calibration["method"].map(CALIBRATION_EXPECTED)
    return _per_rater(calibration["rater"], missed, "calibration_items", "calibration_missed")


def gold_failures(gold: pd.DataFrame) -> pd.DataFrame:
    """Per rater: gold items answered and failed (a score outside the range `GOLD_EXPECTED` gives)."""
    low = gold["method"].map(lambda m: GOLD_EXPECTED[m][0])
    high = gold["method"].map(lambda m: GOLD_EXPECTED[m][1])
    return _per_rater(gold["rater"], (gold["score"] < low) | (gold["score"] > high), "gold_items", "gold_failed")


def _per_rater(rater: pd.Series, flagged: pd.Series, items: str, count: str) -> pd.DataFrame:
    """Per rater (sorted): how many answers (`items`) and how many of them flagged (`count`)."""
    table = pd.DataFrame({"rater": rater, "flagged": flagged})
    return table.groupby("rater").agg(**{items: ("flagged", "size"), count: ("flagged", "sum")}).reset_index().sort_values("rater", ignore_index=True)


def retest_pairs(trial: pd.DataFrame, repeat: pd.DataFrame) -> pd.DataFrame:
    """First (trial) and second (repeat) score of every stimulus a rater saw twice."""
    first = trial[["rater", "stimulus", "score"]].rename(columns={"score": "first"})
    second = repeat[["rater", "stimulus", "score"]].rename(columns={"score": "second"})
    return first.merge(second, on=["rater", "stimulus"]).sort_values(["rater", "stimulus"], ignore_index=True)


def retest_reliability(pairs: pd.DataFrame, min_pairs: int = MIN_PAIRS) -> dict[str, float | str]:
    """Reliability of repeated items: mean absolute difference, Spearman rho, and a two-sided Wilcoxon
    signed-rank test of first against second showing (`signed_rank_test`); rho and the test only from `min_pairs`
    pairs on (``note`` says why not), the test only from `min_pairs` non-zero differences on (``wilcoxon_note``)."""
    n = len(pairs)
    first, second = pairs["first"].to_numpy(float), pairs["second"].to_numpy(float)
    result = {"n_pairs": float(n), "spearman_rho": math.nan, "spearman_p": math.nan,
              "mean_abs_diff": math.nan, "wilcoxon_stat": math.nan, "wilcoxon_p": math.nan,
              "note": shortfall(n, min_pairs, "pairs"), "spearman_note": "", "wilcoxon_note": ""}
    if n:
        result["mean_abs_diff"] = float(np.mean(np.abs(first - second)))
    if result["note"]:
        return result
    if np.ptp(first) > 0 and np.ptp(second) > 0:
        rho = stats.spearmanr(first, second)
        result["spearman_rho"], result["spearman_p"] = float(rho.statistic), float(rho.pvalue)
    else:
        result["spearman_note"] = "not computable: every first or every second showing got the same score"
    nonzero = int(np.count_nonzero(first != second))
    result["wilcoxon_note"] = shortfall(nonzero, min_pairs, f"non-zero differences (of {n} pairs)")
    if not result["wilcoxon_note"]:
        test = signed_rank_test(first - second)
        result["wilcoxon_stat"], result["wilcoxon_p"] = min(test["w_plus"], test["w_minus"]), test["p"]
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


def rater_bootstrap(scores: np.ndarray, raters: np.ndarray, n_resamples: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the MOS with raters resampled (a cluster bootstrap): each resample draws as many raters
    as there are, with replacement, each with all their ratings. A rater's ratings are not independent of each other,
    so this interval, unlike those that resample single ratings, holds when every rater rates many images. (nan, nan)
    below two raters."""
    scores, raters = np.asarray(scores, dtype=float), np.asarray(raters)
    names, index = np.unique(raters, return_inverse=True)
    if len(names) < 2:
        return math.nan, math.nan
    sums, counts = np.bincount(index, weights=scores), np.bincount(index).astype(float)
    drawn = np.random.default_rng(seed).integers(0, len(names), size=(n_resamples, len(names)))
    means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def mos_table(trial: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """One row per (dataset, method): ratings, raters, images, MOS, std and three 95 % intervals (t and bootstrap over
    ratings, bootstrap over raters), clipped to the 1..5 scale (``clipped``); ``few`` flags intervals from fewer than
    `MIN_CI_RATINGS` ratings or from ratings all equal (their width 0 is no certainty: there was no spread to measure),
    ``few_raters`` the raters-resampled interval from fewer than `MIN_CI_RATERS` raters (or equal ratings)."""
    rows = []
    for (dataset, method), group in trial.groupby(["dataset", "method"], sort=True):
        summary = summarize_scores(group["score"].to_numpy(), n_resamples, seed)
        summary["rater_low"], summary["rater_high"] = rater_bootstrap(group["score"].to_numpy(), group["rater"].to_numpy(), n_resamples, seed)
        names = ("t_low", "t_high", "boot_low", "boot_high", "rater_low", "rater_high")
        bounds = [summary[k] for k in names]
        clipped = [b if math.isnan(b) else float(np.clip(b, SCORES[0], SCORES[-1])) for b in bounds]
        summary.update(zip(names, clipped))
        flat = summary["std"] == 0  # every rating equal: an interval of width 0 measures no spread
        rows.append({"dataset": dataset, "method": method, "raters": group["rater"].nunique(),
                     "images": group["image"].nunique(), **summary,
                     "clipped": any(a != b for a, b in zip(bounds, clipped) if not math.isnan(a)),
                     "few": summary["n"] < MIN_CI_RATINGS or flat,
                     "few_raters": group["rater"].nunique() < MIN_CI_RATERS or flat})
    return pd.DataFrame(rows)


def paired_scores(trial: pd.DataFrame) -> pd.DataFrame:
    """Scores of one dataset as a (rater, image) x method table: the pairs the tests between methods are built from."""
    return trial.pivot_table(index=BLOCK, columns="method", values="score", aggfunc="first").sort_index()


def rater_differences(paired: pd.DataFrame, a: str, b: str) -> pd.Series:
    """Per rater, the mean over the images they rated with both methods of (score of `a` - score of `b`)."""
    both = paired[[a, b]].dropna()
    return (both[a] - both[b]).groupby(level="rater").mean().round(DECIMALS)


def signed_rank_test(differences: np.ndarray) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of `differences` (zeros dropped): the signed-rank sums ``w_plus`` and
    ``w_minus`` (the side with the larger sum is the higher one) and the exact ``p`` of ``w_plus`` under the 2**n
    equally likely sign patterns of the n non-zero differences, their (mid)ranks as they are: it holds with ties, where
    scipy's "exact" method rounds and its normal approximation is off, and at any n, where a permutation test's p stops
    at 1 / its resamples. Two-sided as scipy's permutation test: twice the smaller tail, at most 1. Above
    `EXACT_MAX_DIFFERENCES` (the exact count takes time as n**3: 1 s at 1000) p is scipy's tie-corrected normal
    approximation, close there but in the far tails."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))  # a sign flip leaves |d| and so the ranks as they are
    if len(d) > EXACT_MAX_DIFFERENCES:
        plus = float(ranks[d > 0].sum())
        p = stats.wilcoxon(d, method="asymptotic", correction=False).pvalue
        return {"w_plus": plus, "w_minus": float(ranks.sum()) - plus, "p": float(p)}
    doubled = np.rint(2 * ranks).astype(int)  # midranks are multiples of 1/2
    null = np.zeros(int(doubled.sum()) + 1)  # the distribution of 2 w_plus: each rank in the sum with probability 1/2
    null[0] = 1.0
    for rank in doubled:
        shifted = np.zeros_like(null)
        shifted[rank:] = null[:-rank]
        null = 0.5 * (null + shifted)
    plus = int(doubled[d > 0].sum())
    p = min(1.0, 2 * min(null[: plus + 1].sum(), null[plus:].sum()))
    return {"w_plus": plus / 2, "w_minus": float(ranks.sum()) - plus / 2, "p": float(p)}


def pairwise_wilcoxon(
    paired: pd.DataFrame, methods: list[str], alpha: float = 0.05, min_pairs: int = MIN_PAIRS
) -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank test (`signed_rank_test`) for every pair of methods with the rater as the unit:
    each rater who rated both methods on some image gives one difference, the mean of (a - b) over those images
    (`rater_differences`). Tested from `min_pairs` raters with a non-zero difference on (``note`` says why not);
    p-values also Holm-corrected over the pairs tested. ``n_pairs`` counts the (rater, image) pairs behind the
    differences, ``mean_a`` / ``mean_b`` are over them. Effect sizes: ``mean_difference``, the mean over raters of
    their differences (in score points), and ``rank_biserial``, the matched-pairs rank-biserial correlation
    (W+ - W-) / (W+ + W-), from -1 (every rater scored b higher) to 1 (every rater scored a higher)."""
    rows = []
    for a, b in itertools.combinations(methods, 2):
        both = paired[[a, b]].dropna()
        differences = rater_differences(paired, a, b)
        n_raters, nonzero = len(differences), int(np.count_nonzero(differences))
        note = shortfall(n_raters, min_pairs, "raters") or shortfall(
            nonzero, min_pairs, f"raters with a non-zero mean difference (of {n_raters})"
        )
        test = {"w_plus": math.nan, "w_minus": math.nan, "p": math.nan} if note else signed_rank_test(differences.to_numpy())
        rows.append({"method_a": a, "method_b": b, "n_raters": n_raters, "n_nonzero": nonzero, "n_pairs": len(both),
                     "mean_a": float(both[a].mean()) if len(both) else math.nan,
                     "mean_b": float(both[b].mean()) if len(both) else math.nan,
                     "mean_difference": float(differences.mean()) if n_raters else math.nan, **test,
                     "rank_biserial": (test["w_plus"] - test["w_minus"]) / (test["w_plus"] + test["w_minus"]), "note": note})
    columns = ["method_a", "method_b", "n_raters", "n_nonzero", "n_pairs", "mean_a", "mean_b", "mean_difference", "w_plus", "w_minus",
               "rank_biserial", "p", "note"]
    table = pd.DataFrame(rows, columns=columns)
    tested = table["p"].notna()
    table["p_holm"] = math.nan
    if tested.any():
        table.loc[tested, "p_holm"] = multipletests(table.loc[tested, "p"], alpha=alpha, method="holm")[1]
    untested = table["p"].isna()  # neither significant nor not: empty in pairwise.csv, `n/a` in the report
    table["significant"] = (table["p"] < alpha).astype("boolean").mask(untested)
    table["significant_holm"] = (table["p_holm"] < alpha).astype("boolean").mask(untested)
    return table


def significance_matrix(pairwise: pd.DataFrame, methods: list[str], column: str = "significant_holm") -> pd.DataFrame:
    """Method x method: '>' where the row method scored significantly higher than the column method,
    '<' significantly lower, '=' no significant difference, 'n/a' not tested, '' on the diagonal. Higher is
    the side the test found: the larger signed-rank sum (``w_plus`` for the row's `method_a`), not the larger mean."""
    matrix = pd.DataFrame("", index=methods, columns=methods)
    for row in pairwise.itertuples(index=False):
        a, b = row.method_a, row.method_b
        if getattr(row, "note", ""):
            matrix.loc[a, b] = matrix.loc[b, a] = "n/a"
        elif not getattr(row, column):
            matrix.loc[a, b] = matrix.loc[b, a] = "="
        else:
            higher = row.w_plus > row.w_minus
            matrix.loc[a, b], matrix.loc[b, a] = (">", "<") if higher else ("<", ">")
    return matrix


def complete_blocks(paired: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """The (rater, image) blocks that rated every one of `methods`."""
    return paired[methods].dropna()


def rater_means(paired: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per rater with a complete block (an image rated with every one of `methods`), their mean score of each method
    over those blocks: the blocks of the Friedman test."""
    return complete_blocks(paired, methods).groupby(level="rater").mean().round(DECIMALS)


def friedman(paired: pd.DataFrame, methods: list[str], min_blocks: int = MIN_BLOCKS) -> dict[str, float | str]:
    """Friedman omnibus test with the rater as the block (`rater_means`): 3 or more methods, `min_blocks`
    raters, and some variation within them (``note`` says which is missing)."""
    blocks = rater_means(paired, methods)
    note = shortfall(len(methods), 3, "methods") or shortfall(len(blocks), min_blocks, "raters who rated every method of an image")
    if not note and (blocks.nunique(axis=1) == 1).all():
        note = "not computable: every rater gave all the methods the same mean score"
    result = {"n_raters": float(len(blocks)), "statistic": math.nan, "p": math.nan, "note": note}
    if note:
        return result
    test = stats.friedmanchisquare(*(blocks[m].to_numpy(float) for m in methods))
    result["statistic"], result["p"] = float(test.statistic), float(test.pvalue)
    return result


def mean_ranks(paired: pd.DataFrame, methods: list[str]) -> pd.Series:
    """Mean ordinal rank of each method within the complete (rater, image) blocks: 1 = best, ties share the average rank."""
    blocks = complete_blocks(paired, methods)
    if blocks.empty:
        return pd.Series(math.nan, index=methods, name="mean_rank")
    ranks = blocks.rank(axis=1, ascending=False, method="average")
    return ranks.mean().reindex(methods).rename("mean_rank")


def agreement(trial: pd.DataFrame, min_units: int = MIN_UNITS) -> dict[str, float | str]:
    """Inter-rater agreement on trial scores, stimuli as units: Krippendorff's alpha (ordinal, `krippendorff`)
    over the stimuli two or more raters scored, and ICC(A,1) / ICC(A,k) (two-way, absolute agreement: Shrout
    and Fleiss' ICC(2,1) / ICC(2,k); `pingouin`) with 95 % intervals over the stimuli every rater scored. Each needs two raters
    and `min_units` such stimuli (``alpha_note`` / ``icc_note`` say why not)."""
    table = trial.pivot_table(index="rater", columns="stimulus", values="score", aggfunc="first")
    raters = len(table)
    shared = table.loc[:, table.notna().sum() >= 2]
    crossed = table.dropna(axis=1)
    result: dict[str, float | str] = {
        "raters": float(raters), "alpha_units": float(shared.shape[1]), "alpha": math.nan,
        "icc_units": float(crossed.shape[1]), "icc": math.nan, "icc_low": math.nan, "icc_high": math.nan,
        "icc_k": math.nan, "icc_k_low": math.nan, "icc_k_high": math.nan,
    }
    too_few_raters = shortfall(raters, 2, "rater" if raters == 1 else "raters")
    alpha_note = too_few_raters or shortfall(shared.shape[1], min_units, "stimuli scored by two or more raters")
    icc_note = too_few_raters or shortfall(crossed.shape[1], min_units, f"stimuli scored by all {raters} raters")
    if not alpha_note and shared.stack().nunique() < 2:
        alpha_note = "not computable: every score is the same"
    if not icc_note and crossed.stack().nunique() < 2:
        icc_note = "not computable: every score is the same"
    if not alpha_note:
        result["alpha"] = float(krippendorff.alpha(
            reliability_data=shared.to_numpy(float), level_of_measurement="ordinal", value_domain=list(SCORES)
        ))
    if not icc_note:
        long = crossed.stack().rename("score").reset_index()
        with warnings.catch_warnings():  # pingouin 0.7 calls a pandas API pandas deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            icc = pingouin.intraclass_corr(long, targets="stimulus", raters="rater", ratings="score")
        icc = icc.set_index("Type")
        for key, kind in (("icc", "ICC(A,1)"), ("icc_k", "ICC(A,k)")):
            result[key] = float(icc.at[kind, "ICC"])
            result[f"{key}_low"], result[f"{key}_high"] = (float(v) for v in icc.at[kind, "CI95"])
    result["alpha_note"], result["icc_note"] = alpha_note, icc_note
    return result

