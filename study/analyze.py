"""`python -m study.analyze`: the MOS report of a study, next to PSNR / SSIM.

Reads the long-format ratings (the study database, or a CSV export or one made elsewhere), keeps the
raters who finished their plan (the database's plans say who did; `--include-partial` keeps the rest
too), screens them, and writes into the output folder `report.md`, the tables as CSV and the figures as
PNG. PSNR / SSIM / NIQE are over every image of each dataset, the same set for every method. The same
command on the same input always gives the same files (fixed bootstrap seed, sorted orders, no timestamps; the report
names the command).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from srgan_core.markdown import markdown_table
from srgan_core.method_specs import METHODS
from srgan_core.paper import published
from srgan_core.paths import DATA_ROOT_DEFAULT, GET_DATA, REPO_ROOT, FolderError, default_data_root, make_writable_folder, remove_empty, replace_text
from study import figures, stats, store
from study.ratings import GOLD_EXPECTED, RatingsError, read_planned, read_ratings_csv, read_ratings_db, select_study
from study.schema import ORIGINAL, PHASES, SCORE_RANGE

RESULTS_DIR = REPO_ROOT / "results" / "study"
PAIRING = (
    "The tests between methods take the **rater as the unit**: a pair is the two scores one rater gave two methods' "
    "versions of the same image, and each rater contributes one value per test, the mean over their pairs (Wilcoxon: "
    "the mean difference; Friedman: the mean score of each method over the images they rated with every method), "
    "so a rater's many images do not count as independent evidence. Only first showings (phase `trial`) enter the "
    "MOS and the tests; second showings of repeated items (phase `repeat`) serve the test-retest check only."
)


@dataclass(frozen=True)
class Settings:
    n_resamples: int = 10_000
    seed: int = 0
    alpha: float = 0.05
    max_gold_failures: int = 0
    include_partial: bool = False


@dataclass(frozen=True)
class Completion:
    """Who finished: `table` has one row per rater who answered (rater, answered, planned, finished;
    planned and finished are missing without the plans); `silent` raters joined but gave no answer;
    `excluded` (rater, reason) are the raters the study admin excluded, whose answers are not in the ratings."""

    table: pd.DataFrame
    silent: int
    known: bool
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"rater": [], "reason": []}))


@dataclass
class Metrics:
    """Per (dataset, method) means over every image of the dataset (columns psnr, ssim, niqe), and what is missing."""

    table: pd.DataFrame
    notes: list[str]


def method_order(methods: Iterable[str]) -> list[str]:
    """srgan_core's order (nearest, bicubic, srresnet-mse, ...), then other methods by name, HR last."""
    present = set(methods)
    known = [m for m in METHODS if m in present]
    return known + sorted(present - set(known) - {ORIGINAL}) + ([ORIGINAL] if ORIGINAL in present else [])


def dataset_order(datasets: Iterable[str]) -> list[str]:
    """The paper's order (Set5, Set14, BSD100), then other datasets by name."""
    from srgan_core.data import BENCHMARKS

    present = set(datasets)
    return [d for d in BENCHMARKS if d in present] + sorted(present - set(BENCHMARKS))


def completion(ratings: pd.DataFrame, planned: pd.DataFrame | None) -> Completion:
    """Answers against plans: a rater finished when they answered every presentation planned for them (an answer
    they undid and did not give again is not in `ratings`: `store.read_ratings`)."""
    answered = ratings.groupby("rater").size().rename("answered").reset_index()
    if planned is None:
        return Completion(answered.assign(planned=pd.NA, finished=pd.NA), 0, False)
    table = answered.merge(planned[["rater", "planned"]], on="rater", how="left")
    table["finished"] = table["answered"] >= table["planned"]
    by_admin = planned["excluded"].notna() if "excluded" in planned else pd.Series(False, index=planned.index)
    silent = int((~planned["rater"].isin(answered["rater"]) & ~by_admin).sum())
    excluded = planned.loc[by_admin, ["rater", "excluded"]].rename(columns={"excluded": "reason"})
    return Completion(table, silent, True, excluded.reset_index(drop=True))


def _with_completion(raters: pd.DataFrame, done: Completion, settings: Settings) -> pd.DataFrame:
    """The screened raters with their completion, and the unfinished ones left out (as excluded rows)."""
    raters = raters.merge(done.table, on="rater", how="left")
    left_out = done.table[done.table["finished"].eq(False) & ~done.table["rater"].isin(raters["rater"])]
    if len(left_out):
        left_out = left_out.assign(
            excluded=True, rejected=False, screened=False,
            reason=[f"did not finish (answered {a} of {p})" for a, p in zip(left_out["answered"], left_out["planned"])],
        )
        raters = pd.concat([raters, left_out], ignore_index=True).sort_values("rater", ignore_index=True)
    raters["screened"] = raters.get("screened", pd.Series(True, index=raters.index)).astype("boolean").fillna(True).astype(bool)
    for column in ["n_scores", "above", "below", "gold_items", "gold_failed", "calibration_items", "calibration_missed", "retest_pairs"]:
        raters[column] = raters[column].fillna(0).astype(int)
    return raters


