"""study.ratings and `python -m study.analyze`: malformed input, and an end-to-end run on SYNTHETIC
ratings with a known ground truth. The synthetic ratings exist only inside these tests; nothing
here is a MOS result."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study import analyze
from study.ratings import RatingsError, read_ratings_csv, read_ratings_db, select_study
from study.schema import COLUMNS

SYNTHETIC_STUDY = "synthetic-test-only"
# Ground truth of the synthetic raters: the ordering the analysis must recover. srgan-vgg22 and
# srgan-vgg54 are equally good, so that pair must come out not significant.
TRUTH = {"nearest": 1.3, "bicubic": 2.0, "srresnet-mse": 3.0, "srgan-vgg22": 3.7, "srgan-vgg54": 3.7, "hr": 4.5}
IMAGES = ["baby", "bird", "butterfly", "head", "woman"]
ERRATIC, CARELESS = "r18", "r19"


def synthetic_ratings(seed: int = 1) -> pd.DataFrame:
    """SYNTHETIC: 20 simulated raters score every Set5 image of every method as the truth plus noise.

    r18 answers 1 or 5 at random (BT.500 must reject it); r19 is honest but fails its gold item.
    Each rater sees 3 stimuli again (phase repeat) and two calibration images (r19 misses one).
    """
    rng = np.random.default_rng(seed)
    rows = []

    def add(rater, stimulus, image, method, phase, score, position):
        rows.append(
            {"study": SYNTHETIC_STUDY, "rater": rater, "stimulus": stimulus, "dataset": "Set5", "image": image,
             "method": method, "phase": phase, "score": score, "shown_at": f"2025-01-01T00:{position % 60:02d}:00Z",
             "response_ms": 900 + position, "position": position}
        )

    for r in range(20):
        rater, position, seen = f"r{r:02d}", 0, []
        for image in ("cal1", "cal2"):  # the careless rater gives cal2 a 3 where the page asked for 1
            add(rater, f"cal-{image}", image, "nearest", "calibration", 3 if rater == CARELESS and image == "cal2" else 1, position)
            position += 1
        for image in IMAGES:
            for method, quality in TRUTH.items():
                score = int(np.clip(np.rint(quality + rng.normal(0, 0.7)), 1, 5))
                if rater == ERRATIC:
                    score = int(rng.choice([1, 5]))
                add(rater, f"{image}-{method}", image, method, "trial", score, position)
                seen.append((image, method, score))
                position += 1
        for image, method, score in seen[:3]:
            add(rater, f"{image}-{method}", image, method, "repeat", score, position)
            position += 1
        add(rater, "gold-nearest", "baby", "nearest", "gold", 4 if rater == CARELESS else 1, position)
    return pd.DataFrame(rows, columns=list(COLUMNS))


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic_ratings.csv"
    synthetic_ratings().to_csv(path, index=False)
    return path


def run(argv: list[str]) -> int:
    return analyze.main([str(a) for a in argv])


def test_end_to_end_recovers_ordering_and_significant_pairs(synthetic_csv: Path, tmp_path: Path):
    out = tmp_path / "report"
    assert run(["--ratings", synthetic_csv, "--out", out, "--no-metrics", "--resamples", 200]) == 0
    for name in ["report.md", "raters.csv", "mos.csv", "pairwise.csv", "friedman.csv", "ranks.csv",
                 "fig5_Set5.png", "mos_ci.png"]:
        assert (out / name).is_file(), name

    raters = pd.read_csv(out / "raters.csv").set_index("rater")
    assert sorted(raters.index[raters["excluded"]]) == [ERRATIC, CARELESS]
    assert bool(raters.loc[ERRATIC, "rejected"]) and raters.loc[CARELESS, "gold_failed"] == 1
    assert raters["calibration_missed"].to_dict() == {r: int(r == CARELESS) for r in raters.index}
    assert (raters["calibration_items"] == 2).all() and "| 1 / 2 |" in (out / "report.md").read_text()

    mos = pd.read_csv(out / "mos.csv")
    assert mos["method"].tolist() == list(TRUTH)  # srgan_core's order, HR last
    assert (mos["n"] == 18 * len(IMAGES)).all()
    assert mos.loc[mos["method"] == "hr", "paper_mos"].item() == 4.32
    by_mos = mos.set_index("method")["mos"]
    assert by_mos["nearest"] < by_mos["bicubic"] < by_mos["srresnet-mse"]
    assert by_mos["srresnet-mse"] < min(by_mos["srgan-vgg22"], by_mos["srgan-vgg54"])
    assert max(by_mos["srgan-vgg22"], by_mos["srgan-vgg54"]) < by_mos["hr"]

    pairwise = pd.read_csv(out / "pairwise.csv")
    not_significant = pairwise.loc[~pairwise["significant_holm"], ["method_a", "method_b"]]
    assert not_significant.values.tolist() == [["srgan-vgg22", "srgan-vgg54"]]
    assert (pairwise["n_raters"] == 18).all() and (pairwise["n_pairs"] == 18 * len(IMAGES)).all()
    assert pd.read_csv(out / "friedman.csv")["p"].item() < 1e-10
    ranks = pd.read_csv(out / "ranks.csv").set_index("method")["mean_rank"]
    assert ranks["hr"] < ranks["srresnet-mse"] < ranks["bicubic"] < ranks["nearest"]

    report = (out / "report.md").read_text()
    assert f"Made by `python -m study.analyze --ratings {synthetic_csv} --out {out} --no-metrics --resamples 200`." in report
    assert "The tests between methods take the **rater as the unit**" in report
    assert "![MOS with 95 % confidence intervals, raters resampled](mos_ci.png)" in report
    assert f"`{ERRATIC}`: BT.500 rejection" in report and f"`{CARELESS}`: failed 1 of 1 gold items" in report
    assert "Test-retest" in report and "54 stimuli shown twice" in report
    assert "PSNR / SSIM / NIQE not computed (`--no-metrics`)" in report


def test_same_input_gives_identical_files(synthetic_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    outputs = []
    for name in ("one", "two"):  # the same command (the report names it) in two folders
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        assert run(["--ratings", synthetic_csv, "--out", "report", "--no-metrics", "--resamples", 100]) == 0
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name / "report").iterdir())})
    assert outputs[0] == outputs[1]


def test_an_analysis_stopped_while_reporting_keeps_the_files_before_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    synthetic_ratings(seed=1).to_csv(first, index=False)
    synthetic_ratings(seed=2).to_csv(second, index=False)
    out = tmp_path / "report"
    assert run(["--ratings", first, "--out", out, "--no-metrics", "--resamples", 50]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def stopped(*args: object) -> str:  # a Ctrl-C while the report's last section is made
        raise KeyboardInterrupt

    monkeypatch.setattr(analyze, "_overview_section", stopped)
    with pytest.raises(KeyboardInterrupt):
        run(["--ratings", second, "--out", out, "--no-metrics", "--resamples", 50])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the first analysis whole, nothing half-written


def test_datasets_in_paper_order_and_gold_tolerance(tmp_path: Path):
    ratings = synthetic_ratings()
    set14 = ratings[ratings["phase"] == "trial"].assign(dataset="Set14", stimulus=lambda t: "14-" + t["stimulus"])
    path = tmp_path / "ratings.csv"
    pd.concat([set14, ratings]).to_csv(path, index=False)
    out = tmp_path / "report"
    assert run(["--ratings", path, "--out", out, "--no-metrics", "--resamples", 50, "--max-gold-failures", 1]) == 0
    report = (out / "report.md").read_text()
    assert report.index("## Set5") < report.index("## Set14")
    assert pd.read_csv(out / "mos.csv")["dataset"].drop_duplicates().tolist() == ["Set5", "Set14"]
    assert (out / "fig5_Set14.png").is_file()
    raters = pd.read_csv(out / "raters.csv").set_index("rater")
    assert raters["excluded"].sum() == 1 and not raters.loc[CARELESS, "excluded"]


def test_metrics_next_to_mos_and_missing_weights_noted(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import srgan_core.method_specs
    from srgan_core.evaluate import score_images

    monkeypatch.setattr(srgan_core.method_specs, "MODELS_DIR", tmp_path / "no-weights")  # every learned method missing
    ratings = synthetic_ratings()
    ratings = ratings[ratings["image"].isin(["baby", "bird"]) | (ratings["phase"] != "trial")]
    path = tmp_path / "ratings.csv"
    ratings.to_csv(path, index=False)
    out = tmp_path / "report"
    assert run(["--ratings", path, "--out", out, "--data-root", data_root, "--resamples", 100]) == 0

    mos = pd.read_csv(out / "mos.csv").set_index("method")
    # only baby and bird were rated, yet every method is scored on all of Set5: the same images for each
    expected = score_images(["bicubic"], "Set5", data_root)
    assert len(expected) == 5
    assert mos.loc["bicubic", "psnr"] == pytest.approx(expected["psnr"].mean(), abs=1e-5)
    assert mos.loc["bicubic", "ssim"] == pytest.approx(expected["ssim"].mean(), abs=1e-6)
    assert mos.loc["nearest", "psnr"] < mos.loc["bicubic", "psnr"]
    assert np.isnan(mos.loc["hr", "psnr"]) and mos.loc["hr", "niqe"] > 0
    assert np.isnan(mos.loc["srgan-vgg54", "psnr"])
    report = (out / "report.md").read_text()
    assert "Set5 / srgan-vgg54: metrics left blank: srgan-vgg54: no trained weights" in report
    assert "averaged over every image of the dataset, the same images for every method" in report
    assert (out / "perception_distortion.png").is_file()


# ---------------------------------------------------------------- malformed input


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ratings.csv"
    path.write_text(text)
    return path


HEADER = ",".join(COLUMNS)
GOOD = "s,r1,x1,Set5,baby,bicubic,trial,3,2025-01-01T00:00:00Z,1200,0"


def error_of(path: Path) -> str:
    with pytest.raises(RatingsError) as err:
        read_ratings_csv(path)
    return str(err.value)


def test_good_rows_are_typed(tmp_path: Path):
    table = read_ratings_csv(write(tmp_path, f"{HEADER}\n{GOOD}\n\ns,r1,x2,Set5,bird,hr,trial,5,,,\n"))
    assert table["score"].tolist() == [3, 5]
    assert table["response_ms"].iloc[0] == 1200 and np.isnan(table["response_ms"].iloc[1])
    assert table["position"].iloc[0] == 0 and pd.isna(table["position"].iloc[1])


def test_missing_and_empty_files(tmp_path: Path):
    assert "no such ratings file" in error_of(tmp_path / "absent.csv")
    assert f"{tmp_path} is a folder: give the ratings CSV file" in error_of(tmp_path)
    assert "the file is empty" in error_of(write(tmp_path, ""))
    assert "no ratings" in error_of(write(tmp_path, HEADER + "\n"))


def test_wrong_columns_are_named(tmp_path: Path):
    header = HEADER.replace("score", "rating")
    message = error_of(write(tmp_path, f"{header}\n{GOOD}\n"))
    assert "missing column score" in message and "unexpected column rating" in message


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        (GOOD.replace(",3,", ",7,"), "line 3: score '7' is not an integer in 1..5"),
        (GOOD.replace(",3,", ",0,"), "line 3: score '0' is not an integer in 1..5"),
        (GOOD.replace(",3,", ",3.5,"), "line 3: score '3.5' is not an integer in 1..5"),
        (GOOD.replace(",3,", ",good,"), "line 3: score 'good' is not an integer in 1..5"),
        (GOOD.replace(",3,", ",,"), "line 3: score is empty"),
        (GOOD.replace("trial", "practice"), "line 3: unknown phase 'practice'"),
        (GOOD.replace("r1,", ",", 1), "line 3: rater is empty"),
        (GOOD.replace(",1200,", ",-5,"), "line 3: response_ms '-5' is not a non-negative number"),
        (GOOD.replace(",0", ",first"), "line 3: position 'first' is not a non-negative integer"),
        (GOOD.replace("2025-01-01T00:00:00Z", "yesterday"), "line 3: shown_at 'yesterday' is not an ISO 8601 time"),
        (GOOD.replace("bicubic,trial", "bicubic,gold"), "line 3: gold item with method 'bicubic'"),
        (GOOD.replace("x1", "x0"), "line 3: rater 'r1' answered stimulus 'x0' (trial) again; first answer at line 2"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, bad_row: str, expected: str):
    first = GOOD.replace("x1", "x0")
    assert expected in error_of(write(tmp_path, f"{HEADER}\n{first}\n{bad_row}\n{GOOD.replace('x1', 'x9')}\n"))


def test_cli_reports_errors_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, f"{HEADER}\n{GOOD.replace(',3,', ',9,')}\n")
    assert run(["--ratings", path, "--out", tmp_path / "out", "--no-metrics"]) == 2
    assert "line 2: score '9' is not an integer in 1..5" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        run(["--ratings", path, "--seed", "-1"])
    assert "--seed -1: give 0 or more" in capsys.readouterr().err


def test_study_selection(tmp_path: Path):
    table = read_ratings_csv(write(tmp_path, f"{HEADER}\n{GOOD}\n{GOOD.replace('s,', 't,', 1)}\n"))
    with pytest.raises(RatingsError, match="several studies \\(s, t\\)"):
        select_study(table, None)
    with pytest.raises(RatingsError, match="no ratings for study 'u'"):
        select_study(table, "u")
    name, chosen = select_study(table, "t")
    assert name == "t" and chosen["study"].tolist() == ["t"]


def test_no_trial_ratings_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, f"{HEADER}\n{GOOD.replace('bicubic,trial', 'nearest,calibration')}\n")
    assert run(["--ratings", path, "--out", tmp_path / "new" / "out", "--no-metrics"]) == 2
    assert "has no trial ratings yet" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # no empty output folder left behind


def test_an_unreadable_ratings_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, f"{HEADER}\n{GOOD}\n")

    def refused(*args, **kwargs):  # what a file without read permission does to this user (root could read it anyway)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd, "read_csv", refused)
    assert run(["--ratings", path, "--out", tmp_path / "out", "--no-metrics"]) == 2
    assert capsys.readouterr().err == f"error: {path}: cannot read it (Permission denied); give a ratings file you can read\n"


def not_analysed(*args, **kwargs):
    raise AssertionError("analysed before the command line was checked")


@pytest.mark.parametrize(
    ("out", "expected"),
    [("ratings.csv", "--out {tmp}/ratings.csv is a file; give a folder"),
     ("ratings.csv/out", "cannot write to {tmp}/ratings.csv/out: Not a directory; give --out a folder you can write to"),
     ("locked", "cannot write to {tmp}/locked: Permission denied; give --out a folder you can write to")],
)
def test_an_out_folder_it_cannot_write_into_is_refused_before_any_work(
    out: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import tempfile

    path = write(tmp_path, f"{HEADER}\n{GOOD}\n")
    (tmp_path / "locked").mkdir()
    real = tempfile.NamedTemporaryFile

    def refused(*args, dir=None, **kwargs):  # what a read-only folder does to this user (root could write anyway)
        if Path(dir) == tmp_path / "locked":
            raise PermissionError(13, "Permission denied", str(Path(dir) / "x"))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refused)
    monkeypatch.setattr(analyze, "analyze", not_analysed)
    assert run(["--ratings", path, "--out", tmp_path / out, "--no-metrics"]) == 2
    assert capsys.readouterr().err == f"error: {expected.replace('{tmp}', str(tmp_path))}\n"


@pytest.mark.parametrize("root", ["nowhere", "ratings.csv"])
def test_a_data_root_that_is_not_a_folder_is_refused_before_any_work(
    root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    path = write(tmp_path, f"{HEADER}\n{GOOD}\n")
    monkeypatch.setattr(analyze, "analyze", not_analysed)
    assert run(["--ratings", path, "--out", tmp_path / "out", "--data-root", tmp_path / root]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --data-root {tmp_path / root}: ") and err.endswith("or pass --no-metrics\n") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


needs_store = pytest.mark.skipif(importlib.util.find_spec("study.store") is None, reason="study.store not written yet")


@needs_store
def test_database_source(tmp_path: Path):
    from study import store

    db = tmp_path / "study.sqlite"
    synthetic = synthetic_ratings()
    synthetic = synthetic[synthetic["rater"].isin(["r00", "r01", "r02"]) & (synthetic["phase"] != "calibration")]
    with store.connect(db) as con, store.transaction(con):
        store.add_study(con, SYNTHETIC_STUDY, {"synthetic": True})
        stimuli = synthetic.drop_duplicates(["stimulus", "phase"]).query("phase != 'repeat'")
        for row in stimuli.itertuples():
            kind = "gold" if row.phase == "gold" else "trial"
            store.add_stimulus(con, store.Stimulus(
                f"{row.stimulus:0>16}", SYNTHETIC_STUDY, kind, row.dataset, row.image, row.method,
                f"{row.stimulus}.png", 8, 8, 1 if kind == "gold" else None))
        for seq, (rater, answers) in enumerate(synthetic.groupby("rater", sort=True)):
            plan = [(f"{s:0>16}", phase) for s, phase in zip(answers["stimulus"], answers["phase"])]
            store.add_rater(con, rater, SYNTHETIC_STUDY, seq, plan)
            for position, row in enumerate(answers.itertuples(), start=1):
                store.add_rating(con, rater=rater, position=position, stimulus=f"{row.stimulus:0>16}",
                                 phase=row.phase, score=row.score, shown_at="2025-01-01T00:00:00.000+00:00",
                                 answered_at="2025-01-01T00:00:01.000+00:00", response_ms=1000)

    table = read_ratings_db(db)
    assert len(table) == len(synthetic)
    assert sorted(table["score"]) == sorted(synthetic["score"])
    out = tmp_path / "report"
    assert run(["--db", db, "--out", out, "--no-metrics", "--resamples", 100]) == 0
    assert (out / "report.md").read_text().startswith(f"# MOS study `{SYNTHETIC_STUDY}`")


@needs_store
def test_missing_empty_or_foreign_database(tmp_path: Path):
    import sqlite3

    with pytest.raises(RatingsError, match="no such study database"):
        read_ratings_db(tmp_path / "absent.sqlite")
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(RatingsError, match="the file is empty"):
        read_ratings_db(empty)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE other (x)")
    with pytest.raises(RatingsError, match="not a study database"):
        read_ratings_db(foreign)
    from study import store

    fresh = tmp_path / "fresh.sqlite"
    with store.connect(fresh):
        pass
    with pytest.raises(RatingsError, match="no ratings stored yet"):
        read_ratings_db(fresh)


# ---------------------------------------------------------------- completion, tiny studies, agreement


def twelve_raters() -> pd.DataFrame:
    """SYNTHETIC: the first 12 raters of `synthetic_ratings` (none of them erratic or careless)."""
    ratings = synthetic_ratings()
    return ratings[ratings["rater"].isin([f"r{i:02d}" for i in range(12)])]


def store_study(db: Path, ratings: pd.DataFrame, unanswered: dict[str, int]) -> None:
    """SYNTHETIC ratings written to a study database, each rater's plan = their answers plus
    `unanswered[rater]` more trial presentations they never answered."""
    from study import store

    with store.connect(db) as con, store.transaction(con):
        store.add_study(con, SYNTHETIC_STUDY, {"synthetic": True})
        ids = {}
        for row in ratings.drop_duplicates("stimulus").itertuples():
            kind = {"gold": "gold", "calibration": "calibration"}.get(row.phase, "trial")
            ids[row.stimulus] = f"{row.stimulus:0>16}"
            store.add_stimulus(con, store.Stimulus(
                ids[row.stimulus], SYNTHETIC_STUDY, kind, row.dataset, row.image, row.method,
                f"{row.stimulus}.png", 8, 8, None if kind == "trial" else 1))
        trials = sorted(ids[s] for s in ratings.loc[ratings["phase"] == "trial", "stimulus"].unique())
        for seq, (rater, answers) in enumerate(ratings.groupby("rater", sort=True)):
            plan = [(ids[s], phase) for s, phase in zip(answers["stimulus"], answers["phase"])]
            answered = {s for s, p in plan if p == "trial"}
            plan += [(s, "trial") for s in trials if s not in answered][: unanswered.get(rater, 0)]
            store.add_rater(con, rater, SYNTHETIC_STUDY, seq, plan)
            for position, row in enumerate(answers.itertuples(), start=1):
                store.add_rating(con, rater=rater, position=position, stimulus=ids[row.stimulus], phase=row.phase,
                                 score=row.score, shown_at="2025-01-01T00:00:00.000+00:00",
                                 answered_at="2025-01-01T00:00:01.000+00:00", response_ms=1000)


@needs_store
def test_only_finished_raters_by_default_and_the_report_counts_the_rest(tmp_path: Path):
    ratings = twelve_raters()
    quitter = ratings[ratings["rater"] == "r11"].iloc[:3]  # the case: one trial score, no gold item
    ratings = pd.concat([ratings[ratings["rater"] != "r11"], quitter])
    assert quitter["phase"].tolist() == ["calibration", "calibration", "trial"]
    db = tmp_path / "study.sqlite"
    store_study(db, ratings, {"r11": 27})
    out = tmp_path / "finished"
    assert run(["--db", db, "--out", out, "--no-metrics", "--resamples", 50]) == 0
    report = (out / "report.md").read_text()
    assert ("11 of the 12 raters who answered finished their plan; 1 did not: left out (the default; "
            "`--include-partial` analyses them too). Unfinished: `r11` (3 of 30).") in report
    raters = pd.read_csv(out / "raters.csv").set_index("rater")
    assert raters.loc["r11", "excluded"] and raters.loc["r11", "reason"] == "did not finish (answered 3 of 30)"
    assert raters.loc["r00", "finished"] and not raters.loc["r00", "excluded"]
    (row,) = [line for line in report.splitlines() if line.startswith("| r11 |")]  # not screened: dashes, not zeros
    assert row.count("| – ") == 8 and "| 3 / 30 |" in row and "**excluded**" in row
    mos = pd.read_csv(out / "mos.csv")
    assert (mos["raters"] == 11).all() and (mos["n"] == 11 * len(IMAGES)).all()

    out = tmp_path / "partial"
    assert run(["--db", db, "--out", out, "--no-metrics", "--resamples", 50, "--include-partial"]) == 0
    report = (out / "report.md").read_text()
    assert "1 did not: included (`--include-partial`)" in report
    assert pd.read_csv(out / "mos.csv")["n"].sum() == 11 * 30 + 1


@needs_store
def test_admin_excluded_raters_are_named_not_counted_as_silent(tmp_path: Path):
    from study import store

    db = tmp_path / "study.sqlite"
    store_study(db, twelve_raters(), {})
    with store.connect(db) as con:
        store.set_excluded(con, "r05", "answered with the screen off")
    out = tmp_path / "report"
    assert run(["--db", db, "--out", out, "--no-metrics", "--resamples", 50]) == 0
    report = (out / "report.md").read_text()
    assert "All 11 raters who answered finished their plan." in report
    assert "1 excluded by the study admin, their answers left out of everything: `r05` (answered with the screen off)." in report
    assert "without giving an answer" not in report
    raters = pd.read_csv(out / "raters.csv")
    assert "r05" not in set(raters["rater"]) and len(raters) == 11
    assert (pd.read_csv(out / "mos.csv")["raters"] == (~raters["excluded"]).sum()).all()


@needs_store
def test_analysing_never_writes_to_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import hashlib
    import os

    from study import store

    db = tmp_path / "study.sqlite"
    store_study(db, synthetic_ratings(), {})
    with store.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else writable(path, mode))
    assert run(["--db", db, "--out", tmp_path / "report", "--no-metrics", "--resamples", 50]) == 0  # an archive
    monkeypatch.undo()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(store.StoreError, match="not a study database"):
        store.connect(empty, create=False).__enter__()
    assert empty.stat().st_size == 0  # not given a schema by a reader


@needs_store
def test_a_database_in_a_folder_it_cannot_write_is_read_with_its_write_ahead_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os
    import sqlite3

    db = tmp_path / "study.sqlite"
    store_study(db, synthetic_ratings(), {})
    writer = sqlite3.connect(db)  # a live server: its last commits are still in study.sqlite-wal
    writer.execute("PRAGMA wal_autocheckpoint=0")
    everyone = len(read_ratings_db(db))
    writer.execute("INSERT INTO exclusions VALUES ('r00', '2026-12-01', 'test')")
    writer.commit()
    assert (tmp_path / "study.sqlite-wal").stat().st_size > 0
    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else writable(path, mode))
    kept = read_ratings_db(db)
    assert "r00" not in set(kept["rater"]) and len(kept) < everyone
    writer.close()


@needs_store
def test_a_damaged_database_and_bad_flags_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from study import store

    db = tmp_path / "study.sqlite"
    store_study(db, synthetic_ratings(), {})
    with store.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'ratings'").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    data[(page - 1) * size : page * size] = b"\xff" * size
    db.write_bytes(bytes(data))
    with pytest.raises(RatingsError, match="may be damaged"):
        read_ratings_db(db)
    for flags in (["--resamples", "0"], ["--max-gold-failures", "-1"]):
        with pytest.raises(SystemExit):
            run(["--db", db, "--no-metrics", *flags])
        assert flags[0] in capsys.readouterr().err


def tiny_ratings() -> pd.DataFrame:
    """SYNTHETIC: 3 raters, 2 Set5 images x 3 methods each, one repeat each: too little for any test."""
    rows = []
    for r in range(3):
        position = 0
        for image in ("baby", "bird"):
            for method, score in (("nearest", 1), ("bicubic", 2 + r % 2), ("hr", 5)):
                rows.append({"study": SYNTHETIC_STUDY, "rater": f"r{r}", "stimulus": f"{image}-{method}", "dataset": "Set5",
                             "image": image, "method": method, "phase": "trial", "score": score,
                             "shown_at": "2025-01-01T00:00:00Z", "response_ms": 900, "position": position})
                position += 1
        rows.append(dict(rows[-1], phase="repeat", score=4, position=position))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_a_tiny_study_says_what_cannot_be_computed(tmp_path: Path):
    path = tmp_path / "tiny.csv"
    tiny_ratings().to_csv(path, index=False)
    out = tmp_path / "report"
    assert run(["--ratings", path, "--out", out, "--no-metrics", "--resamples", 50]) == 0
    report = (out / "report.md").read_text()
    assert "whether each rater finished is unknown: all 3 raters are analysed" in report
    assert "Spearman rho and the Wilcoxon test of first against second showing: not computable: 3 pairs; need >= 10." in report
    assert "Friedman test of 3 methods: not computable: 3 raters who rated every method of an image; need >= 10." in report
    assert report.count("not computable: 3 raters; need >= 10") == 3
    assert "not computable: 6 stimuli scored by two or more raters; need >= 10" in report
    assert "rho = 1.000" not in report and "0.00e+00" not in report
    mos = pd.read_csv(out / "mos.csv")
    assert mos[["t_low", "boot_low"]].min().min() >= 1 and mos[["t_high", "boot_high"]].max().max() <= 5
    assert mos["few"].all() and "[" in report and "]*" in report
    pairwise = pd.read_csv(out / "pairwise.csv")
    assert pairwise["p"].isna().all() and (pairwise["note"] == "not computable: 3 raters; need >= 10").all()
    assert (pairwise["n_pairs"] == 6).all()


def test_complete_blocks_give_every_test_and_agreement(synthetic_csv: Path, tmp_path: Path):
    out = tmp_path / "report"
    assert run(["--ratings", synthetic_csv, "--out", out, "--no-metrics", "--resamples", 50]) == 0
    agreement = pd.read_csv(out / "agreement.csv", keep_default_na=False).iloc[0]
    assert agreement["raters"] == 18 and agreement["alpha_units"] == agreement["icc_units"] == 30
    assert 0.5 < float(agreement["alpha"]) < 1 and 0.5 < float(agreement["icc"]) < 1
    assert agreement["alpha_note"] == agreement["icc_note"] == ""
    assert pd.read_csv(out / "friedman.csv", keep_default_na=False)["note"].item() == ""
    report = (out / "report.md").read_text()
    assert "## Inter-rater agreement" in report and "not computable" not in report[report.index("## Inter-rater agreement"):]
    # the synthetic repeats copy the first score: no difference between showings, so nothing for the test to test
    assert "first against second showing (two-sided, zero differences dropped, pairs as the unit, p exact over every " \
           "sign pattern up to 1000 non-zero pairs, else by the normal approximation): not computable: 0 non-zero differences " \
           "(of 54 pairs); need >= 10." in report


def test_the_report_says_when_bt500_screening_could_not_flag_anyone(synthetic_csv: Path, tmp_path: Path):
    path = tmp_path / "tiny.csv"
    tiny_ratings().to_csv(path, index=False)
    assert run(["--ratings", path, "--out", tmp_path / "tiny", "--no-metrics", "--resamples", 50]) == 0
    report = (tmp_path / "tiny" / "report.md").read_text()
    assert "Raters per stimulus (the 6 stimuli screened): min 3, median 3.0." in report
    assert "**No stimulus here has 6 raters, so the screening could not flag a single score" in report
    assert run(["--ratings", synthetic_csv, "--out", tmp_path / "full", "--no-metrics", "--resamples", 50]) == 0
    report = (tmp_path / "full" / "report.md").read_text()
    assert "Raters per stimulus (the 30 stimuli screened): min 20, median 20.0." in report
    assert "**Here 30 of the 30 stimuli have 6 or more raters and 0 have 22 or more" in report


@needs_store
def test_a_rater_who_undid_their_last_answer_and_left_has_not_finished(tmp_path: Path):
    from study import store

    db = tmp_path / "study.sqlite"
    store_study(db, twelve_raters(), {})
    with store.connect(db) as con, store.transaction(con):
        last = con.execute("SELECT max(position) FROM ratings WHERE rater = 'r00'").fetchone()[0]
        store.reopen(con, "r00", last, "2025-01-01T00:00:02.000+00:00")  # undone, never answered again
    out = tmp_path / "report"
    assert run(["--db", db, "--out", out, "--no-metrics", "--resamples", 50]) == 0
    raters = pd.read_csv(out / "raters.csv").set_index("rater")
    assert not raters.loc["r00", "finished"] and raters.loc["r00", "reason"] == "did not finish (answered 35 of 36)"
    assert "Unfinished: `r00` (35 of 36)." in (out / "report.md").read_text()
    assert raters.loc["r00", "excluded"] and (pd.read_csv(out / "mos.csv")["raters"] == (~raters["excluded"]).sum()).all()


def test_a_method_only_left_out_raters_rated_is_named_with_why(tmp_path: Path):
    ratings = synthetic_ratings()
    extra = ratings[(ratings["rater"] == CARELESS) & (ratings["phase"] == "trial") & (ratings["method"] == "bicubic")]
    extra = extra.assign(method="srgan-mse", stimulus=lambda t: t["image"] + "-srgan-mse", position=lambda t: t["position"] + 100)
    path = tmp_path / "ratings.csv"
    pd.concat([ratings, extra]).to_csv(path, index=False)
    out = tmp_path / "report"
    assert run(["--ratings", path, "--out", out, "--no-metrics", "--resamples", 50]) == 0
    assert "srgan-mse" not in set(pd.read_csv(out / "mos.csv")["method"])
    assert ("- Set5 / `srgan-mse`: no MOS and no tests: only raters left out of the analysis rated it "
            f"(`{CARELESS}`: failed 1 of 1 gold items).") in (out / "report.md").read_text()


def test_the_mos_figure_draws_the_raters_resampled_interval_and_marks_a_missing_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from study import figures

    mos = pd.DataFrame({"dataset": ["Set5"] * 2, "method": ["bicubic", "hr"], "mos": [2.0, 4.5],
                        "t_low": [1.9, 4.4], "t_high": [2.1, 4.6], "boot_low": [1.9, 4.4], "boot_high": [2.1, 4.6],
                        "rater_low": [1.5, float("nan")], "rater_high": [2.6, float("nan")]})  # hr: one rater
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig))
    figures.mos_with_intervals(mos, ["Set5"], ["bicubic", "hr"], tmp_path / "mos_ci.png")
    ax = drawn[0].axes[0]
    assert "resampling raters" in ax.get_ylabel()
    segments = [seg.tolist() for c in ax.collections for seg in c.get_segments()]
    assert segments == [[[0.0, 1.5], [0.0, 2.6]]]  # bicubic's raters-resampled interval only; nothing at hr
    assert [(t.get_text(), t.xy) for t in ax.texts] == [("n/a", (1, 4.5))]
