"""The Rate tab against the launched app (`python app.py` in a subprocess): 20 raters at once over HTTP,
SIGKILL and restart mid-session, bad input, and a whole session in headless Chromium.

With SRGAN_RECORD_RESULTS=1 the measured figures go to results/study/reliability.json (summarised in
results/study/RELIABILITY.md) and the screenshot to results/figures/rate_tab.png; otherwise to a temporary folder.
The raters here are simulated: their scores are random and never a MOS result.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

from demo import rate
from srgan_core.method_specs import METHODS
from srgan_core.paths import REPO_ROOT, default_data_root
from study import prepare, server, sessions, stimulus_png, store
from study.schema import COLUMNS
from tests.test_study_prepare import png_chunks, synthetic_data_root

FIGURES = Path("study") / "reliability.json"  # under results_dir
SCREENSHOT = Path("figures") / "rate_tab.png"
COMMAND = "SRGAN_RECORD_RESULTS=1 nice -n 5 python -m pytest -q tests/test_rate_app.py"
ADMIN_TOKEN = "admin-token-for-tests"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# What the rate tab's events return, in the order of their outputs.
OUTPUTS = ("token", "ticket", "intro", "trial", "interlude", "end", "header", "progress", "image", "interlude_text", "end_text")
STUDY = dict(datasets=["Set5"], methods=["nearest", "bicubic", "hr"], per_rater=5, repeats=1, seed=0, calibration=1, gold=2, pause_every=4, design="incomplete")
PLAN_LENGTH = 2 * 1 + 5 + 1 + 2  # calibration pair + trials + repeat + gold
RATERS = 20
_NAMES = sorted({*METHODS, "hr", "srgan", "srresnet"}, key=len, reverse=True)
METHOD_NAME = re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, _NAMES)) + r")(?![a-z0-9])", re.IGNORECASE)
DATA_URL_HEAD = "data:image/png;base64,"
DATA_URL = re.compile(re.escape(DATA_URL_HEAD) + r"[A-Za-z0-9+/=]+")  # an image's bytes, checked as a PNG, not searched as text


def layout(png: bytes) -> tuple[tuple[bytes, int], ...]:
    """A PNG's chunks as (type, length), in order: what tells a compressed or padded PNG's method by its sizes."""
    chunks, i = [], 8
    while i < len(png):
        (length,) = struct.unpack(">I", png[i : i + 4])
        chunks.append((png[i + 4 : i + 8], length))
        i += 12 + length
    return tuple(chunks)


def record(results_dir: Path, section: str, values: dict) -> None:
    """Merge one test's measured figures into <results_dir>/study/reliability.json."""
    path = results_dir / FIGURES
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = json.loads(path.read_text()) if path.is_file() else {}
    figures["command"] = COMMAND
    figures[section] = values | {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppProcess:
    """`python app.py` on a fixed free port, which can be SIGKILLed and started again on the same db."""

    def __init__(self, db: Path, folder: Path) -> None:
        self.db, self.folder, self.port = db, folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.first_start_s = 0.0

    def start(self, timeout: float = 120) -> float:
        """Launch and wait until the page answers; returns the seconds that took."""
        self.starts += 1
        cmd = [sys.executable, "app.py", "--port", str(self.port), "--study-db", str(self.db)]
        cmd += ["--results-dir", str(self.folder / "results"), "--admin-token", ADMIN_TOKEN]
        began = time.perf_counter()
        with open(self.folder / f"app-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        while time.perf_counter() - began < timeout:
            if self.proc.poll() is not None:
                pytest.fail(f"app.py exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return time.perf_counter() - began
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        pytest.fail(f"app.py did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return (self.folder / f"app-{self.starts}.log").read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Refused(Exception):
    """The app answered an event with an error (the message a user would see)."""


class Api:
    """The app's events over Gradio's HTTP API: POST /gradio_api/call/<name>, then read its result stream."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=f"{url}gradio_api/call/", timeout=60)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def raw(self, name: str, *data) -> list:
        response = self.http.post(name, json={"data": list(data)})
        response.raise_for_status()
        with self.http.stream("GET", f"{name}/{response.json()['event_id']}") as stream:
            event = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = json.loads(line.removeprefix("data:"))
                    if event == "error":
                        raise Refused(payload["error"] if isinstance(payload, dict) else payload)
                    return payload
        raise httpx.ReadError(f"{name}: the result stream ended without a result")

    def __call__(self, name: str, *data) -> dict:
        """A rating-tab event's outputs by name."""
        return dict(zip(OUTPUTS, self.raw(name, *data), strict=True))


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small study: Set5 (the real one when present, else synthetic images) x nearest/bicubic/hr."""
    folder = tmp_path_factory.mktemp("rate-app")
    root = default_data_root()
    if root is None or not (root / "benchmarks" / "Set5").is_dir() or not (root / prepare.CALIBRATION_FOLDER).is_dir():
        root = synthetic_data_root(folder / "data")
    db = folder / "study" / "study.sqlite"
    prepare.prepare(prepare.Request(name="pilot", **STUDY), root, db)
    return db


@pytest.fixture(scope="module")
def app(study_db: Path) -> Iterator[AppProcess]:
    server = AppProcess(study_db, study_db.parent.parent)
    server.first_start_s = server.start()
    yield server
    server.stop()


def shown(value: object) -> bool:
    """True when an event set this text (an unchanged output comes back as an update dict)."""
    return isinstance(value, str) and bool(value)


@dataclass
class Session:
    """What one simulated rater did: every answer the server acknowledged."""

    token: str
    answers: list[tuple[int, str, int]] = field(default_factory=list)  # (position, ticket, score)
    latencies: list[float] = field(default_factory=list)  # seconds per rate call
    calls: int = 1  # events sent, counting the start
    finished: bool = False


def start(api: Api, token: str | None = None) -> tuple[Session, dict]:
    """Press Start (a new rater without a token, else a resume)."""
    out = api("rate_start", token)
    return Session(out["token"]), out


def rate_on(
    api: Api,
    session: Session,
    out: dict,
    rng: np.random.Generator,
    limit: int | None = None,
    on_answer: Callable[[], None] | None = None,
) -> Session:
    """Answer every image with a random score and Continue at each interlude, until the end screen
    or `limit` answers."""
    while limit is None or len(session.answers) < limit:
        if shown(out["end_text"]):
            session.finished = True
            break
        if shown(out["ticket"]):
            score, ticket = int(rng.integers(1, 6)), out["ticket"]
            began = time.perf_counter()
            out = api("rate", session.token, ticket, score)
            session.latencies.append(time.perf_counter() - began)
            session.answers.append((int(ticket.split(":")[0]), ticket, score))
            if on_answer:
                on_answer()
        else:
            assert shown(out["interlude_text"]), out
            out = api("rate_continue", session.token)
        session.calls += 1
    return session


def stored(db: Path, rater: str) -> list[tuple[int, str, int]]:
    """The rater's answers in the database: (position, the ticket it answered, score)."""
    table = store.read_ratings(db)
    mine = table[table["rater"] == rater].sort_values("position")
    with store.connect(db, create=False) as con:
        return [
            (position, sessions.ticket_of(con, rater, position, stimulus), score)
            for position, stimulus, score in zip(mine["position"].astype(int), mine["stimulus"], mine["score"].astype(int))
        ]


def rater_of(token: str) -> str:
    return token.split(".")[0]


def dump(db: Path) -> list[str]:
    """The database as SQL, less the wrong admin tokens counted for the lockout (not study data)."""
    with sqlite3.connect(db) as con:
        return [line for line in con.iterdump() if not line.startswith('INSERT INTO "admin_attempts"')]


def test_20_concurrent_raters_every_rating_stored_exactly_once(app: AppProcess, study_db: Path, results_dir: Path) -> None:
    barrier = threading.Barrier(RATERS)
    sessions: list[Session | None] = [None] * RATERS
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * RATERS
    errors: list[BaseException] = []

    def rater(i: int) -> None:
        try:
            with Api(app.url) as api:
                barrier.wait()
                began = time.perf_counter()
                sessions[i] = rate_on(api, *start(api), np.random.default_rng(i))
                spans[i] = (began, time.perf_counter())
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(err)
            barrier.abort()

    server = psutil.Process(app.proc.pid)
    cpu_before = sum(server.cpu_times()[:2])
    threads = [threading.Thread(target=rater, args=(i,)) for i in range(RATERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    server_cpu = sum(server.cpu_times()[:2]) - cpu_before
    assert not errors, errors[0]
    assert all(s is not None and s.finished for s in sessions)
    for s in sessions:
        assert len(s.answers) == PLAN_LENGTH
        assert stored(study_db, rater_of(s.token)) == s.answers  # each stored once, with its score
    table = store.read_ratings(study_db)
    ours = table[table["rater"].isin({rater_of(s.token) for s in sessions})]
    assert len(ours) == RATERS * PLAN_LENGTH
    assert not ours.duplicated(["rater", "position"]).any()
    assert not ours.duplicated(["rater", "stimulus", "phase"]).any()
    wall = max(end for _, end in spans) - min(began for began, _ in spans)
    latencies = np.array([x for s in sessions for x in s.latencies])
    calls = sum(s.calls for s in sessions)
    record(
        results_dir,
        "concurrent_http",
        {
            "raters": RATERS,
            "answers_per_rater": PLAN_LENGTH,
            "answers_sent": sum(len(s.answers) for s in sessions),
            "answers_stored": len(ours),
            "duplicates": int(ours.duplicated(["rater", "position"]).sum()),
            "events_sent": calls,
            "wall_seconds": round(wall, 2),
            "answers_per_second": round(len(ours) / wall, 1),
            "rate_call_latency_ms_p50": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "rate_call_latency_ms_p95": round(float(np.percentile(latencies, 95)) * 1000, 1),
            "server_cpu_ms_per_event": round(server_cpu * 1000 / calls, 1),
            "load_average_1min_after": round(os.getloadavg()[0], 2),
            "cpu_cores": os.cpu_count(),
            "app_start_seconds": round(app.first_start_s, 1),
        },
    )


def test_sigkill_mid_session_loses_nothing_and_raters_resume(app: AppProcess, study_db: Path, results_dir: Path) -> None:
    raters, kill_after = 5, 15
    sessions: list[Session] = []
    lock = threading.Lock()
    enough = threading.Event()

    def counted() -> None:
        with lock:
            if sum(len(s.answers) for s in sessions) >= kill_after:
                enough.set()

    def rater(i: int) -> None:
        with Api(app.url) as api:
            session, out = start(api)
            with lock:
                sessions.append(session)
            try:
                rate_on(api, session, out, np.random.default_rng(100 + i), on_answer=counted)
            except (httpx.HTTPError, Refused):  # the server was killed under this rater
                return

    threads = [threading.Thread(target=rater, args=(i,), daemon=True) for i in range(raters)]
    for t in threads:
        t.start()
    assert enough.wait(timeout=120), "the raters did not get going"
    app.kill()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    restart_s = app.start()

    missing = in_flight = resumed_ok = mid_session = 0
    with Api(app.url) as api:
        for i, session in enumerate(sessions):
            rater = rater_of(session.token)
            in_db = stored(study_db, rater)
            assert [p for p, _, _ in in_db] == list(range(1, len(in_db) + 1))  # no gaps, no duplicates
            missing += len(set(session.answers) - set(in_db))
            in_flight += len(set(in_db) - set(session.answers))
            assert in_db[: len(session.answers)] == session.answers  # every acknowledged answer survived
            assert len(in_db) - len(session.answers) <= 1  # plus at most the answer in flight at the kill
            mid_session += 0 < len(in_db) < PLAN_LENGTH
            (status, _button, _consent) = api.raw("rate_status", session.token)
            done = len(in_db) == PLAN_LENGTH
            assert (f"rated all {PLAN_LENGTH} photos" if done else f"{len(in_db)} of {PLAN_LENGTH} answers given") in status
            more = min(2, PLAN_LENGTH - len(in_db))
            resumed, out = start(api, session.token)
            rate_on(api, resumed, out, np.random.default_rng(200 + i), limit=more)
            assert resumed.token == session.token
            assert [p for p, _, _ in resumed.answers] == list(range(len(in_db) + 1, len(in_db) + 1 + more))  # the next unanswered
            assert stored(study_db, rater) == in_db + resumed.answers
            resumed_ok += 1
    acknowledged = sum(len(s.answers) for s in sessions)
    record(
        results_dir,
        "sigkill_restart",
        {
            "raters": raters,
            "raters_killed_mid_session": mid_session,
            "answers_acknowledged_before_kill": acknowledged,
            "acknowledged_but_missing_after_restart": missing,
            "answers_committed_but_unacknowledged": in_flight,
            "restart_seconds": round(restart_s, 1),
            "raters_resumed_at_next_unanswered": resumed_ok,
        },
    )


def test_bad_input_is_refused_and_changes_nothing(app: AppProcess, study_db: Path, results_dir: Path) -> None:
    with Api(app.url) as api:
        alice, bob = api("rate_start", None), api("rate_start", None)
        while bob["ticket"] == alice["ticket"]:  # both may start on the same calibration image: that is bob's to rate
            bob = api("rate_start", None)
        token, ticket = alice["token"], alice["ticket"]
        rater, mac = token.split(".")
        position = int(ticket.split(":")[0])
        before = dump(study_db)
        attempts = {
            "score 0": (token, ticket, 0),
            "score 6": (token, ticket, 6),
            "score -1": (token, ticket, -1),
            "score 2.5": (token, ticket, 2.5),
            "no score": (token, ticket, None),
            "forged ticket": (token, f"{position}:{'ab' * 12}", 3),
            "malformed ticket": (token, "1; DROP TABLE ratings", 3),
            "tampered token": (f"{rater}.{mac[::-1]}", ticket, 3),
            "forged token for another rater": (f"{rater_of(bob['token'])}.{mac}", ticket, 3),
            "another rater's token on this image": (bob["token"], ticket, 3),
            "no token": (None, ticket, 3),
        }
        refused = {}
        for name, args in attempts.items():
            with pytest.raises(Refused) as err:
                api("rate", *args)
            refused[name] = str(err.value)
        unchanged = dump(study_db) == before
        assert unchanged
        assert "whole number from 1 to 5" in refused["score 6"] and "names no image" in refused["forged ticket"]
        assert "not valid" in refused["tampered token"] and "names no image" in refused["another rater's token on this image"]

        out = api("rate", token, ticket, 4)  # the genuine answer is taken
        assert stored(study_db, rater) == [(position, ticket, 4)]
        assert shown(out["ticket"]) and out["ticket"] != ticket
        assert api("rate", token, ticket, 4)["ticket"] == out["ticket"]  # a double click: acknowledged, the same next photo
        assert stored(study_db, rater) == [(position, ticket, 4)]  # and stored once
        after = dump(study_db)
        with pytest.raises(Refused, match="already been rated"):
            api("rate", token, ticket, 1)  # replayed with another score: the first answer stands
        refused["replayed answer with another score"] = "already been rated"
        with pytest.raises(Refused, match="Wrong admin token"):
            api.raw("rate_admin", "not-the-token", None)
        refused["wrong admin token"] = "Wrong admin token."
        unchanged &= dump(study_db) == after
        assert unchanged
        with store.connect(study_db) as con:  # closed by the rate server's admin: no new rater here either
            store.set_setting(con, store.latest_study(con), "closed", "1")
        try:
            with pytest.raises(Refused, match="closed to new participants"):
                api("rate_start", None)
            assert api("rate_start", token)["token"] == token  # who joined before goes on
        finally:
            with store.connect(study_db) as con:
                store.set_setting(con, store.latest_study(con), "closed", None)
        refused["new rater of a closed study"] = "closed to new participants"
    record(results_dir, "bad_input", {"requests_refused": len(refused), "database_unchanged": unchanged, "refusals": refused})


def test_admin_view_exports_the_long_format(app: AppProcess, study_db: Path) -> None:
    with Api(app.url) as api:
        summary, per_rater, per_stimulus, csv_file, studies = api.raw("rate_admin", ADMIN_TOKEN, None)
        exported = pd.read_csv(StringIO(api.http.get(csv_file["url"]).text))
    assert tuple(exported.columns) == COLUMNS
    assert len(exported) == len(store.read_ratings(study_db))  # the one study here
    with store.connect(study_db) as con:
        open_study = store.latest_study(con)
    assert "raters" in summary and "(the open study)" in summary and studies["value"] == open_study
    assert set(exported["study"]) <= {open_study}
    assert per_rater["headers"][:4] == ["study", "rater", "answered", "planned"]
    assert "method" in per_stimulus["headers"]


CAPTURE_FETCH = """
(() => {
  // Keep a copy of every fetched body as it streams in (Gradio's event stream stays open).
  const original = window.fetch;
  window.__captured = [];
  window.fetch = async (...args) => {
    const response = await original(...args);
    const entry = {url: (args[0] && args[0].url) || String(args[0]), text: '', read: 0};
    window.__captured.push(entry);
    const copy = response.clone();
    const reader = copy.body && copy.body.getReader();
    if (reader) {
      const decoder = new TextDecoder();
      (async () => {
        try {
          for (;;) {
            const {done, value} = await reader.read();
            if (done) break;
            entry.text += decoder.decode(value, {stream: true});
          }
        } catch (err) { entry.text += ' UNREAD ' + err; }
      })();
    }
    return response;
  };
  // What arrived since the last call, per request.
  window.__drain = () => window.__captured.map((e) => { const t = e.text.slice(e.read); e.read = e.text.length; return {url: e.url, text: t}; });
})();
"""

STATE_JS = """() => {
  const on = (id) => { const e = document.getElementById(id); return !!(e && e.offsetParent !== null); };
  const count = document.querySelector('#rate-progress .rate-count');
  return [on('rate-trial'), on('rate-continue'), on('rate-end'), on('rate-start'), count ? count.innerText : ''].join('|');
}"""


def test_browser_session_is_blind_resumes_and_is_1_to_1(app: AppProcess, study_db: Path, tmp_path: Path, results_dir: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            figures = _browser_session(sync_api, browser, app, study_db, tmp_path / "rate_tab.png", results_dir / SCREENSHOT)
        finally:
            browser.close()
    record(results_dir, "browser", figures)


def _browser_session(sync_api, browser, app: AppProcess, study_db: Path, shot: Path, screenshot: Path) -> dict:
    """Calibration, a reload mid-session, a pause and the end, checking every screen on the way;
    the screenshot of a trial is kept only if the whole session passes."""
    expect = sync_api.expect
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.add_init_script(CAPTURE_FETCH)
    responses: list = []
    page.on("response", lambda response: responses.append(response))
    texts: list[tuple[str, str]] = []  # (where, text) of everything the trials received
    pressed: list[int] = []
    checked_images: list[str] = []
    with store.connect(study_db) as con:
        stimuli = [store.get_stimulus(con, row["id"]) for row in con.execute("SELECT id FROM stimuli")]
    served = {s.id: stimulus_png.stimulus_png(study_db.parent, s) for s in stimuli}
    served_as = {hashlib.sha256(png).hexdigest(): s for s in stimuli for png in [served[s.id]]}
    scene_layouts: dict[tuple[str, str], set] = {}  # (dataset, image) -> the chunks every PNG of it arrives with
    for s in stimuli:
        scene_layouts.setdefault((s.dataset, s.image), set()).add(layout(served[s.id]))
    assert all(len(found) == 1 for found in scene_layouts.values())
    rate_panel = "() => document.getElementById('rate-tab').closest('[role=tabpanel]').outerHTML"

    def open_rate_tab() -> None:
        page.goto(app.url)
        page.get_by_role("tab", name="Rate").click()
        expect(page.locator("#rate-start")).to_be_visible(timeout=30_000)

    def act(action: Callable[[], None]) -> None:
        """Do something and wait for the rate tab to move on (another image, an interlude or the end)."""
        before = page.evaluate(STATE_JS)
        action()
        page.wait_for_function(f"() => ({STATE_JS})() !== {json.dumps(before)}", timeout=30_000)

    def check_trial_screen() -> tuple[int, int]:
        """The image is drawn 1:1 and nothing in the tab names a method; returns (step, steps)."""
        panel = DATA_URL.sub("data:", page.evaluate(rate_panel))
        assert not METHOD_NAME.search(panel), METHOD_NAME.search(panel)
        texts.append(("rate tab DOM", panel))
        img = page.locator("#rate-image img.stimulus")
        natural_w, natural_h, css_w, css_h, ratio, src, alt = img.evaluate(
            """i => i.decode().then(() => [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width,
                   i.getBoundingClientRect().height, window.devicePixelRatio, i.getAttribute('src'), i.alt])"""
        )
        assert src.startswith(DATA_URL_HEAD), src[:80]  # inside the page: no file URL to tell a repeat or a method by
        shown = base64.b64decode(src.removeprefix(DATA_URL_HEAD))
        assert set(png_chunks(shown)) == {"IHDR", "IDAT", "IEND"}  # no text or EXIF chunks
        s = served_as[hashlib.sha256(shown).hexdigest()]
        checked_images.append(s.id)
        assert {layout(shown)} == scene_layouts[(s.dataset, s.image)]  # every method of its original image arrives alike
        assert (natural_w, natural_h) == (s.width, s.height)
        assert (round(css_w * ratio), round(css_h * ratio)) == (s.width, s.height)  # one image pixel per device pixel
        assert not METHOD_NAME.search(alt)
        step, steps = re.fullmatch(r"(\d+) / (\d+)", page.locator("#rate-progress .rate-count").inner_text()).groups()
        return int(step), int(steps)

    def drain_network(first: int) -> int:
        """Everything received since responses[first]: bodies checked for method names; returns the count."""
        page.wait_for_timeout(500)  # let the copies of the last event-stream messages arrive
        checked = 0
        for response in responses[first:]:
            assert not METHOD_NAME.search(response.url) and not METHOD_NAME.search(json.dumps(response.headers))
            if response.request.resource_type in ("script", "stylesheet", "font"):
                continue  # the front-end's own code, the same for every image
            kind = response.headers.get("content-type", "")
            if "event-stream" in kind:
                checked += 1  # its text arrives through the fetch capture below
                continue
            body = response.body()
            if kind.startswith("image/png"):
                chunks = png_chunks(body)
                assert set(chunks) <= {"IHDR", "IDAT", "IEND"}, chunks  # no text or EXIF chunks
            else:
                texts.append((response.url, DATA_URL.sub("data:", body.decode("utf-8", errors="replace"))))
            checked += 1
        for item in page.evaluate("() => window.__drain()"):
            texts.append((item["url"], DATA_URL.sub("data:", item["text"])))
        return checked

    open_rate_tab()
    expect(page.locator("#rate-start")).to_have_text(rate.START_LABEL, timeout=30_000)
    with store.connect(study_db) as con:
        expect(page.locator("#rate-consent")).to_contain_text(server.consent_text(con, store.latest_study(con)), timeout=30_000)
    first = len(responses)
    page.evaluate("() => window.__drain()")  # the page load is not part of a trial
    act(lambda: page.locator("#rate-start").click())
    calibration = 0
    while page.locator("#rate-trial").is_visible():  # calibration: answer each with its anchor score
        anchor = re.search(r"Calibration \d+ / \d+\..*example of (\d)", page.locator("#rate-header").inner_text())
        check_trial_screen()
        calibration += 1
        pressed.append(int(anchor.group(1)))
        act(lambda: page.keyboard.press(anchor.group(1)))
    expect(page.locator("#rate-continue")).to_be_visible()
    assert "Calibration done" in page.locator("body").inner_text()
    act(lambda: page.locator("#rate-continue").click())

    keys = [3, 4, 2, 5, 1, 4, 2, 3, 5, 1, 3, 4]
    trials, pauses, reloaded_at, resumed_at = 0, 0, None, None
    network_checked = 0
    while True:
        if page.locator("#rate-end").is_visible():
            break
        if page.locator("#rate-continue").is_visible():
            pauses += 1
            assert "break" in page.locator("body").inner_text()
            act(lambda: page.locator("#rate-continue").click())
            continue
        step, steps = check_trial_screen()
        assert step == trials + 1
        if trials == 3 and reloaded_at is None:  # reload the page mid-session: it resumes at the same image
            reloaded_at = step
            page.screenshot(path=str(shot))
            network_checked += drain_network(first)
            open_rate_tab()
            expect(page.locator("#rate-start")).to_have_text("Continue", timeout=30_000)
            assert f"{calibration + trials} of {calibration + steps} answers given" in page.locator("#rate-tab").inner_text()
            first = len(responses)
            page.evaluate("() => window.__drain()")
            act(lambda: page.locator("#rate-start").click())
            resumed_at = check_trial_screen()[0]
            assert resumed_at == step
        key = keys[trials % len(keys)]
        if trials == 5:  # a slip, taken back with Backspace while the undo button shows: the same photo comes again
            act(lambda slip=str(6 - key): page.keyboard.press(slip))
            expect(page.locator("#rate-undo")).to_be_visible(timeout=30_000)
            # A click in the first few milliseconds after Gradio shows a button is lost (it is not wired up yet); a rater
            # presses again. Backspace until the photo comes back, at most 10 times.
            before = page.evaluate(STATE_JS)
            moved_on = f"() => ({STATE_JS})() !== {json.dumps(before)}"
            for _ in range(9):
                page.keyboard.press("Backspace")
                try:
                    page.wait_for_function(moved_on, timeout=1000)
                    break
                except sync_api.TimeoutError:
                    continue
            page.wait_for_function(moved_on, timeout=30_000)
            assert check_trial_screen()[0] == step and checked_images[-1] == checked_images[-2]
            expect(page.locator("#rate-undo")).to_be_hidden(timeout=30_000)  # once per answer
        pressed.append(key)
        if trials == 1:
            act(lambda: page.locator(f"#rate-score-{key}").click())  # the mouse works too
        else:
            act(lambda: page.keyboard.press(str(key)))
        trials += 1
    expect(page.locator("#rate-end")).to_contain_text("Thank you")
    rater, code = re.search(r"rater id: ([0-9a-f]{16})\. Your completion code: ([0-9A-F]{10})\.", page.locator("#rate-end").inner_text()).groups()
    with store.connect(study_db) as con:
        assert code == sessions.rater_code(con, rater)
        assert con.execute("SELECT consent_at FROM identities WHERE rater = ?", (rater,)).fetchone()[0]  # consent recorded
    network_checked += drain_network(first)

    leaks = [(where, m.group(0)) for where, text in texts for m in [METHOD_NAME.search(text)] if m]
    assert leaks == []
    assert any("rate-count" in text for where, text in texts if "queue/data" in where)  # the event stream was read
    table = store.read_ratings(study_db)
    mine = table[table["rater"] == rater].sort_values("position")
    assert mine["score"].tolist() == pressed  # every key and click stored, in order
    assert len(mine) == calibration + trials == PLAN_LENGTH
    assert (mine["response_ms"] > 0).all()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(shot.read_bytes())
    return {
        "calibration_answered": calibration,
        "images_rated_after_calibration": trials,
        "pauses_taken": pauses,
        "reloaded_at_image": reloaded_at,
        "resumed_at_image": resumed_at,
        "responses_checked": network_checked,
        "texts_searched_for_method_names": len(texts),
        "method_names_found": len(leaks),
        "images_checked_1_to_1": len(checked_images),
        "screenshot": f"results/{SCREENSHOT}",
    }


@contextmanager
def app_with_slow_status(study_db: Path, tmp_path: Path, delay: Callable[[str | None], float]) -> Iterator[tuple[Path, object, object]]:
    """The Gradio app on its own copy of the study (a new rater there changes no other test), with every rater
    status lookup delayed by `delay(token)` seconds, and a Chromium page: yields (database, page, expect)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    import app as app_module
    from study import sessions

    shutil.copytree(study_db.parent, tmp_path / "study")
    db = tmp_path / "study" / study_db.name
    real_status = sessions.status

    def slow_status(db_path: Path, token: str | None):
        time.sleep(delay(token))
        return real_status(db_path, token)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sessions, "status", slow_status)
        blocks = app_module.create_app(None, db, None, tmp_path / "results")
        blocks.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            with sync_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.goto(blocks.local_url)
                yield db, page, sync_api.expect
                browser.close()
        finally:
            blocks.close()


def test_a_returning_rater_is_offered_continue_even_when_the_page_load_answers_last(study_db: Path, tmp_path: Path) -> None:
    """A reloaded page asks the rater's status twice: at the page's load (before the Rate tab, and so the stored
    token, is mounted: "Start") and when the token arrives ("Continue"). The load's answer, delayed here by
    3 s, must not land last and offer a returning rater a fresh start (it once did, on busy cores)."""
    with app_with_slow_status(study_db, tmp_path, lambda token: 3.0 if token is None else 0.0) as (_, page, expect):
        for label in (rate.START_LABEL, "Continue"):  # a new rater starts; after a reload the same one is back
            page.reload()
            page.get_by_role("tab", name="Rate").click()
            expect(page.locator("#rate-start")).to_have_text(label, timeout=30_000)
            page.wait_for_timeout(4000)  # past the delayed load's answer
            expect(page.locator("#rate-start")).to_have_text(label, timeout=30_000)
            page.locator("#rate-start").click()
            expect(page.locator("#rate-trial")).to_be_visible(timeout=30_000)


def test_start_pressed_before_the_returning_raters_status_arrives_continues_the_same_rater(study_db: Path, tmp_path: Path) -> None:
    """After a reload the Rate tab first says "Start" (the page load's answer, given before the tab and its stored
    token mount) until the token's own status arrives, delayed here by 3 s. Pressing Start in that moment must
    continue the stored rater's session, not make a new rater: the button's label is only a label."""
    token_delay = {"seconds": 0.0}
    with app_with_slow_status(study_db, tmp_path, lambda token: 0.0 if token is None else token_delay["seconds"]) as (db, page, expect):

        def raters() -> int:
            with sqlite3.connect(db) as con:
                return con.execute("SELECT count(*) FROM raters").fetchone()[0]

        before = raters()
        page.get_by_role("tab", name="Rate").click()
        page.locator("#rate-start").click()
        expect(page.locator("#rate-trial")).to_be_visible(timeout=30_000)
        assert raters() == before + 1
        first = page.locator("#rate-header").inner_text()
        token_delay["seconds"] = 3.0
        page.reload()
        page.get_by_role("tab", name="Rate").click()
        expect(page.locator("#rate-start")).to_have_text(rate.START_LABEL, timeout=30_000)  # the load's answer
        page.locator("#rate-start").click()  # before the token's status ("Continue") arrives
        expect(page.locator("#rate-trial")).to_be_visible(timeout=30_000)
        assert raters() == before + 1  # no new rater
        assert page.locator("#rate-header").inner_text() == first  # the same rater's unanswered photo
