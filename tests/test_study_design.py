"""The study design: complete blocks, the spacing rules on generated plans, exact counts, and prepare's refusals."""

from __future__ import annotations

import secrets
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from study import design, prepare, sessions, store
from study.schema import KINDS
from tests.test_study_prepare import request, synthetic_data_root


def trials(images: int, methods: int, datasets: int = 1) -> list[store.Stimulus]:
    return [
        store.Stimulus(secrets.token_hex(16), "s", "trial", f"D{d}", f"img{i}", f"m{m}", "f", 1, 1, None)
        for d in range(datasets)
        for i in range(images)
        for m in range(methods)
    ]


def config(stimuli, *, design_name="blocks", per_rater=None, repeats=10, gold=4, seed=0, spacing=None) -> dict:
    cfg = {"design": design_name, "per_rater": per_rater, "repeats": repeats, "gold": gold, "seed": seed}
    limit = design.spacing_limit(stimuli, cfg)
    return cfg | {"spacing": design.default_spacing(limit) if spacing is None else spacing}


CASES = [  # images, methods, datasets, per_rater, repeats, gold, design
    (5, 6, 1, None, 10, 4, "blocks"),  # Set5 x all methods
    (14, 6, 1, 36, 10, 4, "blocks"),
    (19, 6, 1, 24, 4, 2, "blocks"),
    (10, 4, 3, 60, 10, 4, "blocks"),
    (100, 6, 1, 120, 10, 4, "blocks"),  # BSD100-sized windows
    (14, 4, 1, 10, 3, 2, "incomplete"),
    (19, 6, 1, 20, 5, 4, "incomplete"),
]


@pytest.mark.parametrize("images, methods, datasets, per_rater, repeats, gold, design_name", CASES)
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_generated_plans_keep_the_spacing_and_the_blocks(images, methods, datasets, per_rater, repeats, gold, design_name, seed):
    stimuli = trials(images, methods, datasets)
    cfg = config(stimuli, design_name=design_name, per_rater=per_rater, repeats=repeats, gold=gold, seed=seed)
    groups = {s.id: design.image_key(s) for s in stimuli}
    by_id = {s.id: s for s in stimuli}
    calibration, golds = [f"c{i}" for i in range(6)], [f"g{i}" for i in range(gold)]
    seen = per_rater or len(stimuli)
    planned: Counter = Counter()
    raters = 2 * design.windows(len(stimuli), per_rater) + 1
    for seq in range(raters):
        plan = design.rater_plan(stimuli, calibration, golds, cfg, seq)
        assert design.spacing_violations(plan, groups, cfg["spacing"]) == []
        assert [p for _, p in plan[:6]] == ["calibration"] * 6 and "calibration" not in {p for _, p in plan[6:]}
        assert design.presentation_counts(plan) == {
            "calibration": 6, "trial": seen, "repeat": repeats, "gold": gold, "total": 6 + seen + repeats + gold
        }
        shown = [s for s, p in plan if p == "trial"]
        assert len(set(shown)) == seen
        again = [s for s, p in plan if p == "repeat"]
        assert len({groups[s] for s in again}) == min(repeats, len({groups[s] for s in shown}))  # spread over images
        if design_name == "blocks":
            per_image = Counter(groups[s] for s in shown)
            assert set(per_image.values()) == {methods}  # every method of every image the rater gets
            assert {by_id[s].method for s in shown} == {f"m{m}" for m in range(methods)}
        planned.update(shown)
    counts = [planned[s.id] for s in stimuli]
    assert max(counts) - min(counts) <= 1


def test_the_default_spacing_is_half_the_most_the_size_allows():
    stimuli = trials(19, 6)  # Set5 + Set14 x 6 methods, every stimulus to every rater
    cfg = {"design": "blocks", "per_rater": None, "repeats": 10, "gold": 4, "seed": 0}
    limit = design.spacing_limit(stimuli, cfg)
    # 114 stimuli + 10 repeats + 4 gold = 128; 10 images shown 7 times: (7 - 1) * (K + 1) + 10 <= 128
    assert (limit.spacing, limit.presentations, limit.largest, limit.images) == (18, 128, 7, 10)
    assert design.default_spacing(limit) == 9
    small = design.spacing_limit(trials(4, 6), cfg | {"repeats": 0, "gold": 0})
    assert small.spacing == 3 and design.default_spacing(small) == 1  # 4 images of 6 versions: little room
    big = design.spacing_limit(trials(100, 6), cfg)
    assert design.default_spacing(big) == design.MAX_DEFAULT_SPACING


