"""`python -m tools.pilot_study --out DIR [--per-rater N]`: a pilot of the MOS study through the rating page.

Prepares a study with `study.prepare` (default: Set5 + Set14, every method and the original) into
DIR/study.sqlite, serves it with `python -m study.serve` (with an admin token), and lets `--raters`
simulated raters (default 3) complete it at the same time through the rate server's page in headless
Chromium at 1366x768, each in its own browser context, arriving with `?rater=pilot-K`, ticking the
consent and pressing keys as a person would. A simulated rater gives a calibration photo the score the
page asks for, a gold item its expected score (looked up in the database: the page does not say which
items are gold), and every other photo a random score from 1 to 5. Then `study.analyze` runs on the
database (without PSNR / SSIM / NIQE) into DIR/analysis.

It prints, and writes to DIR/pilot.json and DIR/pilot.md, what it measured: answers, time per answer,
photos shown whole and 1:1, refusals, the admin view's finished flags, and per dataset the raters and (rater,
image) pairs behind each pair of methods and whether each paired test and the Friedman test were computed
(they take the rater as the unit, so they need `study.stats.MIN_PAIRS` raters: a pilot with fewer says why
not). It exits 0 when every analysed rater gave every pair of methods and the Friedman test their data.
The scores are simulated: nothing here, DIR/analysis included, is a MOS result.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd

from srgan_core.data import BENCHMARKS
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import METHODS
from srgan_core.paths import DATA_ROOT_DEFAULT, REPO_ROOT, replace_text
from srgan_core.train import positive
from study import analyze, prepare, sessions, stats, store
from study.loadtest import free_port
from study.schema import ORIGINAL

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1366, "height": 768}
STUDY_NAME = "pilot"
STUCK_S = 60.0  # a page that has not moved on this long after a key is pressed again (counted)
# What the page shows now, read from its own state (`state`, `busy` and `readyAt` are rate.html's globals).
PAGE_STATE = """() => {
  const img = document.getElementById('stimulus'), s = state, r = img.getBoundingClientRect();
  const trial = !!s && s.screen === 'trial';
  return {
    screen: s ? s.screen : null, busy, answered: s ? s.progress.answered : null,
    ticket: trial ? s.item.ticket : null, calibration: trial && s.item.calibration, expected: trial ? s.item.expected : null,
    ready: trial && img.complete && img.naturalWidth > 0 && img.src === new URL(s.item.image, location.href).href
           && performance.now() >= readyAt,
    whole: r.top >= 0 && r.bottom <= innerHeight && r.right <= innerWidth
           && document.documentElement.scrollHeight <= innerHeight && document.documentElement.scrollWidth <= innerWidth,
    one_to_one: Math.round(r.width * devicePixelRatio) === img.naturalWidth && Math.round(r.height * devicePixelRatio) === img.naturalHeight,
    error: document.getElementById('trial-status').textContent || document.getElementById('intake-status').textContent,
    code: document.getElementById('code').textContent,
  };
}"""


class PilotError(RuntimeError):
    """The pilot could not run or did not finish (no browser, the server did not start, a rater stuck)."""


@dataclass
class Rater:
    """One simulated rater: a browser page and what it saw."""

    identity: str
    page: Page
    acted: str | None = None  # the screen it last acted on (ticket or interlude), so it acts once on each
    acted_at: float = 0.0
    answers: int = 0
    retries: int = 0
    seconds_per_answer: list[float] = field(default_factory=list)  # key press -> next photo taking keys
    not_whole: int = 0
    not_one_to_one: int = 0
    refusals: list[str] = field(default_factory=list)
    code: str = ""
    done: bool = False


def serve_command(db: Path, port: int, admin_token: str) -> list[str]:
    """The `study.serve` command line; the token is joined to its flag, since a token may begin with '-'."""
    return [sys.executable, "-m", "study.serve", "--db", str(db), "--port", str(port), f"--admin-token={admin_token}"]


@contextmanager
def serving(db: Path, log_path: Path, admin_token: str) -> Iterator[str]:
    """`python -m study.serve` on `db` on a free localhost port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = serve_command(db, port, admin_token)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(600):
                if proc.poll() is not None:
                    raise PilotError(f"study.serve exited with {proc.returncode}: {log_path.read_text(errors='replace')[-2000:]}")
                try:
                    if httpx.get(url + "api/study", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise PilotError(f"study.serve did not answer within 2 minutes; see {log_path}")
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _score(db: Path, identity: str, view: dict, rng: np.random.Generator) -> int:
    """The simulated rater's score: as asked on calibration, as expected on gold items (looked up: the page
    cannot tell), else random."""
    if view["calibration"]:
        return int(view["expected"])
    with store.connect(db, create=False) as con:
        rater = store.rater_by_identity(con, store.latest_study(con), identity)
        stimulus = sessions.stimulus_of(con, rater, view["ticket"])
    return int(stimulus.expected) if stimulus.kind == "gold" else int(rng.integers(1, 6))


def _join(rater: Rater, url: str) -> None:
    page = rater.page
    page.on("response", lambda r: rater.refusals.append(f"HTTP {r.status} {r.url.split('?')[0]}") if r.status >= 400 else None)
    page.on("pageerror", lambda err: rater.refusals.append(f"page error: {err}"))
    page.goto(f"{url}?rater={rater.identity}")
    page.check("#consent")
    page.click("#start")


def _step(rater: Rater, db: Path, rng: np.random.Generator) -> bool:
    """Look at the page once and act if it waits for this rater; True when it acted or finished."""
    view = rater.page.evaluate(PAGE_STATE)
    now = time.perf_counter()
    if view["screen"] == "end" and not view["busy"]:
        if rater.acted is not None and rater.acted.startswith("answer:"):
            rater.seconds_per_answer.append(now - rater.acted_at)
        rater.code, rater.done = view["code"], True
        return True
    key = f"answer:{view['ticket']}" if view["screen"] == "trial" else f"interlude:{view['answered']}"
    if view["screen"] is None or view["busy"] or (view["screen"] == "trial" and not view["ready"]):
        return False
    if key == rater.acted:  # already acted here: the page has not moved on yet
        if now - rater.acted_at < STUCK_S:
            return False
        rater.retries += 1
        rater.refusals.append(f"stuck {STUCK_S:.0f} s on {key} ({view['error'] or 'no message'}); pressed again")
    elif rater.acted is not None and rater.acted.startswith("answer:"):
        rater.seconds_per_answer.append(now - rater.acted_at)
    if view["screen"] == "trial":
        if key != rater.acted:
            rater.not_whole += not view["whole"]
            rater.not_one_to_one += not view["one_to_one"]
            rater.answers += 1
        rater.page.keyboard.press(str(_score(db, rater.identity, view, rng)))
    else:
        rater.page.keyboard.press("Enter")
    rater.acted, rater.acted_at = key, time.perf_counter()
    return True


def run_raters(url: str, db: Path, n_raters: int, seed: int, timeout_s: float) -> list[Rater]:
    """`n_raters` simulated raters through the page at once (one browser context each), to the end."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise PilotError("needs Python playwright (pip install playwright)") from None
    if not CHROMIUM.exists():
        raise PilotError(f"needs Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    rng = np.random.default_rng(seed)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            raters = [Rater(f"pilot-{k}", browser.new_context(viewport=VIEWPORT).new_page()) for k in range(n_raters)]
            for rater in raters:
                _join(rater, url)
            began = time.perf_counter()
            while not all(r.done for r in raters):
                if time.perf_counter() - began > timeout_s:
                    left = {r.identity: r.answers for r in raters if not r.done}
                    raise PilotError(f"raters not finished after {timeout_s:.0f} s (answers so far: {left})")
                moved = [_step(r, db, rng) for r in raters if not r.done]
                if not any(moved):
                    time.sleep(0.01)
        finally:
            browser.close()
    return raters


def _analysis(db: Path, out: Path) -> dict:
    """`study.analyze` on the pilot's database; per dataset, the raters and pairs the paired tests and Friedman had."""
    code = analyze.main(["--db", str(db), "--study", STUDY_NAME, "--out", str(out), "--no-metrics"])
    if code != 0:
        raise PilotError(f"study.analyze exited with {code}")
    pairwise = pd.read_csv(out / "pairwise.csv", keep_default_na=False, na_values=[""])
    friedman = pd.read_csv(out / "friedman.csv", keep_default_na=False, na_values=[""])
    raters = pd.read_csv(out / "raters.csv")
    result = {"raters_analysed": int((~raters["excluded"]).sum()), "raters_excluded": int(raters["excluded"].sum()), "datasets": {}}
    for row in friedman.itertuples(index=False):
        pairs = pairwise[pairwise["dataset"] == row.dataset]
        untested = pairs[pairs["note"].notna()]  # a note says why a test was not computed
        result["datasets"][row.dataset] = {
            "methods": int(row.methods),
            "pairs_of_methods": len(pairs),
            "pairs_tested": len(pairs) - len(untested),
            "raters_per_pair_min": int(pairs["n_raters"].min()),
            "raters_per_pair_max": int(pairs["n_raters"].max()),
            "blocks_per_pair_min": int(pairs["n_pairs"].min()),
            "blocks_per_pair_max": int(pairs["n_pairs"].max()),
            "untested": {note: [f"{r.method_a} vs {r.method_b}" for r in group.itertuples()] for note, group in untested.groupby("note")},
            "friedman_raters": int(row.n_raters),
            "friedman_computed": not isinstance(row.note, str),
            "friedman_note": row.note if isinstance(row.note, str) else "",
        }
    return result


def _admin_overview(url: str, token: str) -> dict:
    overview = httpx.get(url + "admin/api/overview", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    raters = overview["raters"]
    return {
        "raters": len(raters),
        "finished": sum(bool(r["finished"]) for r in raters),
        "gold_failures": sum(int(r["gold_failures"]) for r in raters),
        "median_response_ms": [r["median_response_ms"] for r in raters],
    }


def pilot(req: prepare.Request, data_root: Path | None, out: Path, n_raters: int, timeout_s: float) -> dict:
    """Prepare, serve, let the raters finish through the page, analyse; what was measured."""
    out.mkdir(parents=True, exist_ok=True)
    db = out / "study.sqlite"
    began = time.perf_counter()
    counts = prepare.prepare(req, data_root, db)
    prepared_s = time.perf_counter() - began
    with store.connect(db, create=False) as con:
        plan = store.study_config(con, req.name)["presentations"]
    token = secrets.token_urlsafe(24)
    with serving(db, out / "serve.log", token) as url:
        began = time.perf_counter()
        raters = run_raters(url, db, n_raters, req.seed, timeout_s)
        rated_s = time.perf_counter() - began
        admin = _admin_overview(url, token)
    began = time.perf_counter()
    analysis = _analysis(db, out / "analysis")
    analysed_s = time.perf_counter() - began
    seconds = np.concatenate([r.seconds_per_answer for r in raters])
    stored = len(store.read_ratings(db))
    return {
        "study": {
            "datasets": req.datasets, "methods": req.methods, "per_rater": req.per_rater, "design": req.design,
            "stimuli": counts, "presentations_per_rater": plan,
        },
        "raters": n_raters,
        "answers_given": sum(r.answers for r in raters),
        "answers_stored": stored,
        "completion_codes": sum(bool(r.code) for r in raters),
        "photos_not_whole": sum(r.not_whole for r in raters),
        "photos_not_1_to_1": sum(r.not_one_to_one for r in raters),
        "keys_pressed_again": sum(r.retries for r in raters),
        "refusals": [f"{r.identity}: {x}" for r in raters for x in r.refusals],
        "seconds": {"prepare": round(prepared_s, 1), "rating": round(rated_s, 1), "analyze": round(analysed_s, 1)},
        "answer_round_trip_ms": {q: round(1000 * float(np.percentile(seconds, p)), 0) for q, p in (("p50", 50), ("p95", 95), ("max", 100))},
        "answers_per_second": round(sum(r.answers for r in raters) / rated_s, 2),
        "admin_view": admin,
        "analysis": analysis,
    }


def describe(result: dict, command: str) -> str:
    """The figures in words (Markdown), none of them a score."""
    s = result["study"]
    n = s["presentations_per_rater"]
    lines = [
        "# Pilot of the rating study (simulated raters: nothing here is a MOS result)",
        "",
        f"Command: `{command}`",
        "",
        (f"- Study: {' + '.join(s['datasets'])} x {len(s['methods'])} methods ({', '.join(s['methods'])}); design {s['design']}; "
         f"{s['stimuli']['trial']} stimuli, {s['stimuli']['calibration']} calibration and {s['stimuli']['gold']} gold items; "
         f"each rater answers {n['total']} ({n['calibration']} calibration, {n['trial']} stimuli, {n['repeat']} repeats, {n['gold']} gold)."),
        (f"- {result['raters']} simulated raters through the rate server's page in headless Chromium at "
         f"{VIEWPORT['width']}x{VIEWPORT['height']}, at the same time: {result['answers_given']} answers given, "
         f"{result['answers_stored']} stored, {result['completion_codes']} completion codes shown."),
        (f"- Photos not whole on screen: {result['photos_not_whole']}; not 1:1: {result['photos_not_1_to_1']}; "
         f"keys pressed again after {STUCK_S:.0f} s: {result['keys_pressed_again']}."),
        f"- Refusals and page errors: {len(result['refusals'])}" + "".join(f"\n  - {x}" for x in result["refusals"]),
        (f"- Time: prepare {result['seconds']['prepare']} s, rating {result['seconds']['rating']} s "
         f"({result['answers_per_second']} answers/s over all raters), analyze {result['seconds']['analyze']} s. "
         f"Per answer, key press to the next photo taking keys (the page waits 250 ms after a photo loads): "
         f"p50 {result['answer_round_trip_ms']['p50']:.0f} ms, p95 {result['answer_round_trip_ms']['p95']:.0f} ms, "
         f"max {result['answer_round_trip_ms']['max']:.0f} ms."),
        (f"- Admin view: {result['admin_view']['finished']} of {result['admin_view']['raters']} raters finished, "
         f"{result['admin_view']['gold_failures']} gold failures."),
        f"- `study.analyze`: {result['analysis']['raters_analysed']} raters analysed, {result['analysis']['raters_excluded']} excluded.",
        "",
    ]
    datasets = result["analysis"]["datasets"]
    headers = ["dataset", "methods", "pairs of methods tested (Wilcoxon)", "raters per pair", "(rater, image) pairs per pair",
               "Friedman computed", "Friedman raters"]
    rows = [
        [dataset, d["methods"], f"{d['pairs_tested']} of {d['pairs_of_methods']}", f"{d['raters_per_pair_min']}-{d['raters_per_pair_max']}",
         f"{d['blocks_per_pair_min']}-{d['blocks_per_pair_max']}", "yes" if d["friedman_computed"] else "no: " + d["friedman_note"],
         d["friedman_raters"]]
        for dataset, d in datasets.items()
    ]
    lines.append(markdown_table(headers, rows))
    lines += ["", (f"The tests between methods take the rater as the unit and need {stats.MIN_PAIRS} raters (the Friedman test "
                   f"{stats.MIN_BLOCKS}); {result['analysis']['raters_analysed']} raters were analysed."), ""]
    lines += [
        f"- {dataset}, {len(pairs)} of {d['pairs_of_methods']} pairs not tested "
        f"({'all' if len(pairs) == d['pairs_of_methods'] else ', '.join(pairs)}): {note}"
        for dataset, d in datasets.items() for note, pairs in d["untested"].items()
    ]
    return "\n".join(lines) + "\n"


def every_rater_in_every_test(analysis: dict) -> bool:
    """Whether every analysed rater gave every pair of methods and the Friedman test their data: then whether a test
    is computed depends on the number of raters alone."""
    n = analysis["raters_analysed"]
    return all(d["raters_per_pair_min"] == n and d["friedman_raters"] == n for d in analysis["datasets"].values())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.pilot_study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the study, the analysis and pilot.json / pilot.md (must not hold a study)")
    parser.add_argument("--datasets", nargs="+", default=["Set5", "Set14"], choices=BENCHMARKS, metavar="DATASET", help="default: Set5 Set14")
    parser.add_argument("--methods", nargs="+", default=[*METHODS, ORIGINAL], metavar="METHOD", help="default: every method and hr")
    parser.add_argument("--per-rater", type=int, default=None, help="stimuli per rater, a multiple of the methods (default: all)")
    parser.add_argument("--raters", type=positive(int), default=3, help="simulated raters (default 3)")
    parser.add_argument("--repeats", type=int, default=10, help="as study.prepare (default 10)")
    parser.add_argument("--calibration", type=int, default=20, help="as study.prepare (default 20)")
    parser.add_argument("--gold", type=int, default=4, help="as study.prepare (default 4)")
    parser.add_argument("--pause-every", type=int, default=50, help="as study.prepare (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the study and of the simulated scores (default 0)")
    parser.add_argument("--timeout", type=positive(float), default=1800, help="seconds the raters may take in all (default 1800)")
    parser.add_argument("--data-root", type=Path, default=None, help=f"data folder (default: {DATA_ROOT_DEFAULT})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    req = prepare.Request(
        STUDY_NAME, args.datasets, args.methods, args.per_rater, args.repeats, args.seed, args.calibration, args.gold, args.pause_every
    )
    command = "python -m tools.pilot_study " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        result = pilot(req, args.data_root, args.out, args.raters, args.timeout)
    except (PilotError, prepare.PrepareError, FileNotFoundError, store.StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["command"] = command
    text = describe(result, command)
    replace_text(args.out / "pilot.json", json.dumps(result, indent=2) + "\n")
    replace_text(args.out / "pilot.md", text)
    print(text, end="")
    return 0 if every_rater_in_every_test(result["analysis"]) else 1


if __name__ == "__main__":
    sys.exit(main())
