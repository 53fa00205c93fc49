"""The rate server's page in headless Chromium: a whole Set14 session at 1366x768 (every photo whole and
1:1 without scrolling, keys debounced, undo, reload and resume, completion code, nothing names a method,
no admin element), intake through `?rater=` with a too-small window refused, and the admin page's buttons.
Simulated raters only."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from srgan_core.paths import REPO_ROOT
from study import prepare, sessions, store
from tests.test_rate_app import CHROMIUM, CHROMIUM_ARGS, METHOD_NAME, free_port

ADMIN = "browser-admin-token-0123"
STUDY = dict(datasets=["Set14"], methods=["nearest", "hr"], per_rater=None, repeats=1, seed=0, calibration=1, gold=2, pause_every=6)
VISIBLE = "() => ['intake','trial','interlude','end','refused'].find(id => !document.getElementById(id).hidden)"


@pytest.fixture(scope="module")
def served(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`python -m study.serve` on a Set14 study (the tallest and widest benchmark photos)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    folder = tmp_path_factory.mktemp("served")
    db = folder / "study.sqlite"
    prepare.prepare(prepare.Request(name="browser", **STUDY), data_root, db)
    port = free_port()
    log = open(folder / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.serve", "--db", str(db), "--port", str(port), "--admin-token", ADMIN], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            assert proc.poll() is None, (folder / "serve.log").read_text()
            try:
                if httpx.get(url + "api/study", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"study.serve did not answer at {url} within 600 tries:\n" + (folder / "serve.log").read_text())
        yield url, db
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def wait_screen(page, name: str) -> None:
    page.wait_for_function(f"() => ({VISIBLE})() === {name!r}", timeout=30_000)


def wait_image(page, not_src: str | None = None, src: str | None = None) -> str:
    """Wait until the trial shows a loaded photo (another than `not_src`, or exactly `src`) that takes keys."""
    condition = "i.src !== want" if src is None else "i.src === want"
    page.wait_for_function(
        f"""(want) => {{ const i = document.getElementById('stimulus');
            return !document.getElementById('trial').hidden && i.complete && i.naturalWidth > 0 && {condition}
                   && performance.now() >= readyAt; }}""",
        arg=not_src if src is None else src,
        timeout=30_000,
    )
    return page.evaluate("document.getElementById('stimulus').src")


def intake_says(page, text: str) -> None:
    """Wait until the intake's status line (filled by the page's script after it loads) says `text`."""
    page.wait_for_function("t => document.getElementById('intake-status').textContent.includes(t)", arg=text, timeout=30_000)


def answered(db: Path) -> int:
    with store.connect(db) as con:
        return con.execute("SELECT count(*) FROM ratings").fetchone()[0] - con.execute(
            "SELECT count(*) FROM revisions WHERE score IS NULL"
        ).fetchone()[0]


def test_whole_session_at_1366x768_fits_undoes_resumes_and_is_blind(served: tuple[str, Path], browser) -> None:
    url, db = served
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    bodies: list[str] = []
    page.on("response", lambda r: bodies.append(r.url + str(r.headers) + (r.text() if "json" in r.headers.get("content-type", "") or "html" in r.headers.get("content-type", "") else "")))
    page.goto(url + "?PROLIFIC_PID=pp1&STUDY_ID=st1&SESSION_ID=se1")
    assert page.locator("#identity-row").is_hidden()
    page.check("#consent")
    page.click("#start")
    src, shown, undone, debounced = None, 0, None, False
    while True:
        page.wait_for_function(f"() => ['trial','interlude','end'].includes(({VISIBLE})())", timeout=30_000)
        screen = page.evaluate(f"({VISIBLE})()")
        if screen == "end":
            break
        if screen == "interlude":
            page.keyboard.press("Enter")
            wait_image(page, not_src=src)
            continue
        src = wait_image(page, not_src=src)
        shown += 1
        geometry = page.evaluate(
            """() => { const i = document.getElementById('stimulus'), r = i.getBoundingClientRect(), d = document.documentElement;
                return {w: i.naturalWidth, h: i.naturalHeight, css_w: r.width, css_h: r.height, right: r.right, bottom: r.bottom,
                        top: r.top, dpr: devicePixelRatio, inner_w: innerWidth, inner_h: innerHeight,
                        scroll_w: d.scrollWidth, scroll_h: d.scrollHeight}; }"""
        )
        g = geometry
        assert g["bottom"] <= g["inner_h"] and g["right"] <= g["inner_w"] and g["top"] <= 16, g  # whole, first on the page
        assert g["scroll_h"] <= g["inner_h"] and g["scroll_w"] <= g["inner_w"], g  # no scrolling
        assert (round(g["css_w"] * g["dpr"]), round(g["css_h"] * g["dpr"])) == (g["w"], g["h"]), g  # 1:1
        item = page.evaluate("state.item")
        before = answered(db)
        if item["calibration"]:
            page.keyboard.press(str(item["expected"]))
        elif undone is None:  # a mis-key, taken back with Backspace on the next photo
            page.keyboard.press("2")
            wait_image(page, not_src=src)
            page.keyboard.press("Backspace")
            wait_image(page, src=src)
            assert answered(db) == before
            undone = item["ticket"]
            page.keyboard.press("4")
        elif not debounced:  # a double key press gives one answer
            page.keyboard.press("3")
            page.keyboard.press("3")
            debounced = True
        elif shown == 8:  # reload in the middle: the same photo again after "Welcome back"
            page.reload()
            wait_screen(page, "intake")
            intake_says(page, "Welcome back")
            page.click("#start")
            assert wait_image(page, src=src) == src
            page.keyboard.press("5")
        else:
            page.keyboard.press("5")
        page.wait_for_function(f"() => ({VISIBLE})() !== 'trial' || document.getElementById('stimulus').src !== {src!r}", timeout=30_000)
        assert answered(db) == before + 1
    with store.connect(db) as con:
        rater = con.execute("SELECT rater FROM identities WHERE identity = 'prolific:pp1'").fetchone()[0]
    table = store.read_ratings(db)
    assert table.loc[table["stimulus"] == sessions.stimulus_of(db, rater, undone).id, "score"].tolist() == [4]
    with store.connect(db) as con:
        assert page.inner_text("#code") == sessions.rater_code(con, rater)
        view = con.execute("SELECT viewport_w, viewport_h, dpr, fits, one_to_one FROM viewings WHERE rater = ?", (rater,)).fetchone()
    assert tuple(view) == (1366, 768, 1.0, 1, 1)
    assert shown >= 2 + 28 + 1 + 2  # calibration pair, Set14 x 2 methods, the repeat, the gold items
    html = page.content()
    assert "admin" not in html.lower() and page.locator("a[href*='api'], a[href*='admin']").count() == 0
    assert not any(METHOD_NAME.search(b) for b in bodies + [html]), [METHOD_NAME.search(b) for b in bodies if METHOD_NAME.search(b)]
    page.close()


def test_rater_from_the_url_and_a_too_small_window_is_refused_saying_why(served: tuple[str, Path], browser) -> None:
    url, db = served
    page = browser.new_page(viewport={"width": 1000, "height": 600})
    page.goto(url + "?rater=bob-7")
    page.check("#consent")
    page.click("#start")
    wait_screen(page, "refused")
    assert "needs at least 1088 x 672" in page.inner_text("#refused-text")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.reload()
    page.check("#consent")
    page.click("#start")
    wait_image(page)
    with store.connect(db) as con:
        assert con.execute("SELECT count(*) FROM identities WHERE identity = 'bob-7'").fetchone()[0] == 1
    page.goto(url + "?rater=amy-3")  # the next participant's link on the same browser: her own session, her consent
    page.wait_for_function("() => document.getElementById('consent-text').textContent !== ''")  # the page's script ran
    assert page.locator("#consent-block").is_visible() and "Welcome back" not in page.inner_text("#intake-status")
    page.check("#consent")
    page.click("#start")
    wait_image(page)
    page.goto(url)  # no link: the browser's session (amy's) is offered, and someone else can start afresh
    intake_says(page, "Welcome back")
    page.click("#not-me")
    wait_screen(page, "intake")
    page.wait_for_function("() => !document.getElementById('consent-block').hidden && localStorage.length === 0")
    with store.connect(db) as con:
        raters = dict(con.execute("SELECT identity, rater FROM identities WHERE identity IN ('bob-7', 'amy-3')").fetchall())
    assert len(set(raters.values())) == 2
    page.close()


def test_a_closed_study_lets_its_participants_go_on_and_the_next_person_starts_afresh(served: tuple[str, Path], browser) -> None:
    url, db = served
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(url + "?rater=erin-1")
    page.check("#consent")
    page.click("#start")
    first = wait_image(page)
    page.goto(url + "?rater=erin-1")  # her link again: her session, and "Not you?" for anyone else
    intake_says(page, "Welcome back")
    page.click("#not-me")
    wait_screen(page, "intake")
    page.wait_for_function("() => location.search === '' && !document.getElementById('identity-row').hidden")
    with store.connect(db) as con:
        store.set_setting(con, store.latest_study(con), "closed", "1")
    try:
        other = browser.new_page(viewport={"width": 1366, "height": 768})  # another browser, nothing stored
        other.goto(url + "?rater=erin-1")
        intake_says(other, "closed to new participants")
        other.click("#start")
        assert wait_image(other, src=first) == first  # erin goes on where she stopped
        other.goto(url + "?rater=newcomer")
        other.evaluate("localStorage.clear()")
        other.reload()
        other.click("#start")
        intake_says(other, "Not saved: this study is closed to new participants")
        other.close()
    finally:
        with store.connect(db) as con:
            store.set_setting(con, store.latest_study(con), "closed", None)
    page.close()


def test_the_admin_page_excludes_with_a_reason_closes_and_shows_every_failure(served: tuple[str, Path], browser) -> None:
    url, db = served
    rater = sessions.join(db, "admin-page-rater", consent=True).split(".")[0]
    page = browser.new_page()
    page.goto(url + "admin")
    status = page.locator("#status")

    def says(text: str, error: bool) -> None:
        page.wait_for_function(
            "([t, e]) => { const s = document.getElementById('status'); return s.textContent.includes(t) && (s.className === 'error') === e; }",
            arg=[text, error],
            timeout=30_000,
        )

    page.fill("#token", "not-the-admin-token")
    page.click("#load")
    says("wrong admin token", error=True)
    page.fill("#token", ADMIN)
    page.click("#load")
    says("Study browser:", error=False)
    assert page.locator("#study option").all_text_contents() == ["browser (open)"] and page.locator("#close").is_enabled()
    row = page.locator("#raters tr", has_text=rater)
    page.once("dialog", lambda dialog: dialog.accept("answered in 1 s each"))
    row.locator("button").click()
    page.wait_for_function("r => [...document.querySelectorAll('#raters tr.excluded')].some(tr => tr.textContent.includes(r))", arg=rater)
    with store.connect(db) as con:
        assert con.execute("SELECT reason FROM exclusions WHERE rater = ?", (rater,)).fetchone()[0] == "answered in 1 s each"
    row.locator("button", has_text="Include").click()
    page.wait_for_function("r => ![...document.querySelectorAll('#raters tr.excluded')].some(tr => tr.textContent.includes(r))", arg=rater)
    page.once("dialog", lambda dialog: dialog.dismiss())  # cancelling the reason excludes nobody
    row.locator("button", has_text="Exclude").click()
    page.fill("#token", "a-wrong-token-typed-later")  # a failing call says so, and changes nothing
    page.click("#close")
    says("wrong admin token", error=True)
    assert page.locator("#close").is_enabled()
    with store.connect(db) as con:
        assert not store.is_closed(con, store.latest_study(con))
        assert con.execute("SELECT count(*) FROM exclusions").fetchone()[0] == 0
    page.fill("#token", ADMIN)
    try:
        page.click("#close")
        says("closed to new raters", error=False)
        assert status.text_content().startswith("Study browser:")
        page.click("#close")
        says("open.", error=False)
    finally:
        with store.connect(db) as con:
            store.set_setting(con, store.latest_study(con), "closed", None)
    page.close()