def screen_raters(ratings: pd.DataFrame, max_gold_failures: int) -> pd.DataFrame:
    """One row per rater: BT.500 screening, gold items, test-retest, and whether (and why) excluded."""
    trial = ratings[ratings["phase"] == "trial"]
    raters = pd.DataFrame({"rater": sorted(ratings["rater"].unique())})
    raters = raters.merge(stats.bt500_screening(trial), on="rater", how="left")
    raters = raters.merge(stats.gold_failures(ratings[ratings["phase"] == "gold"]), on="rater", how="left")
    raters = raters.merge(stats.calibration_misses(ratings[ratings["phase"] == "calibration"]), on="rater", how="left")
    pairs = stats.retest_pairs(trial, ratings[ratings["phase"] == "repeat"])
    retest = (
        pairs.assign(diff=(pairs["first"] - pairs["second"]).abs())
        .groupby("rater")
        .agg(retest_pairs=("diff", "size"), retest_mad=("diff", "mean"))
        .reset_index()
    )
    raters = raters.merge(retest, on="rater", how="left")
    for column in ["n_scores", "above", "below", "gold_items", "gold_failed", "calibration_items", "calibration_missed", "retest_pairs"]:
        raters[column] = raters[column].fillna(0).astype(int)
    raters["rejected"] = raters["rejected"].astype("boolean").fillna(False).astype(bool)
    reasons = []
    for row in raters.itertuples(index=False):
        why = []
        if row.rejected:
            why.append(
                f"BT.500 rejection ({row.above + row.below} outlying scores of {row.n_scores}: "
                f"{row.above} above, {row.below} below)"
            )
        if row.gold_failed > max_gold_failures:
            why.append(f"failed {row.gold_failed} of {row.gold_items} gold items")
        reasons.append("; ".join(why))
    raters["reason"] = reasons
    raters["excluded"] = raters["reason"] != ""
    return raters


def compute_metrics(trial: pd.DataFrame, data_root: Path | None) -> Metrics:
    """PSNR / SSIM (srgan_core.evaluate) and NIQE of every studied (dataset, method), each over every image
    of the dataset: the same images for every method, whoever rated what."""
    from srgan_core.data import BENCHMARKS, benchmark_images
    from srgan_core.evaluate import score_images, score_originals
    from srgan_core.methods import MethodUnavailable, load_method

    rows, notes = [], set()
    for (dataset, method), group in trial.groupby(["dataset", "method"], sort=True):
        row = {"dataset": dataset, "method": method, "psnr": math.nan, "ssim": math.nan, "niqe": math.nan}
        rows.append(row)
        if dataset not in BENCHMARKS:
            notes.add(f"{dataset}: not a benchmark srgan_core knows ({', '.join(BENCHMARKS)}); no metrics")
            continue
        if method != ORIGINAL and method not in METHODS:
            notes.add(f"{method}: not a srgan_core method; no PSNR / SSIM / NIQE")
            continue
        try:
            paths = {p.stem: p for p in benchmark_images(dataset, data_root)}
            upscaler = None if method == ORIGINAL else load_method(method)
        except (FileNotFoundError, MethodUnavailable) as err:
            notes.add(f"{dataset} / {method}: metrics left blank: {err}")
            continue
        missing = sorted(set(group["image"]) - set(paths))
        if missing:
            notes.add(f"{dataset}: rated images not in the benchmark folder: {', '.join(missing)}; no metrics")
            continue
        if upscaler is None:
            scores = score_originals(dataset, data_root)
        else:
            scores = score_images([method], dataset, data_root, with_niqe=True)
            row["psnr"], row["ssim"] = float(scores["psnr"].mean()), float(scores["ssim"].mean())
        niqe = scores["niqe"].dropna()
        if len(niqe):
            row["niqe"] = float(niqe.mean())
        if len(niqe) < len(scores):
            notes.add(f"{dataset}: NIQE over {len(niqe)} of its {len(scores)} images (NIQE is undefined on the smaller ones)")
    return Metrics(pd.DataFrame(rows), sorted(notes))


MetricsFn = Callable[[pd.DataFrame], Metrics]