@pytest.mark.parametrize("seed", range(5))
def test_the_bound_is_exact(seed):
    """At the largest spacing the plans still keep it (the greedy fallback); one more is impossible."""
    stimuli = trials(6, 4)
    cfg = {"design": "blocks", "per_rater": None, "repeats": 3, "gold": 2, "seed": seed}
    limit = design.spacing_limit(stimuli, cfg).spacing
    groups = {s.id: design.image_key(s) for s in stimuli}
    plan = design.rater_plan(stimuli, [], ["g0", "g1"], cfg | {"spacing": limit}, seed)
    assert design.spacing_violations(plan, groups, limit) == []
    labels = [groups[s] if p != "gold" else s for s, p in plan]
    with pytest.raises(design.DesignError, match=f"at most {limit} fit"):
        design.spaced_order(labels, limit + 1, np.random.default_rng(seed))


def test_violations_are_found():
    groups = {"a1": "a", "a2": "a", "b1": "b"}
    plan = [("c", "calibration"), ("a1", "trial"), ("b1", "trial"), ("a2", "trial"), ("a1", "repeat"), ("b1", "repeat")]
    assert design.spacing_violations(plan, groups, 0) == []
    problems = design.spacing_violations(plan, groups, 1)
    assert problems == ["positions 4 and 5: 0 between two of a"]
    assert design.spacing_violations([("a1", "repeat"), ("a1", "trial")], groups, 0) == [
        "position 1: repeat of a1 before its first showing"
    ]


def test_todays_build_plan_call_still_spaces_repeats():
    plan = design.build_plan(["c0"], [f"s{i}" for i in range(12)], ["g0"], 3, np.random.default_rng(0))
    assert design.spacing_violations(plan, {f"s{i}": f"s{i}" for i in range(12)}, design.LEGACY_REPEAT_GAP) == []


def test_gold_items_fall_anywhere_and_repeats_anywhere_after_their_first_showing():
    """In plans of whole images (the spaced draw takes larger groups first), the gold items' places are uniform
    over the plan and a repeat is not pushed to its image's last place: 300 plans of 19 images x 6 methods."""
    subset = [f"i{i}-m{m}" for i in range(19) for m in range(6)]
    groups = {s: s.split("-")[0] for s in subset}
    gold_at, repeat_at = [], []
    for seed in range(300):
        plan = design.build_plan([], subset, ["g0", "g1", "g2", "g3"], 10, np.random.default_rng(seed), groups, 9)
        assert design.spacing_violations(plan, groups, 9) == []
        gold_at += [i / (len(plan) - 1) for i, (_, phase) in enumerate(plan) if phase == "gold"]
        repeat_at += [i / (len(plan) - 1) for i, (_, phase) in enumerate(plan) if phase == "repeat"]
    assert 0.47 < np.mean(gold_at) < 0.53 and 0.21 < np.mean(np.array(gold_at) < 0.25) < 0.29  # uniform: 0.5 and 0.25
    assert np.mean(repeat_at) < 0.75  # the later of two random places: 2/3 (last of its image's places: 0.92)


def test_gold_items_space_images_that_cannot_be_spaced_without_them():
    groups = {"a1": "a", "a2": "a"}
    for seed in range(5):
        plan = design.build_plan([], ["a1", "a2"], ["g"], 0, np.random.default_rng(seed), groups, 1)
        assert [phase for _, phase in plan] == ["trial", "gold", "trial"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data_root(tmp_path_factory.mktemp("data"), benchmark_images=3, train_images=8)


def test_prepare_stores_the_design_and_exact_counts(data, tmp_path):
    db = tmp_path / "study.sqlite"
    prepare.prepare(request(calibration=2, gold=2, repeats=2), data, db)
    with store.connect(db) as con:
        cfg = store.study_config(con, "pilot")
        stimuli = {k: store.study_stimuli(con, "pilot", k) for k in KINDS}
    assert cfg["design"] == "blocks"
    # 3 images x 3 methods + 2 repeats + 2 gold = 13; the 2 repeated images are shown 4 times: K <= 2
    assert cfg["spacing"] == 1
    assert cfg["presentations"] == {"calibration": 4, "trial": 9, "repeat": 2, "gold": 2, "total": 17}
    # the counts a rater is told match the plan a rater gets
    token = sessions.new_rater(db)
    st = sessions.status(db, token)
    assert (st.total, st.calibration) == (cfg["presentations"]["total"], cfg["presentations"]["calibration"])
    plan = design.rater_plan(
        stimuli["trial"], [s.id for s in stimuli["calibration"]], [s.id for s in stimuli["gold"]], cfg, 0
    )
    groups = {s.id: design.image_key(s) for s in stimuli["trial"]}
    assert design.presentation_counts(plan) == cfg["presentations"]
    assert design.spacing_violations(plan, groups, cfg["spacing"]) == []
    assert "each rater answers 17: 4 calibration presentations (2 images, each as nearest and as the original)" in (
        prepare.describe_plan(cfg)
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"spacing": 3}, r"--spacing 3: a rater's plan has 13 presentations after calibration, 2 image\(s\) shown 4 times "
                          r"\(methods and repeats\): at most 2 others fit between two of one image, not 3"),
        ({"per_rater": 4}, "--per-rater 4: complete blocks give each rater all 3 methods .* multiple of 3 \\(e.g. 3 or 6\\)"),
        ({"design": "latin"}, "unknown design 'latin'"),
        ({"spacing": -1}, "cannot be negative"),
    ],
)
def test_prepare_refuses_a_design_it_cannot_keep(data, tmp_path, overrides, message):
    db = tmp_path / "study.sqlite"
    with pytest.raises(prepare.PrepareError, match=message):
        prepare.prepare(request(**overrides), data, db)
    assert not (tmp_path / "pilot").exists()
    if db.exists():
        with store.connect(db) as con:
            assert not store.has_study(con, "pilot")


