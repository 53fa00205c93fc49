"""`python -m study.prepare --name NAME --datasets ... --methods ...`: render a MOS study's stimuli once
and register the study in the database.

Every stimulus is a metadata-free PNG named by an opaque random id under
``<db folder>/<NAME>/stimuli/``; only the database knows which method made it. Method ``hr`` is the
mod-cropped original; every other method upscales the paper's LR image (``downscale_x4``) 4x. The
calibration images (the paper's protocol: nearest-neighbour = 1, original = 5) and the gold items
(an obvious nearest-neighbour image expected <= 2, an original expected >= 4) come from BSDS500
training images, mod-cropped to 4 like the benchmark images (481x321 -> 480x320, the BSD100 size).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import secrets
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srgan_core.data import BENCHMARKS, benchmark_images, list_images, require_data_root
from srgan_core.images import downscale_x4, load_image, modcrop, save_png
from srgan_core.method_specs import METHODS
from srgan_core.methods import MethodUnavailable, Upscaler, load_method
from srgan_core.paths import DATA_ROOT_DEFAULT
from study import design, store
from study.schema import KINDS, ORIGINAL, SCORES

CALIBRATION_FOLDER = Path("train") / "BSDS500_train"
ANCHORS = {"nearest": SCORES[0], ORIGINAL: SCORES[-1]}  # the score each calibration / gold version stands for
PLANS_CHECKED = 50  # raters whose plans prepare builds and checks (all of them where fewer windows exist)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEFAULT_REPEATS = 10


@dataclass(frozen=True)
class Request:
    """What to render: the validated command line."""

    name: str
    datasets: list[str]
    methods: list[str]
    per_rater: int | None
    repeats: int
    seed: int
    calibration: int
    gold: int
    pause_every: int
    design: str = design.DEFAULT_DESIGN
    spacing: int | None = None  # None: `design.default_spacing` for the study's size
    repeats_default: bool = False  # True: `repeats` is --repeats' default, which the user did not type


class PrepareError(ValueError):
    """A study that cannot be prepared as asked (nothing is written)."""


def _check_request(req: Request) -> None:
    if not _NAME.fullmatch(req.name):
        raise PrepareError(
            f"study name {req.name!r}: use 1-64 of the ASCII letters A-Z and a-z, the digits 0-9, '-' and '_', starting with a letter or digit"
        )
    unknown = [m for m in req.methods if m not in (*METHODS, ORIGINAL)]
    if unknown:
        raise PrepareError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join((*METHODS, ORIGINAL))}")
    if len(set(req.methods)) != len(req.methods) or len(set(req.datasets)) != len(req.datasets):
        raise PrepareError("a method or dataset is listed twice")
    bad = [d for d in req.datasets if d not in BENCHMARKS]
    if bad:
        raise PrepareError(f"unknown dataset(s) {', '.join(bad)}; choose from {', '.join(BENCHMARKS)}")
    if req.calibration < 0 or req.gold < 0 or req.pause_every < 0 or (req.spacing or 0) < 0:
        raise PrepareError("--calibration, --gold, --pause-every and --spacing cannot be negative")
    if req.design not in design.DESIGNS:
        raise PrepareError(f"unknown design {req.design!r}; choose from {', '.join(design.DESIGNS)}")


def _check_counts(req: Request, n_trials: int) -> None:
    if req.per_rater is not None and not 1 <= req.per_rater <= n_trials:
        raise PrepareError(f"--per-rater {req.per_rater}: must be between 1 and the {n_trials} stimuli of the study")
    seen = req.per_rater or n_trials
    if not 0 <= req.repeats <= seen:
        given = f"--repeats defaults to {req.repeats}, more than" if req.repeats_default else f"--repeats {req.repeats}: must be between 0 and"
        raise PrepareError(f"{given} the {seen} stimuli each rater sees; give --repeats {seen // 2}, or another number from 0 to {seen}")
    k = len(req.methods)
    if req.design == "blocks" and seen % k:
        lower, upper = seen // k * k, (seen // k + 1) * k
        raise PrepareError(
            f"--per-rater {seen}: complete blocks give each rater all {k} methods of every image they get, so "
            f"--per-rater must be a multiple of {k} (e.g. {lower or upper} or {upper}), or use --design incomplete"
        )


def _plan_config(req: Request, trials: list[store.Stimulus]) -> dict:
    """The design part of the study's config: design, spacing (the default chosen for the study's size,
    or the one asked for when every rater's plan can keep it) and each rater's presentation counts, taken
    from plans built and checked here the way raters will get them."""
    config = {"design": req.design, "per_rater": req.per_rater, "repeats": req.repeats, "seed": req.seed, "gold": req.gold}
    limit = design.spacing_limit(trials, config)
    if req.spacing is not None and limit.spacing is not None and req.spacing > limit.spacing:
        raise PrepareError(
            f"--spacing {req.spacing}: {limit.explain(req.spacing)}; lower --spacing, give each rater more "
            "images (--per-rater) or fewer --repeats"
        )
    config["spacing"] = design.default_spacing(limit) if req.spacing is None else req.spacing
    calibration = [f"calibration-{i}" for i in range(2 * req.calibration)]
    gold = [f"gold-{i}" for i in range(req.gold)]
    groups = {s.id: design.image_key(s) for s in trials}
    plans = [
        design.rater_plan(trials, calibration, gold, config, seq)
        for seq in range(min(design.windows(len(trials), req.per_rater), PLANS_CHECKED))
    ]
    for seq, plan in enumerate(plans):
        broken = design.spacing_violations(plan, groups, config["spacing"])
        if broken:  # the bound above makes this unreachable; kept as the check of the plans themselves
            raise PrepareError(f"rater {seq}'s plan breaks the spacing {config['spacing']}: {broken[0]}")
    config["presentations"] = design.presentation_counts(plans[0])
    return config


def _upscalers(methods: list[str]) -> dict[str, Upscaler]:
    """Every method loaded before anything is rendered, so a missing model stops the run at once."""
    loaded = {}
    for m in methods:
        if m == ORIGINAL:
            continue
        try:
            loaded[m] = load_method(m)
        except MethodUnavailable as err:
            raise PrepareError(f"method {m} is not available: {err}") from None
    return loaded


def _render(hr: np.ndarray, method: str, upscalers: dict[str, Upscaler]) -> np.ndarray:
    if method == ORIGINAL:
        return hr
    sr = upscalers[method].upscale(downscale_x4(hr))
    if sr.shape != hr.shape:
        raise RuntimeError(f"{method} returned {sr.shape} for a {hr.shape} original")
    return sr


def prepare(req: Request, data_root: Path | None, db_path: Path, show_progress: bool = False) -> dict[str, int]:
    """Render and register the study; returns the number of stimuli of each kind. The design (spacing,
    each rater's presentation counts) is in the study's stored config.

    Renders into a hidden folder first and registers everything in one transaction, so a failure
    leaves neither a half study in the database nor a stimuli folder behind.
    """
    _check_request(req)
    root = require_data_root(data_root)
    sources = {d: benchmark_images(d, root) for d in req.datasets}
    _check_counts(req, sum(len(v) for v in sources.values()) * len(req.methods))
    extra_dir = root / CALIBRATION_FOLDER
    extra = list_images(extra_dir) if extra_dir.is_dir() else []
    if len(extra) < req.calibration + req.gold:
        raise PrepareError(
            f"{req.calibration} calibration + {req.gold} gold images need {req.calibration + req.gold} images in {extra_dir}; found {len(extra)}"
        )
    db_path = Path(db_path)
    if db_path.is_dir():
        raise PrepareError(f"--db {db_path} is a folder: give the study database's file name (e.g. {db_path / 'study.sqlite'})")
    final_dir = store.stimuli_dir(db_path, req.name)
    if db_path.is_file():  # the database is created only once everything is rendered
        with store.connect(db_path, create=False) as con:
            if store.has_study(con, req.name):
                raise PrepareError(f"study {req.name!r} already exists in {db_path}; choose another --name")
    if final_dir.exists():
        raise PrepareError(f"{final_dir} already exists; remove it or choose another --name")

    rng = np.random.default_rng(req.seed)
    picks = [extra[i] for i in rng.choice(len(extra), size=req.calibration + req.gold, replace=False)]
    jobs = [("trial", d, p, m, None) for d, paths in sources.items() for p in paths for m in req.methods]
    jobs += [("calibration", CALIBRATION_FOLDER.name, p, m, ANCHORS[m]) for p in picks[: req.calibration] for m in ANCHORS]
    gold_methods = [m for m in ANCHORS for _ in range((req.gold + 1) // 2)][: req.gold]
    jobs += [("gold", CALIBRATION_FOLDER.name, p, m, ANCHORS[m]) for p, m in zip(picks[req.calibration :], gold_methods)]
    ids = [secrets.token_hex(16) for _ in jobs]  # drawn first: the raters' windows depend on them
    planned = [  # what the design needs of each trial stimulus, before anything is rendered
        store.Stimulus(sid, req.name, kind, dataset, path.stem, method, "", 1, 1, None)
        for sid, (kind, dataset, path, method, _) in zip(ids, jobs)
        if kind == "trial"
    ]
    plan_config = _plan_config(req, planned)
    upscalers = _upscalers(list(dict.fromkeys(method for _, _, _, method, _ in jobs)))  # the anchors too

    created = [folder for folder in (final_dir.parent, *final_dir.parent.parents) if not folder.exists()]  # removed on failure
    staging = final_dir.parent / f".{req.name}-partial-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    try:
        stimuli = []
        hr_path, hr = None, None
        progress = tqdm(list(zip(ids, jobs)), desc=f"rendering {req.name}", disable=not show_progress)
        for sid, (kind, dataset, path, method, expected) in progress:
            if path != hr_path:  # the jobs of one image are adjacent: load each original once
                hr_path, hr = path, modcrop(load_image(path))
            img = _render(hr, method, upscalers)
            save_png(img, staging / f"{sid}.png")
            rel = final_dir.relative_to(db_path.parent) / f"{sid}.png"
            stimuli.append(store.Stimulus(sid, req.name, kind, dataset, path.stem, method, rel.as_posix(), img.shape[1], img.shape[0], expected))
        config = {
            "datasets": req.datasets,
            "methods": req.methods,
            "calibration": req.calibration,
            "pause_every": req.pause_every,
            "data_root": str(root),
            **plan_config,
        }
        with store.connect(db_path) as con, store.transaction(con):
            if store.has_study(con, req.name):  # prepared by another run while this one rendered
                raise PrepareError(f"study {req.name!r} already exists in {db_path}; choose another --name")
            store.add_study(con, req.name, config)
            for s in stimuli:
                store.add_stimulus(con, s)
            final_dir.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # innermost first, and only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return {k: sum(s.kind == k for s in stimuli) for k in KINDS}


def describe_plan(config: dict) -> str:
    """Each rater's plan in words, every count exact (from the stored presentation counts)."""
    n = config["presentations"]
    blocks = "complete blocks (every method of each image a rater gets)" if config["design"] == "blocks" else "incomplete blocks"
    return (
        f"each rater answers {n['total']}: {n['calibration']} calibration presentations ({config['calibration']} "
        f"image{'' if config['calibration'] == 1 else 's'}, each as nearest and as the original), then {n['trial'] + n['repeat'] + n['gold']} rated: "
        f"{n['trial']} stimuli, {n['repeat']} repeats and {n['gold']} gold items; design: {blocks}; at least "
        f"{config['spacing']} other presentations between two of one image"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m study.prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="study name (ASCII letters, digits, - and _)")
    parser.add_argument("--datasets", nargs="+", required=True, choices=BENCHMARKS, metavar="DATASET", help=f"from {', '.join(BENCHMARKS)}")
    parser.add_argument("--methods", nargs="+", required=True, metavar="METHOD", help=f"from {', '.join((*METHODS, ORIGINAL))} ({ORIGINAL} = the original)")
    parser.add_argument("--per-rater", type=int, default=None, help="stimuli per rater (balanced subsets; with --design blocks a multiple of the methods; default: all)")
    parser.add_argument("--design", choices=design.DESIGNS, default=design.DEFAULT_DESIGN, help="blocks: each rater sees every method of each image they get (default); incomplete: method-balanced windows of stimuli")
    parser.add_argument("--spacing", type=int, default=None, metavar="K", help="at least K other presentations between two versions of one image and between a stimulus and its repeat (default: half the most the study's size allows, at most 20)")
    parser.add_argument("--repeats", type=int, help=f"stimuli shown a second time to each rater, for test-retest (default {DEFAULT_REPEATS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--calibration", type=int, default=20, help="calibration images, each shown twice, as nearest (1) and as the original (5): 2N presentations (default 20)")
    parser.add_argument("--gold", type=int, default=4, help="gold items per rater, half nearest and half original (default 4)")
    parser.add_argument("--pause-every", type=int, default=50, help="offer a pause after every N rated images (0: never; default 50)")
    parser.add_argument("--data-root", type=Path, default=None, help=f"data folder (default: {DATA_ROOT_DEFAULT})")
    parser.add_argument("--db", type=Path, default=None, help=f"study database (default: {store.DB_ENV} or {store.DEFAULT_DB})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = DEFAULT_REPEATS if args.repeats is None else args.repeats
    req = Request(
        args.name, args.datasets, args.methods, args.per_rater, repeats, args.seed, args.calibration, args.gold,
        args.pause_every, args.design, args.spacing, repeats_default=args.repeats is None,
    )
    db_path = args.db or store.default_db()
    try:
        earlier = None
        if Path(db_path).is_file():  # nothing is created before the request is checked
            with store.connect(db_path, create=False) as con:
                earlier = store.latest_study(con)
        counts = prepare(req, args.data_root, db_path, show_progress=True)
    except (PrepareError, FileNotFoundError, store.StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as err:  # a --db that is a folder, or in a folder this user cannot write
        print(f"error: --db {db_path}: {getattr(err, 'strerror', None) or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: study {req.name!r} not prepared; nothing was kept", file=sys.stderr)
        return 130
    with store.connect(db_path, create=False) as con:
        config = store.study_config(con, req.name)
    print(
        f"study {req.name!r} in {db_path}: {counts['trial']} stimuli, {counts['calibration']} calibration and "
        f"{counts['gold']} gold items under {store.stimuli_dir(db_path, req.name)}"
    )
    print(describe_plan(config))
    if earlier is not None:
        print(
            f"note: {req.name!r} is now the open study: new raters join it, and the raters of {earlier!r} go on with theirs. "
            "A running `study.serve` set its --consent-file, --completion-code and --completion-url on the study open "
            f"when it started ({earlier!r}); restart it with this study's to give them to {req.name!r}."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