def analyze(
    ratings: pd.DataFrame,
    study: str,
    out_dir: Path,
    metrics_fn: MetricsFn | None,
    settings: Settings,
    source: str,
    planned: pd.DataFrame | None = None,
    command: str | None = None,
) -> Path:
    """Write the report, CSVs and figures of one study's ratings into `out_dir`; return the report's path.
    `command` is the command line that made it, for the report's header.

    `metrics_fn` gives PSNR / SSIM / NIQE for the study's (dataset, method) pairs (None: no metrics).
    `planned` (rater, planned presentations; from the database) tells who finished; without it every
    rater is analysed and the report says that completion is unknown.
    """
    if ratings[ratings["phase"] == "trial"].empty:
        raise RatingsError(f"study {study!r} has no trial ratings yet; nothing to analyse")
    given = ratings
    studied = ratings[ratings["phase"] == "trial"]  # every rater's: the (dataset, method) pairs of the study
    done = completion(ratings, planned)
    if not settings.include_partial:
        ratings = ratings[~ratings["rater"].isin(done.table.loc[done.table["finished"].eq(False), "rater"])]
        if ratings[ratings["phase"] == "trial"].empty:
            raise RatingsError(
                f"study {study!r}: no rater with trial ratings has finished yet; "
                "use --include-partial to analyse unfinished sessions"
            )
    trial_all = ratings[ratings["phase"] == "trial"]
    raters = _with_completion(screen_raters(ratings, settings.max_gold_failures), done, settings)
    included = set(raters.loc[~raters["excluded"], "rater"])
    trial = trial_all[trial_all["rater"].isin(included)]
    if trial.empty:
        reasons = "; ".join(f"{r.rater}: {r.reason}" for r in raters.itertuples() if r.excluded)
        raise RatingsError(f"study {study!r}: every rater with trial ratings was excluded ({reasons})")
    repeat = ratings[(ratings["phase"] == "repeat") & ratings["rater"].isin(included)]
    retest = stats.retest_reliability(stats.retest_pairs(trial, repeat))

    mos = stats.mos_table(trial, settings.n_resamples, settings.seed)
    metrics = metrics_fn(studied) if metrics_fn is not None else None
    if metrics is not None:
        mos = mos.merge(metrics.table, on=["dataset", "method"], how="left")
    for metric in ("psnr", "ssim", "mos"):
        mos[f"paper_{metric}"] = [
            _or_nan(published(d, m, metric)) for d, m in zip(mos["dataset"], mos["method"])
        ]
    order = method_order(trial["method"].unique())
    datasets = dataset_order(trial["dataset"].unique())
    mos = _sort_rows(mos, datasets, order)

    out_dir.mkdir(parents=True, exist_ok=True)
    sections, pairwise_all, friedman_rows, rank_rows, distributions = [], [], [], [], []
    agreement = pd.DataFrame(
        [{"dataset": d, **stats.agreement(trial[trial["dataset"] == d])} for d in datasets]
        + ([{"dataset": "all", **stats.agreement(trial)}] if len(datasets) > 1 else [])
    )
    for dataset in datasets:
        subset = trial[trial["dataset"] == dataset]
        methods = [m for m in order if m in set(subset["method"])]
        paired = stats.paired_scores(subset)
        pairwise = stats.pairwise_wilcoxon(paired, methods, settings.alpha)
        omnibus = stats.friedman(paired, methods)
        ranks = stats.mean_ranks(paired, methods)
        blocks = len(stats.complete_blocks(paired, methods))
        figure = "fig5_" + re.sub(r"[^A-Za-z0-9._-]", "_", dataset) + ".png"
        distributions.append((subset, dataset, methods, out_dir / figure))
        pairwise_all.append(pairwise.assign(dataset=dataset))
        friedman_rows.append({"dataset": dataset, "methods": len(methods), **omnibus})
        rank_rows.append(ranks.rename_axis("method").reset_index().assign(dataset=dataset))
        sections.append(
            _dataset_section(dataset, mos[mos["dataset"] == dataset], pairwise, omnibus, ranks, blocks, methods,
                             figure, metrics, settings)
        )

    has_psnr = "psnr" in mos and mos["psnr"].notna().any()
    report = "\n".join(
        [
            _header(given, study, source, raters, trial, command),
            _completion_section(done, settings),
            _raters_section(raters, stats.bt500_reach(trial_all), settings),
            _retest_section(retest),
            _agreement_section(agreement),
            *sections,
            _overview_section(has_psnr, metrics, settings, _left_out(studied, trial, raters)),
        ]
    )
    # figures and tables are written once the report is made: a failure while making it leaves the ones before
    for distribution in distributions:
        figures.score_distribution(*distribution)
    figures.mos_with_intervals(mos, datasets, order, out_dir / "mos_ci.png")
    if has_psnr:
        figures.perception_distortion(mos, datasets, out_dir / "perception_distortion.png")
    else:
        (out_dir / "perception_distortion.png").unlink(missing_ok=True)
    replace_text(out_dir / "raters.csv", _csv_text(raters))
    replace_text(out_dir / "mos.csv", _csv_text(mos))
    replace_text(out_dir / "pairwise.csv", _csv_text(_columns_first(pd.concat(pairwise_all, ignore_index=True), "dataset")))
    replace_text(out_dir / "friedman.csv", _csv_text(pd.DataFrame(friedman_rows)))
    replace_text(out_dir / "agreement.csv", _csv_text(agreement))
    replace_text(out_dir / "ranks.csv", _csv_text(_columns_first(pd.concat(rank_rows, ignore_index=True), "dataset")))
    path = out_dir / "report.md"
    replace_text(path, report)
    return path