def test_prepare_accepts_the_largest_spacing_and_incomplete_designs(data, tmp_path):
    db = tmp_path / "study.sqlite"
    prepare.prepare(request(spacing=2), data, db)
    prepare.prepare(request(name="loose", design="incomplete", per_rater=4, repeats=1), data, db)
    with store.connect(db) as con:
        assert store.study_config(con, "pilot")["spacing"] == 2
        loose = store.study_config(con, "loose")
    assert loose["design"] == "incomplete" and loose["presentations"]["trial"] == 4


def test_cli_states_every_count(data, tmp_path, capsys):
    db = tmp_path / "study.sqlite"
    argv = ["--name", "pilot", "--datasets", "Set5", "--methods", "nearest", "hr", "--calibration", "3", "--gold", "2",
            "--repeats", "1", "--data-root", str(data), "--db", str(db)]
    assert prepare.main(argv) == 0
    out = capsys.readouterr().out
    assert ("each rater answers 15: 6 calibration presentations (3 images, each as nearest and as the original), "
            "then 9 rated: 6 stimuli, 1 repeats and 2 gold items") in out
    assert prepare.main([*argv[:1], "other", *argv[2:], "--spacing", "50"]) == 2
    assert "error: --spacing 50:" in capsys.readouterr().err


def test_a_complete_block_pilot_gives_every_test_every_rater(tmp_path):
    """SYNTHETIC scores (tests only, never a MOS): 3 raters finish a 4-image x 3-method study, a fourth quits. Every
    pair of methods and the Friedman test get all 3 raters' blocks; the tests take the rater as the unit, so 3 are
    too few for them."""
    from study import analyze

    data = synthetic_data_root(tmp_path / "data", benchmark_images=4, train_images=6)
    db = tmp_path / "study.sqlite"
    prepare.prepare(request(calibration=1, gold=2, repeats=2), data, db)
    truth = {"nearest": 1, "bicubic": 3, "hr": 5}
    with store.connect(db) as con:
        method = {s.id: s.method for k in KINDS for s in store.study_stimuli(con, "pilot", k)}
    rng = np.random.default_rng(0)
    for rater in range(4):
        token = sessions.new_rater(db)
        for _ in range(3 if rater == 3 else 10**6):
            item = sessions.present(db, token)
            if item is None:
                break
            score = truth[method[item.stimulus]] + int(rng.integers(-1, 2))
            sessions.answer(db, token, item.ticket, min(max(score, 1), 5))
    out = tmp_path / "report"
    assert analyze.main(["--db", str(db), "--out", str(out), "--no-metrics", "--resamples", "50"]) == 0
    report = (out / "report.md").read_text()
    assert "3 of the 4 raters who answered finished their plan; 1 did not: left out" in report
    pairwise = pd.read_csv(out / "pairwise.csv", keep_default_na=False)
    assert (pairwise["n_raters"] == 3).all() and (pairwise["n_pairs"] == 12).all()  # 3 raters x 4 images
    assert (pairwise["note"] == "not computable: 3 raters; need >= 10").all()
    assert "**3 of the 3 pairs have fewer than 10 raters (the fewest 3): every pair can be tested only with at least 7 more" in report
    friedman = pd.read_csv(out / "friedman.csv", keep_default_na=False).iloc[0]
    assert friedman["n_raters"] == 3 and friedman["note"] == "not computable: 3 raters who rated every method of an image; need >= 10"
