"""study.stats on small fixed tables, against hand-computed values and scipy / statsmodels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from study import stats


def long_table(scores: dict[str, dict[str, int]], dataset: str = "Set5", method: str = "bicubic") -> pd.DataFrame:
    """{stimulus image: {rater: score}} -> long format, one stimulus per image."""
    rows = [
        {"rater": rater, "stimulus": image, "dataset": dataset, "image": image, "method": method, "score": score}
        for image, by_rater in scores.items()
        for rater, score in by_rater.items()
    ]
    return pd.DataFrame(rows)


def test_summary_of_one_to_five_matches_hand_computation():
    summary = stats.summarize_scores(np.array([1, 2, 3, 4, 5]), n_resamples=500, seed=0)
    # mean 3, s = sqrt(10 / 4); t(0.975, 4) = 2.776445; half width = 2.776445 * s / sqrt(5) = 1.963243
    assert summary["n"] == 5
    assert summary["mos"] == pytest.approx(3.0)
    assert summary["std"] == pytest.approx(math.sqrt(2.5))
    assert summary["t_low"] == pytest.approx(3 - 1.963243, abs=1e-6)
    assert summary["t_high"] == pytest.approx(3 + 1.963243, abs=1e-6)


def test_bootstrap_interval_is_scipys_bca_with_the_fixed_seed():
    scores = np.array([1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 2])
    summary = stats.summarize_scores(scores, n_resamples=300, seed=7)
    expected = sps.bootstrap(
        (scores.astype(float),), np.mean, n_resamples=300, method="BCa", rng=np.random.default_rng(7)
    ).confidence_interval
    assert (summary["boot_low"], summary["boot_high"]) == pytest.approx((expected.low, expected.high))
    assert summary["boot_low"] < summary["mos"] < summary["boot_high"]
    assert stats.summarize_scores(scores, n_resamples=300, seed=7) == summary


def test_summary_of_equal_or_single_scores():
    equal = stats.summarize_scores(np.array([4, 4, 4]), n_resamples=100, seed=0)
    assert (equal["std"], equal["t_low"], equal["t_high"], equal["boot_low"], equal["boot_high"]) == (0, 4, 4, 4, 4)
    single = stats.summarize_scores(np.array([2]), n_resamples=100, seed=0)
    assert single["mos"] == 2 and math.isnan(single["std"]) and math.isnan(single["t_low"])


# Eight raters a..h. In S1 (scores 1,1,1,1,2,2,3,5) mean = 2, sum of squared deviations = 14, so
# s = sqrt(14 / 7) = 1.4142, m2 = 14 / 8 = 1.75, m4 = (4 * 1 + 1 + 81) / 8 = 10.75 and
# beta2 = 10.75 / 1.75**2 = 3.51: normal, bounds 2 +- 2 s = [-0.83, 4.83], so h's 5 lies above.
# S2 mirrors S1 (6 - score): h's 1 lies below 4 - 2.83 = 1.17.
# S3 (3 x 7, 5): mean 3.25, m2 = 0.4375, m4 = 1.1758, beta2 = 6.14: not normal, bounds
# 3.25 +- sqrt(20) * 0.7071 = 3.25 +- 3.16, so h's 5 is no outlier (with 2 s it would be: 4.66).
S1 = dict(zip("abcdefgh", [1, 1, 1, 1, 2, 2, 3, 5]))
S2 = {rater: 6 - score for rater, score in S1.items()}
S3 = dict(zip("abcdefgh", [3, 3, 3, 3, 3, 3, 3, 5]))


def test_bt500_rejects_outliers_on_both_sides_hand_computed():
    table = stats.bt500_screening(long_table({"s1": S1, "s2": S2, "s3": S3})).set_index("rater")
    h = table.loc["h"]
    assert (h["n_scores"], h["above"], h["below"]) == (3, 1, 1)
    assert h["outlier_rate"] == pytest.approx(2 / 3)
    assert h["asymmetry"] == 0
    assert bool(h["rejected"])
    others = table.drop(index="h")
    assert (others["above"] + others["below"] == 0).all()
    assert not others["rejected"].any()


def test_bt500_keeps_a_consistently_biased_rater():
    table = stats.bt500_screening(long_table({"s1": S1, "s1b": S1, "s3": S3})).set_index("rater")
    h = table.loc["h"]
    assert (h["above"], h["below"]) == (2, 0)
    assert h["asymmetry"] == 1 and not bool(h["rejected"])


def test_bt500_reach_says_how_many_raters_a_stimulus_needs_for_an_outlier():
    # Samuelson: among k scores none lies more than (k - 1) / sqrt(k) s from their mean; 5 / sqrt(6) = 2.04 > 2 but
    # 4 / sqrt(5) = 1.79, and 21 / sqrt(22) = 4.477 > sqrt(20) = 4.472 but 20 / sqrt(21) = 4.364.
    assert (stats.OUTLIER_RATERS_2S, stats.OUTLIER_RATERS_SQRT20) == (6, 22)
    five = long_table({"s1": dict(zip("abcde", [1, 1, 1, 1, 5])), "s2": dict(zip("abcde", [5, 5, 5, 5, 1]))})
    assert (stats.bt500_screening(five)[["above", "below"]] == 0).all().all()  # as far from the rest as can be: no outlier
    reach = stats.bt500_reach(pd.concat([five, long_table({"s3": S1})]))
    assert reach == {"stimuli": 3, "raters_min": 5, "raters_median": 5.0, "reach_2s": 1, "reach_sqrt20": 0}


def test_gold_failures_use_the_expected_ranges():
    gold = pd.DataFrame(
        {
            "rater": ["a", "a", "b", "b", "b"],
            "method": ["nearest", "hr", "nearest", "nearest", "hr"],
            "score": [2, 3, 3, 1, 4],
        }
    )
    table = stats.gold_failures(gold).set_index("rater")
    assert table.loc["a"].tolist() == [2, 1]  # hr scored 3 < 4
    assert table.loc["b"].tolist() == [3, 1]  # nearest scored 3 > 2


def test_retest_reliability_against_hand_values_and_scipy():
    trial = pd.DataFrame({"rater": ["a"] * 5 + ["b"], "stimulus": list("vwxyz") + ["v"], "score": [1, 2, 3, 4, 5, 2]})
    repeat = pd.DataFrame({"rater": ["a"] * 5, "stimulus": list("vwxyz"), "score": [1, 3, 3, 5, 5]})
    pairs = stats.retest_pairs(trial, repeat)
    assert len(pairs) == 5  # b's v was not repeated
    result = stats.retest_reliability(pairs, min_pairs=5)
    first, second = [1, 2, 3, 4, 5], [1, 3, 3, 5, 5]
    assert result["mean_abs_diff"] == pytest.approx(0.4)  # |0| + |1| + 0 + |1| + 0 over 5
    assert result["spearman_rho"] == pytest.approx(sps.spearmanr(first, second).statistic)
    assert math.isnan(result["wilcoxon_p"]) and result["wilcoxon_note"] == "not computable: 2 non-zero differences (of 5 pairs); need >= 5"
    result = stats.retest_reliability(pairs, min_pairs=2)
    # two differences of -1: of the 4 sign patterns, 2 are as extreme (both + or both -), so p = 2 / 4
    assert (result["wilcoxon_stat"], result["wilcoxon_p"], result["wilcoxon_note"]) == (0, 0.5, "")


def test_retest_with_identical_showings_has_no_difference_to_test():
    pairs = pd.DataFrame({"rater": ["a"] * 3, "stimulus": list("xyz"), "first": [1, 3, 5], "second": [1, 3, 5]})
    result = stats.retest_reliability(pairs, min_pairs=3)
    assert result["mean_abs_diff"] == 0 and result["spearman_rho"] == pytest.approx(1) and math.isnan(result["wilcoxon_p"])
    assert result["wilcoxon_note"] == "not computable: 0 non-zero differences (of 3 pairs); need >= 3"


def test_wilcoxon_p_counts_non_zero_differences_and_holds_with_zeros_and_ties():
    # The audit's case: 55 tied pairs and 5 differences of +1. Exactly 2 of the 2**5 sign patterns of the five are as
    # extreme, so p = 0.0625; scipy's normal approximation over all 60 pairs gave 0.0253.
    differences = np.array([0.0] * 55 + [1.0] * 5)
    pairs = pd.DataFrame({"first": 3 + differences, "second": np.full(60, 3.0)})
    retest = stats.retest_reliability(pairs)
    assert math.isnan(retest["wilcoxon_p"]) and retest["wilcoxon_note"] == "not computable: 5 non-zero differences (of 60 pairs); need >= 10"
    assert stats.signed_rank_test(differences) == {"w_plus": 15.0, "w_minus": 0.0, "p": 0.0625}
    # With ties and zeros: every one of the 2**19 sign patterns of the non-zero differences, counted by hand.
    tied = np.random.default_rng(4).integers(-2, 4, size=22) / 2.0
    nonzero = tied[tied != 0]
    ranks = sps.rankdata(np.abs(nonzero))
    patterns = np.array(list(itertools.product([False, True], repeat=len(nonzero))))
    w_plus, observed = (patterns * ranks).sum(axis=1), ranks[nonzero > 0].sum()
    by_hand = min(1.0, 2 * min(np.mean(w_plus <= observed), np.mean(w_plus >= observed)))
    ours = stats.signed_rank_test(tied)
    assert ours["p"] == pytest.approx(by_hand, rel=1e-12) and min(ours["w_plus"], ours["w_minus"]) == sps.wilcoxon(nonzero).statistic
    # Distinct non-zero differences: the exact p scipy computes.
    distinct = np.array([0.3, -1.2, 2.5, 0.7, 1.9, -0.4, 3.1, 1.1, 0.0, 2.2, -2.9, 1.6])
    exact = sps.wilcoxon(distinct[distinct != 0], method="exact").pvalue
    assert stats.signed_rank_test(distinct)["p"] == pytest.approx(exact, rel=1e-12)
    # The paper's 26 raters, all of them one way: 2 of the 2**26 patterns, not a permutation test's floor of 1e-4.
    assert stats.signed_rank_test(np.ones(26))["p"] == pytest.approx(2 / 2**26, rel=1e-12)
    # Beyond EXACT_MAX_DIFFERENCES (e.g. test-retest pairs of hundreds of raters): scipy's normal approximation, at once.
    many = np.random.default_rng(0).integers(-2, 3, size=3 * stats.EXACT_MAX_DIFFERENCES) / 2.0
    assert stats.signed_rank_test(many)["p"] == sps.wilcoxon(many[many != 0], method="asymptotic", correction=False).pvalue


def paired_fixture() -> pd.DataFrame:
    """Long format: 8 raters x 1 image, methods a, b, c; block (r7, img) misses c: too few raters for any test."""
    a = [5, 4, 5, 4, 3, 5, 4, 5]
    b = [3, 4, 3, 2, 3, 4, 2, 4]
    c = [1, 2, 2, 1, 3, 1, 2]
    rows = []
    for method, scores in {"a": a, "b": b, "c": c}.items():
        rows += [{"rater": f"r{i}", "image": "img", "method": method, "score": s} for i, s in enumerate(scores)]
    return pd.DataFrame(rows)


def raters_fixture(seed: int = 0) -> pd.DataFrame:
    """Long format: 14 raters x 3 images, methods a > b > c plus noise; (r13, i2) misses c and r12 never rated c."""
    rng = np.random.default_rng(seed)
    rows = [
        {"rater": f"r{r:02d}", "image": f"i{i}", "method": m, "score": int(np.clip(np.rint(q + rng.normal(0, 1)), 1, 5))}
        for r in range(14) for i in range(3) for m, q in (("a", 3.6), ("b", 3.0), ("c", 2.0))
    ]
    table = pd.DataFrame(rows)
    missing = (table["method"] == "c") & (((table["rater"] == "r13") & (table["image"] == "i2")) | (table["rater"] == "r12"))
    return table[~missing]


def test_pairwise_wilcoxon_tests_raters_mean_differences_like_scipy_and_hand_holm():
    paired = stats.paired_scores(raters_fixture())
    table = stats.pairwise_wilcoxon(paired, ["a", "b", "c"]).set_index(["method_a", "method_b"])
    for a, b in [("a", "b"), ("a", "c"), ("b", "c")]:
        both = paired[[a, b]].dropna()
        per_rater = (both[a] - both[b]).groupby(level="rater").mean()  # one value per rater: the unit of the test
        nonzero = per_rater[per_rater.round(9) != 0].round(9)
        method = sps.PermutationMethod(n_resamples=2 ** len(nonzero))  # every sign pattern: exact
        assert table.loc[(a, b), "p"] == pytest.approx(sps.wilcoxon(nonzero, method=method).pvalue, rel=1e-12)
        assert table.loc[(a, b), ["n_raters", "n_nonzero", "n_pairs"]].tolist() == [len(per_rater), len(nonzero), len(both)]
        assert table.loc[(a, b), "mean_difference"] == pytest.approx(per_rater.mean())  # raters weigh alike, not images
        ranks = sps.rankdata(nonzero.abs())
        plus, minus = ranks[nonzero.to_numpy() > 0].sum(), ranks[nonzero.to_numpy() < 0].sum()
        assert table.loc[(a, b), "rank_biserial"] == pytest.approx((plus - minus) / ranks.sum())
    assert table.loc[("a", "b"), ["n_raters", "n_pairs"]].tolist() == [14, 42]
    assert table.loc[("a", "c"), ["n_raters", "n_pairs"]].tolist() == [13, 38]  # r12 without c; r13 with 2 images
    # Holm by hand: sort ascending, multiply the i-th smallest by (m - i), keep the running maximum.
    p = table["p"].sort_values()
    holm = np.maximum.accumulate(np.minimum(1, p.to_numpy() * [3, 2, 1]))
    assert table.loc[p.index, "p_holm"].to_numpy() == pytest.approx(holm, rel=1e-12)


def test_method_tests_take_the_rater_as_the_unit_not_the_rater_image_pair():
    # 12 raters x 10 images: 8 raters prefer a by one point on every image, 4 prefer b. As 120 independent pairs this
    # looked significant (p = 0.0015); as 12 raters it is 8 against 4: p = 2 * P(Binomial(12, 1/2) >= 8) = 0.388.
    rows = [
        {"rater": f"r{r:02d}", "image": f"i{i}", "method": m, "score": 3 + (m == ("a" if r < 8 else "b"))}
        for r in range(12) for i in range(10) for m in "abc"
    ]
    paired = stats.paired_scores(pd.DataFrame(rows))
    row = stats.pairwise_wilcoxon(paired, ["a", "b"]).iloc[0]
    assert not row["significant"] and row["p"] == pytest.approx(2 * sps.binom.sf(7, 12, 0.5))
    assert row["mean_difference"] == pytest.approx((8 - 4) / 12) and row["rank_biserial"] == pytest.approx((8 - 4) / 12)
    assert (row["n_raters"], row["n_pairs"]) == (12, 120)
    friedman = stats.friedman(paired, ["a", "b", "c"])
    means = paired.groupby(level="rater").mean()
    assert friedman["n_raters"] == 12
    assert friedman["p"] == pytest.approx(sps.friedmanchisquare(means["a"], means["b"], means["c"]).pvalue)


def test_significance_matrix_symbols():
    pairwise = pd.DataFrame(
        {
            "method_a": ["a", "a", "b"],
            "method_b": ["b", "c", "c"],
            "w_plus": [40.0, 20.0, 50.0],
            "w_minus": [15.0, 35.0, 5.0],
            "significant": [True, False, True],
        }
    )
    matrix = stats.significance_matrix(pairwise, ["a", "b", "c"], "significant")
    assert matrix.loc["a"].tolist() == ["", ">", "="]
    assert matrix.loc["b"].tolist() == ["<", "", ">"]
    assert matrix.loc["c"].tolist() == ["=", "<", ""]


def test_significance_direction_is_the_side_the_test_found_not_the_larger_mean():
    # 80 raters score a half a point above b (one image +1, one 0), 16 score a four points below: the mean of a is lower
    # (a - b = -0.25), but the signed ranks favour a (W+ = 1 + ... + 80 = 3240 against W- = 16 * 88.5 = 1416).
    rows = []
    for r in range(96):
        pairs = [(3, 2), (3, 3)] if r < 80 else [(1, 5), (1, 5)]
        rows += [{"rater": f"r{r:02d}", "image": f"i{i}", "method": m, "score": s}
                 for i, pair in enumerate(pairs) for m, s in zip("ab", pair)]
    row = stats.pairwise_wilcoxon(stats.paired_scores(pd.DataFrame(rows)), ["a", "b"]).iloc[0]
    matrix = stats.significance_matrix(pd.DataFrame([row]), ["a", "b"])
    assert (matrix.loc["a", "b"], matrix.loc["b", "a"]) == (">", "<")
    assert row["mean_a"] < row["mean_b"] and (row["w_plus"], row["w_minus"]) == (3240, 1416) and row["significant_holm"]


def test_friedman_blocks_are_raters_means_over_their_complete_blocks_like_scipy():
    paired = stats.paired_scores(raters_fixture())
    result = stats.friedman(paired, ["a", "b", "c"])
    means = paired.dropna().groupby(level="rater").mean()  # r12 never rated c; r13 from its 2 complete images
    assert len(means) == 13 and means.loc["r13", "a"] == paired.loc[[("r13", "i0"), ("r13", "i1")], "a"].mean()
    expected = sps.friedmanchisquare(means["a"], means["b"], means["c"])
    assert result["n_raters"] == 13
    assert (result["statistic"], result["p"]) == pytest.approx((expected.statistic, expected.pvalue))
    two = stats.friedman(paired, ["a", "b"], min_blocks=2)
    assert math.isnan(two["p"]) and two["note"] == "not computable: 2 methods; need >= 3"


def test_mean_ranks_hand_computed():
    # blocks (a, b, c): (5, 3, 1) -> ranks 1, 2, 3; (4, 4, 2) -> 1.5, 1.5, 3; (2, 3, 1) -> 2, 1, 3
    long = pd.DataFrame(
        [
            {"rater": r, "image": "img", "method": m, "score": s}
            for r, scores in {"r0": (5, 3, 1), "r1": (4, 4, 2), "r2": (2, 3, 1)}.items()
            for m, s in zip("abc", scores)
        ]
    )
    ranks = stats.mean_ranks(stats.paired_scores(long), ["a", "b", "c"])
    assert ranks.to_dict() == pytest.approx({"a": 1.5, "b": 1.5, "c": 3.0})


def test_too_little_data_is_not_computed_and_says_why():
    pairs = pd.DataFrame({"rater": ["a"] * 3, "stimulus": list("xyz"), "first": [1, 2, 5], "second": [1, 3, 5]})
    retest = stats.retest_reliability(pairs)  # the case: rho = 1 from 3 pairs
    assert math.isnan(retest["spearman_rho"]) and math.isnan(retest["wilcoxon_p"])
    assert retest["note"] == "not computable: 3 pairs; need >= 10" and retest["mean_abs_diff"] == pytest.approx(1 / 3)
    paired = stats.paired_scores(paired_fixture())
    table = stats.pairwise_wilcoxon(paired, ["a", "b", "c"]).set_index(["method_a", "method_b"])
    assert table.loc[("a", "c"), "note"] == "not computable: 7 raters; need >= 10"
    assert table["p"].isna().all() and table["p_holm"].isna().all() and table["significant"].isna().all()  # untested: neither
    assert stats.significance_matrix(table.reset_index(), ["a", "b", "c"]).loc["a"].tolist() == ["", "n/a", "n/a"]
    # a - b per rater: 2, 0, 2, 2, 0, 1, 2, 1: eight raters, six of them with a difference
    few = stats.pairwise_wilcoxon(paired, ["a", "b"], min_pairs=7).iloc[0]
    assert math.isnan(few["p"]) and few["note"] == "not computable: 6 raters with a non-zero mean difference (of 8); need >= 7"
    result = stats.friedman(paired, ["a", "b", "c"])
    assert math.isnan(result["p"]) and result["note"] == "not computable: 7 raters who rated every method of an image; need >= 10"
    tied = stats.paired_scores(paired_fixture().assign(score=3))
    assert stats.friedman(tied, ["a", "b", "c"], min_blocks=2)["note"].endswith("the same mean score")


def test_mos_intervals_are_clipped_to_the_scale_and_flagged_when_few():
    trial = long_table({"img0": {"a": 5, "b": 4}, "img1": {"a": 5}})
    row = stats.mos_table(trial, n_resamples=200, seed=0).iloc[0]
    # t interval of (5, 4, 5): 4.667 +- 4.303 * 0.577 / sqrt(3) = [3.23, 6.10] -> upper end clipped to 5
    assert row["t_high"] == 5 and row["t_low"] == pytest.approx(4.6667 - 4.3027 * 0.57735 / math.sqrt(3), abs=1e-3)
    assert bool(row["clipped"]) and bool(row["few"]) and row["boot_high"] <= 5
    many = stats.mos_table(long_table({f"i{k}": {"a": 3 + k % 2} for k in range(12)}), 200, 0).iloc[0]
    assert not many["clipped"] and not many["few"]
    same = stats.mos_table(long_table({f"i{k}": {f"r{j}": 4 for j in range(6)} for k in range(10)}), 200, 0).iloc[0]  # 6 raters, all 4
    assert (same["t_low"], same["t_high"]) == (4, 4) and bool(same["few"]) and bool(same["few_raters"])


def test_the_raters_resampled_interval_counts_raters_not_ratings():
    # Two raters, 50 images each: one scores everything 1, the other 5. Over ratings the MOS of 3 looks precise;
    # over raters it is anything from 1 (both draws the strict one) to 5.
    trial = long_table({f"i{k}": {"strict": 1, "lenient": 5} for k in range(50)})
    row = stats.mos_table(trial, n_resamples=2000, seed=0).iloc[0]
    assert row["t_high"] - row["t_low"] < 1 and (row["rater_low"], row["rater_high"]) == (1.0, 5.0)
    assert all(math.isnan(v) for v in stats.rater_bootstrap(np.array([3, 4]), np.array(["r", "r"]), 100, 0))
    # With one rating per rater it is the ordinary percentile bootstrap of the ratings.
    scores = np.random.default_rng(1).integers(1, 6, 40).astype(float)
    ours = stats.rater_bootstrap(scores, np.array([f"r{k}" for k in range(40)]), 20_000, 0)
    reference = sps.bootstrap((scores,), np.mean, n_resamples=20_000, method="percentile", rng=np.random.default_rng(2)).confidence_interval
    assert ours == pytest.approx((reference.low, reference.high), abs=0.05)


def agreement_table(scores: np.ndarray) -> pd.DataFrame:
    """raters x stimuli scores (NaN: not rated) in long format."""
    return pd.DataFrame(
        [
            {"rater": f"r{i}", "stimulus": f"s{j:02d}", "score": scores[i, j]}
            for i in range(scores.shape[0])
            for j in range(scores.shape[1])
            if scores[i, j] == scores[i, j]
        ]
    )


def test_agreement_is_krippendorff_and_pingouin():
    import krippendorff
    import pingouin

    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, size=12)
    scores = np.clip(truth + rng.integers(-1, 2, size=(4, 12)), 1, 5).astype(float)
    scores[3, :3] = np.nan  # rater r3 missed three stimuli: alpha uses them, ICC only the 9 all rated
    result = stats.agreement(agreement_table(scores), min_units=9)
    assert result["alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=scores, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
    )
    assert (result["alpha_units"], result["icc_units"], result["alpha_note"], result["icc_note"]) == (12, 9, "", "")
    long = agreement_table(scores[:, 3:])
    icc = pingouin.intraclass_corr(long, targets="stimulus", raters="rater", ratings="score").set_index("Type")
    assert result["icc"] == pytest.approx(icc.at["ICC(A,1)", "ICC"]) and result["icc_k"] == pytest.approx(icc.at["ICC(A,k)", "ICC"])
    assert result["icc_low"] <= result["icc"] <= result["icc_high"]
    assert 0.5 < result["alpha"] < 1  # raters within one point of a common truth agree well


def test_agreement_with_too_few_raters_or_stimuli_says_why():
    one = stats.agreement(agreement_table(np.array([[1.0, 2, 3]])))
    assert one["alpha_note"] == one["icc_note"] == "not computable: 1 rater; need >= 2" and math.isnan(one["alpha"])
    scores = np.array([[1.0, 2, 3, np.nan], [2, 2, np.nan, 4]])
    few = stats.agreement(agreement_table(scores))
    assert few["alpha_note"] == "not computable: 2 stimuli scored by two or more raters; need >= 10"
    assert few["icc_note"] == "not computable: 2 stimuli scored by all 2 raters; need >= 10"
    same = stats.agreement(agreement_table(np.full((2, 10), 3.0)))
    assert same["alpha_note"] == same["icc_note"] == "not computable: every score is the same"


def test_calibration_misses_count_answers_other_than_the_anchor_asked_for():
    calibration = pd.DataFrame({
        "rater": ["r1", "r1", "r2", "r2", "r2"],
        "method": ["nearest", "hr", "nearest", "hr", "hr"],
        "score": [1, 5, 2, 5, 4],
    })
    table = stats.calibration_misses(calibration).set_index("rater")
    assert table.loc["r1"].tolist() == [2, 0] and table.loc["r2"].tolist() == [3, 2]