# ---------------------------------------------------------------- report sections


def _header(ratings: pd.DataFrame, study: str, source: str, raters: pd.DataFrame, trial: pd.DataFrame, command: str | None) -> str:
    phases = ratings["phase"].value_counts()
    counts = ", ".join(f"{int(phases.get(p, 0))} {p}" for p in PHASES)
    digest = hashlib.sha256(_csv_text(ratings.sort_values(list(ratings.columns))).encode()).hexdigest()
    return "\n".join(
        [
            f"# MOS study `{study}`",
            "",
            *([f"Made by `{command}`.", ""] if command else []),
            f"Ratings from `{source}` (sha256 of the sorted table `{digest[:16]}`): {len(ratings)} answers "
            f"({counts}) by {ratings['rater'].nunique()} raters; {int((~raters['excluded']).sum())} raters kept, "
            f"{trial['rater'].nunique()} of them with trial ratings in the analysis.",
            "",
            f"Scores are integers from {SCORE_RANGE}, as in the paper's section 3.3. "
            + PAIRING,
            "",
        ]
    )


def _completion_section(done: Completion, settings: Settings) -> str:
    table = done.table
    if not done.known:
        body = (
            f"The ratings hold no plans (a CSV), so whether each rater finished is unknown: all "
            f"{len(table)} raters are analysed. Analyse the study database to keep only finished raters."
        )
    else:
        unfinished = table[~table["finished"].astype(bool)]
        finished = len(table) - len(unfinished)
        what = (
            "included (`--include-partial`)" if settings.include_partial
            else "left out (the default; `--include-partial` analyses them too)"
        )
        body = (
            f"{finished} of the {len(table)} raters who answered finished their plan; {len(unfinished)} did not: {what}."
            if len(unfinished) else f"All {len(table)} raters who answered finished their plan."
        )
        if len(unfinished):
            body += " Unfinished: " + ", ".join(
                f"`{r.rater}` ({r.answered} of {r.planned})" for r in unfinished.itertuples()
            ) + "."
        if done.silent:
            body += f" {done.silent} more joined without giving an answer."
    if len(done.excluded):
        body += f" {len(done.excluded)} excluded by the study admin, their answers left out of everything: " + ", ".join(
            f"`{r.rater}` ({r.reason})" for r in done.excluded.itertuples()
        ) + "."
    return "\n".join(["## Completion", "", body, ""])


def _agreement_section(agreement: pd.DataFrame) -> str:
    def value(v: float, note: str, units: float) -> str:
        return note if note else f"{v:.3f} ({int(units)} stimuli)"

    table = pd.DataFrame(
        {
            "Dataset": agreement["dataset"],
            "Raters": agreement["raters"].astype(int).astype(str),
            "Krippendorff's alpha (ordinal)": [
                value(a, n, u) for a, n, u in zip(agreement["alpha"], agreement["alpha_note"], agreement["alpha_units"])
            ],
            "ICC(A,1) [95 % CI]": [
                r.icc_note or f"{r.icc:.3f} [{r.icc_low:.2f}, {r.icc_high:.2f}] ({int(r.icc_units)} stimuli)"
                for r in agreement.itertuples()
            ],
            "ICC(A,k) [95 % CI]": [
                r.icc_note or f"{r.icc_k:.3f} [{r.icc_k_low:.2f}, {r.icc_k_high:.2f}]" for r in agreement.itertuples()
            ],
        }
    )
    return "\n".join(
        [
            "## Inter-rater agreement",
            "",
            "Kept raters' trial scores, stimuli as units. Krippendorff's alpha (ordinal scale; `krippendorff`) "
            "over the stimuli two or more raters scored; ICC (two-way, absolute agreement, single rater A,1 "
            "and mean of k raters A,k; `pingouin`) over the stimuli every kept rater scored. Each needs "
            f"{stats.MIN_UNITS} such stimuli.",
            "",
            _markdown(table),
            "",
        ]
    )


def _raters_section(raters: pd.DataFrame, reach: dict[str, float], settings: Settings) -> str:
    gold = ", ".join(f"{m} expected {lo}..{hi}" for m, (lo, hi) in GOLD_EXPECTED.items())
    table = pd.DataFrame(
        {
            "Rater": raters["rater"],
            "Trial scores": raters["n_scores"].astype(str),
            "BT.500 outliers (above / below)": [f"{a} / {b}" for a, b in zip(raters["above"], raters["below"])],
            "Outlier rate": raters["outlier_rate"].map(lambda v: _fmt(100 * v, 1, "%")),
            "Asymmetry": raters["asymmetry"].map(lambda v: _fmt(v, 2)),
            "Gold failed / items": [f"{f} / {n}" for f, n in zip(raters["gold_failed"], raters["gold_items"])],
            "Calibration off / items": [f"{f} / {n}" for f, n in zip(raters["calibration_missed"], raters["calibration_items"])],
            "Answered / planned": [
                f"{a} / ?" if pd.isna(p) else f"{a} / {int(p)}" for a, p in zip(raters["answered"], raters["planned"])
            ],
            "Retest pairs": raters["retest_pairs"].astype(str),
            "Retest mean abs. diff.": raters["retest_mad"].map(lambda v: _fmt(v, 2)),
            "Status": raters["excluded"].map({True: "**excluded**", False: "kept"}),
        }
    )
    unscreened = ~raters["screened"].to_numpy()  # left out unfinished: their answers were not screened
    screening = [c for c in table.columns if c not in ("Rater", "Answered / planned", "Status")]
    table.loc[unscreened, screening] = "–"
    excluded = raters[raters["excluded"]]
    listing = (
        "\n".join(f"- `{r.rater}`: {r.reason}" for r in excluded.itertuples())
        if len(excluded)
        else "No rater was excluded."
    )
    return "\n".join(
        [
            "## Raters",
            "",
            "Screening: ITU-R BT.500 observer rejection on the trial scores of all raters (per stimulus, "
            "the beta2 kurtosis test picks mean +- 2 s for normal and +- sqrt(20) s for other score "
            "distributions; a rater is rejected when more than 5 % of their scores lie outside, on both "
            "sides: (P + Q) / N > 0.05 and |P - Q| / (P + Q) < 0.3), and P.808-style gold items "
            f"({gold}); a rater who fails more than {settings.max_gold_failures} gold item(s) is excluded. "
            "Calibration off: calibration photos given another score than the one the page asked for (1 for "
            "nearest-neighbour, 5 for the original): a sign of not reading the page, reported but not a reason to exclude.",
            "",
            _screening_reach(reach),
            "",
            _markdown(table),
            "",
            "Excluded raters:",
            "",
            listing,
            "",
        ]
    )


def _screening_reach(reach: dict[str, float]) -> str:
    """What the BT.500 screening could flag with the raters each stimulus had, in words."""
    two, sqrt20, stimuli = stats.OUTLIER_RATERS_2S, stats.OUTLIER_RATERS_SQRT20, int(reach["stimuli"])
    text = (
        f"Raters per stimulus (the {stimuli} stimuli screened): min {reach['raters_min']}, median "
        f"{_fmt(reach['raters_median'], 1)}. Among k scores none lies more than (k - 1) / sqrt(k) standard deviations "
        f"from their mean, so a score can be an outlier only on a stimulus with {two} or more raters (outside +- 2 s, "
        f"when its scores count as normal) or {sqrt20} or more (outside +- sqrt(20) s)."
    )
    if reach["reach_2s"] == 0:
        return text + (
            f" **No stimulus here has {two} raters, so the screening could not flag a single score: it rejected no one "
            "because it could not, which says nothing about the raters.**"
        )
    if reach["reach_sqrt20"] < stimuli:
        return text + (
            f" **Here {int(reach['reach_2s'])} of the {stimuli} stimuli have {two} or more raters and "
            f"{int(reach['reach_sqrt20'])} have {sqrt20} or more: the screening could flag scores only there, so it is "
            "weaker than BT.500 intends and a rater it keeps is not thereby shown reliable.**"
        )
    return text


def _retest_section(retest: dict[str, float]) -> str:
    if retest["n_pairs"] == 0:
        body = "No repeated items among the kept raters' ratings."
    else:
        body = (
            f"{int(retest['n_pairs'])} stimuli shown twice to the same rater (kept raters): "
            f"mean absolute difference = {_fmt(retest['mean_abs_diff'], 2)}; "
        )
        if retest["note"]:
            body += f"Spearman rho and the Wilcoxon test of first against second showing: {retest['note']}."
        else:
            rho = retest["spearman_note"] or (
                f"{_fmt(retest['spearman_rho'], 3)} (p = {_p(retest['spearman_p'])})"
            )
            test = retest["wilcoxon_note"] or (
                f"W = {_fmt(retest['wilcoxon_stat'], 1)}, p = {_p(retest['wilcoxon_p'])}"
            )
            body += (
                f"Spearman rho = {rho}; Wilcoxon signed-rank test of first against second showing (two-sided, "
                f"zero differences dropped, pairs as the unit, p exact over every sign pattern up to {stats.EXACT_MAX_DIFFERENCES} "
                f"non-zero pairs, else by the normal approximation): {test}."
            )
    return "\n".join(["## Test-retest reliability", "", body, ""])


def _dataset_section(
    dataset: str,
    mos: pd.DataFrame,
    pairwise: pd.DataFrame,
    omnibus: dict[str, float],
    ranks: pd.Series,
    blocks: int,
    methods: list[str],
    figure: str,
    metrics: Metrics | None,
    settings: Settings,
) -> str:
    table = {
        "Method": mos["method"],
        "MOS": mos["mos"].map(lambda v: _fmt(v, 2)),
        "std": mos["std"].map(lambda v: _fmt(v, 2)),
        "95 % CI (t)": [_interval(lo, hi, few) for lo, hi, few in zip(mos["t_low"], mos["t_high"], mos["few"])],
        "95 % CI (bootstrap)": [
            _interval(lo, hi, few) for lo, hi, few in zip(mos["boot_low"], mos["boot_high"], mos["few"])
        ],
        "95 % CI (raters resampled)": [
            _interval(lo, hi, few) for lo, hi, few in zip(mos["rater_low"], mos["rater_high"], mos["few"] | mos["few_raters"])
        ],
        "Ratings": mos["n"].astype(str),
        "Raters": mos["raters"].astype(str),
        "Images": mos["images"].astype(str),
    }
    if metrics is not None:
        table.update(
            {
                "PSNR [dB]": mos["psnr"].map(lambda v: _fmt(v, 2)),
                "SSIM": mos["ssim"].map(lambda v: _fmt(v, 4)),
                "NIQE": mos["niqe"].map(lambda v: _fmt(v, 2)),
            }
        )
    table.update(
        {
            "Paper PSNR": mos["paper_psnr"].map(lambda v: _fmt(v, 2)),
            "Paper SSIM": mos["paper_ssim"].map(lambda v: _fmt(v, 4)),
            "Paper MOS": mos["paper_mos"].map(lambda v: _fmt(v, 2)),
        }
    )
    if omnibus["note"]:
        friedman = f"Friedman test of {len(methods)} methods: {omnibus['note']}."
    else:
        friedman = (
            f"Friedman test with the {int(omnibus['n_raters'])} raters who rated all {len(methods)} methods of an image "
            f"as blocks (each rater's mean score of each method over those images): chi2 = "
            f"{_fmt(omnibus['statistic'], 2)}, p = {_p(omnibus['p'])}."
        )
    pairs = pd.DataFrame(
        {
            "A": pairwise["method_a"],
            "B": pairwise["method_b"],
            "Raters": pairwise["n_raters"].astype(str),
            "(rater, image) pairs": pairwise["n_pairs"].astype(str),
            "Mean A": pairwise["mean_a"].map(lambda v: _fmt(v, 2)),
            "Mean B": pairwise["mean_b"].map(lambda v: _fmt(v, 2)),
            "Mean difference (raters)": pairwise["mean_difference"].map(lambda v: _fmt(v, 2)),
            "W+ / W-": [
                note or f"{_fmt(plus, 1)} / {_fmt(minus, 1)}"
                for plus, minus, note in zip(pairwise["w_plus"], pairwise["w_minus"], pairwise["note"])
            ],
            "r (rank-biserial)": pairwise["rank_biserial"].map(lambda v: _fmt(v, 2, missing="n/a")),
            "p": pairwise["p"].map(_p),
            "p (Holm)": pairwise["p_holm"].map(_p),
        }
    )
    if blocks:
        ranks_text = _markdown(
            pd.DataFrame({"Method": ranks.index, "Mean rank (1 = best)": ranks.map(lambda v: _fmt(v, 2))})
        )
    else:
        ranks_text = "Not computable: 0 complete (rater, image) blocks; need >= 1."
    alpha = settings.alpha
    return "\n".join(
        [
            f"## {dataset}",
            "",
            "### MOS next to PSNR / SSIM (the paper's Table 2 layout)",
            "",
            _markdown(pd.DataFrame(table)),
            "",
            "### Significance",
            "",
            PAIRING,
            "Two-sided Wilcoxon signed-rank tests between every pair of methods over the raters' mean differences "
            "(raters with a zero mean difference dropped; p exact, over every sign pattern of the raters' differences, "
            f"so it holds with zeros and ties; by the normal approximation beyond {stats.EXACT_MAX_DIFFERENCES} raters; from "
            f"{stats.MIN_PAIRS} raters with a non-zero difference on, else `n/a` in the matrices below), at p < {alpha}, "
            "uncorrected as in the paper and Holm-corrected over the pairs tested in this dataset. W+ / W-: the signed-rank "
            "sums of the raters for whom A scored higher / lower; the larger one gives the direction in the matrices. "
            "Means in this table are over the paired scores only; the mean difference is the mean over raters of each "
            "rater's mean of A - B (the effect in score points), and r = (W+ - W-) / (W+ + W-), the matched-pairs "
            "rank-biserial correlation (-1: every rater scored B higher; 1: every rater scored A higher).",
            "",
            *_recruit(pairwise),
            friedman,
            "",
            _markdown(pairs),
            "",
            f"Significance matrix, uncorrected p < {alpha} (`>`: the row method scored significantly higher "
            "than the column method, `<` lower, `=` no significant difference, `n/a` not tested):",
            "",
            _markdown(stats.significance_matrix(pairwise, methods, "significant").reset_index(names="")),
            "",
            f"Significance matrix, Holm-corrected p < {alpha}:",
            "",
            _markdown(stats.significance_matrix(pairwise, methods, "significant_holm").reset_index(names="")),
            "",
            f"Mean ordinal ranks within the {blocks} complete (rater, image) blocks (descriptive):",
            "",
            ranks_text,
            "",
            f"![{dataset}: distribution of scores per method]({figure})",
            "",
        ]
    )


def _recruit(pairwise: pd.DataFrame) -> list[str]:
    """A line saying how many more raters the untested pairs need, when too few raters held them back (else none)."""
    few = pairwise["n_raters"] < stats.MIN_PAIRS
    if not few.any():
        return []
    least = int(pairwise.loc[few, "n_raters"].min())
    line = (
        f"**{int(few.sum())} of the {len(pairwise)} pairs have fewer than {stats.MIN_PAIRS} raters (the fewest {least}): "
        f"every pair can be tested only with at least {stats.MIN_PAIRS - least} more raters who rate both methods of an image.**"
    )
    return [line, ""]


def _left_out(studied: pd.DataFrame, trial: pd.DataFrame, raters: pd.DataFrame) -> list[str]:
    """A line for each (dataset, method) that was rated, but only by raters left out of the analysis, naming them and why."""
    reason = raters.set_index("rater")["reason"]
    lines = []
    for (dataset, method), group in studied.groupby(["dataset", "method"], sort=True):
        if ((trial["dataset"] == dataset) & (trial["method"] == method)).any():
            continue
        who = "; ".join(f"`{r}`: {reason[r]}" for r in sorted(group["rater"].unique()))
        lines.append(f"{dataset} / `{method}`: no MOS and no tests: only raters left out of the analysis rated it ({who}).")
    return lines


def _overview_section(has_psnr: bool, metrics: Metrics | None, settings: Settings, left_out: list[str]) -> str:
    lines = ["## Figures", "", "![MOS with 95 % confidence intervals, raters resampled](mos_ci.png)", ""]
    if has_psnr:
        lines += ["![Perception-distortion: MOS against PSNR](perception_distortion.png)", ""]
    else:
        lines += ["No perception-distortion plot: no PSNR values.", ""]
    lines += [
        "## Notes",
        "",
        f"- Confidence intervals of the MOS: Student t, and BCa bootstrap ({settings.n_resamples} resamples, "
        f"seed {settings.seed}), both treating the ratings of a (dataset, method) as independent samples; and a "
        "percentile bootstrap that resamples raters, each with all their ratings (same resamples and seed). One "
        "rater's ratings are not independent (a strict rater scores everything low), so when raters rate many "
        "images the first two are too narrow; the raters-resampled one allows for that (it still takes the images "
        "as fixed) and needs at least 2 raters. All are clipped to the 1..5 scale. "
        f"`*`: from fewer than {stats.MIN_CI_RATINGS} ratings (or, raters resampled, fewer than "
        f"{stats.MIN_CI_RATERS} raters), too few for the interval to mean much, or from ratings all equal, whose "
        "interval of width 0 measures no spread, not certainty.",
        "- The tests between methods take the rater as the unit (one mean difference, or one mean score per method, "
        "per rater), so their p-values hold for other raters drawn from the same population, with the images taken "
        f"as fixed; they need at least {stats.MIN_PAIRS} raters.",
        *(f"- {line}" for line in left_out),
    ]
    if metrics is None:
        lines.append("- PSNR / SSIM / NIQE not computed (`--no-metrics`).")
    else:
        lines.append(
            "- PSNR / SSIM: Y channel (BT.601), 4-pixel border cropped, averaged over every image of the "
            "dataset, the same images for every method whoever rated what (srgan_core.evaluate); NIQE on the "
            f"same outputs (lower looks more natural); `{ORIGINAL}` has no PSNR."
        )
        lines += [f"- {note}" for note in metrics.notes]
    lines.append(
        "- Paper columns: Ledig et al. (CVPR 2017), Tables 1 and 2; their SSIM implementation differs "
        "from the standard one."
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- formatting helpers


def _markdown(frame: pd.DataFrame) -> str:
    """`frame` (its columns as the header, without the index) as srgan_core's Markdown table."""
    return markdown_table(frame.columns, frame.itertuples(index=False))


def _fmt(value: float | None, digits: int, suffix: str = "", missing: str = "") -> str:
    return missing if value is None or math.isnan(value) else f"{value:.{digits}f}{suffix}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2e}" if value < 0.001 else f"{value:.3f}"


def _interval(low: float, high: float, few: bool = False) -> str:
    return "" if math.isnan(low) else f"[{low:.2f}, {high:.2f}]" + ("*" if few else "")


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _sort_rows(frame: pd.DataFrame, datasets: list[str], methods: list[str]) -> pd.DataFrame:
    rank = {"dataset": {d: i for i, d in enumerate(datasets)}, "method": {m: i for i, m in enumerate(methods)}}
    return frame.sort_values(["dataset", "method"], key=lambda s: s.map(rank[s.name]), ignore_index=True)


def _columns_first(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame[[column] + [c for c in frame.columns if c != column]]


def _csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")


# ---------------------------------------------------------------- command line


class SetupError(ValueError):
    """An --out or --data-root the analysis cannot use (found before any work)."""


def metrics_data_root(data_root: Path | None) -> Path:
    """The data folder PSNR / SSIM / NIQE are computed from (`data_root`, else the default), or SetupError saying
    that there is none."""
    root = data_root or default_data_root()
    if root is None:
        raise SetupError(f"no data folder for PSNR / SSIM / NIQE: fetch it with `{GET_DATA}`, give --data-root DIR, or pass --no-metrics")
    if not root.is_dir():
        why = "is a file, not a folder" if root.exists() else "no such folder"
        raise SetupError(f"--data-root {root}: {why}; give the data folder, fetch the data with `{GET_DATA} --to {root}`, or pass --no-metrics")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.analyze", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--db", type=Path, help=f"study database (default: ${store.DB_ENV} or {store.DEFAULT_DB})")
    source.add_argument("--ratings", type=Path, help="long-format ratings CSV instead of the database")
    parser.add_argument("--study", help="the study to analyse (needed when the ratings hold several)")
    parser.add_argument("--out", type=Path, help="output folder (default: results/study/NAME)")
    parser.add_argument(
        "--data-root", type=Path, help=f"data folder with benchmarks/ (default: {DATA_ROOT_DEFAULT})"
    )
    parser.add_argument("--no-metrics", action="store_true", help="skip PSNR / SSIM / NIQE")
    parser.add_argument(
        "--include-partial", action="store_true",
        help="analyse raters who did not finish their plan too (default: finished raters only; the report counts both)",
    )
    parser.add_argument("--resamples", type=int, default=Settings.n_resamples, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=Settings.seed, help="bootstrap seed")
    parser.add_argument(
        "--max-gold-failures", type=int, default=Settings.max_gold_failures,
        help="exclude raters who fail more gold items than this (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error(f"--resamples {args.resamples}: give 1 or more (the default is {Settings.n_resamples})")
    if args.max_gold_failures < 0:
        parser.error(f"--max-gold-failures {args.max_gold_failures}: give 0 or more")
    if args.seed < 0:
        parser.error(f"--seed {args.seed}: give 0 or more")
    try:
        planned = None
        if args.ratings is not None:
            ratings, source_name = read_ratings_csv(args.ratings), str(args.ratings)
        else:
            db = args.db or store.default_db()
            ratings, source_name = read_ratings_db(db), str(db)
            planned = read_planned(db)
        study, ratings = select_study(ratings, args.study)
        if planned is not None:
            planned = planned[planned["study"] == study]
        out_dir = args.out
        if out_dir is None:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", study):
                raise RatingsError(f"study name {study!r} is not a safe folder name; choose one with --out")
            out_dir = RESULTS_DIR / study
        data_root = None if args.no_metrics else metrics_data_root(args.data_root)
        metrics_fn = None if args.no_metrics else lambda trial: compute_metrics(trial, data_root)
        settings = Settings(args.resamples, args.seed, Settings.alpha, args.max_gold_failures, args.include_partial)
        command = shlex.join(["python", "-m", "study.analyze", *(sys.argv[1:] if argv is None else argv)])
        made = make_writable_folder(out_dir, "--out")
        try:
            report = analyze(ratings, study, out_dir, metrics_fn, settings, source_name, planned, command)
        except BaseException:
            remove_empty(made)
            raise
    except (RatingsError, SetupError, FolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
