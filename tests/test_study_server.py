"""The rate server (`study.server`, `study.serve`, `study.loadtest`): its JSON calls in-process, the admin
token rules, the schema migration, and a small load test with real worker processes (simulated raters,
never a MOS result)."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from srgan_core.paths import REPO_ROOT
from study import loadtest, prepare, serve, server, sessions, stimulus_png, store
from study.schema import COLUMNS, ORIGINAL, SCORE_LABELS, SCORE_RANGE
from tests.test_rate_app import METHOD_NAME, layout
from tests.test_study_prepare import synthetic_data_root

ADMIN = "admin-token-for-the-tests-0123"
VIEW = {"viewport_w": 1366, "viewport_h": 768, "dpr": 1}
STUDY = dict(datasets=["Set5"], methods=["nearest", "bicubic", "hr"], per_rater=None, repeats=1, seed=0, calibration=1, gold=2, pause_every=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture
def db(data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "study" / "study.sqlite"
    prepare.prepare(prepare.Request(name="pilot", **STUDY), data, path)
    return path


def client(db: Path, admin: str | None = ADMIN) -> TestClient:
    return TestClient(server.create_app(db, admin))


def start(c: TestClient, **body) -> dict:
    response = c.post("/api/start", json={"consent": True, "viewing": VIEW} | body)
    assert response.status_code == 200, response.text
    return response.json()


def answer(c: TestClient, token: str, state: dict, score: int) -> dict:
    response = c.post("/api/answer", json={"token": token, "ticket": state["item"]["ticket"], "score": score})
    assert response.status_code == 200, response.text
    return response.json()


def advance(c: TestClient, token: str, state: dict) -> dict:
    """Past an interlude to the next image (or the end)."""
    while state["screen"] == "interlude":
        state = c.post("/api/next", json={"token": token}).json()
    return state


def test_a_whole_session_names_no_method_and_ends_with_a_completion_code(db: Path) -> None:
    c = client(db, admin=None)
    bodies = [c.get("/").text, c.get("/api/study").text]
    state = start(c, identity="rater-1")
    token = state["token"]
    layouts, sizes = defaultdict(set), defaultdict(set)  # per original image: what arrived (its chunks), what is on disk
    while state["screen"] != "end":
        bodies.append(str(state))
        if state["screen"] == "trial":
            image = c.get("/" + state["item"]["image"])
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
            bodies.append(str(dict(image.headers)))
            stimulus = sessions.stimulus_of(db, token[:16], state["item"]["ticket"])
            file = db.parent / stimulus.file
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.content))), np.asarray(Image.open(file)))
            layouts[stimulus.image].add((int(image.headers["content-length"]), layout(image.content)))
            sizes[stimulus.image].add(file.stat().st_size)
            state = answer(c, token, state, state["item"]["expected"] or 3)
        else:
            state = advance(c, token, state)
    bodies.append(str(state))
    assert not any(METHOD_NAME.search(b) for b in bodies), [METHOD_NAME.search(b) for b in bodies if METHOD_NAME.search(b)]
    assert any(len(v) > 1 for v in sizes.values())  # the methods' files differ in size ...
    assert all(len(v) == 1 for v in layouts.values()), layouts  # ... but every method of one image arrives alike
    with store.connect(db) as con:
        assert state["completion"] == {"code": sessions.rater_code(con, token.split(".")[0]), "url": None}
    assert "undo" not in state  # the code is out: the session's answers stand
    last = store.read_ratings(db).iloc[-1]
    with store.connect(db) as con:
        ticket = sessions.ticket_of(con, last["rater"], int(last["position"]), last["stimulus"])
    undone = c.post("/api/undo", json={"token": token, "ticket": ticket})
    assert undone.status_code == 409 and "session has ended" in undone.json()["error"]
    page = bodies[0].lower()
    assert "admin" not in page and "gradio" not in page and "/api/" not in page.replace('"api/', "")


def test_a_missing_or_damaged_photo_file_is_a_404(db: Path) -> None:
    c = client(db, admin=None)
    state = start(c, identity="r")
    stimulus = sessions.stimulus_of(db, state["token"][:16], state["item"]["ticket"])
    assert c.get("/" + state["item"]["image"]).status_code == 200
    (db.parent / stimulus.file).write_bytes(b"")
    damaged = c.get("/" + state["item"]["image"])
    assert damaged.status_code == 404 and "damaged" in damaged.json()["error"]
    (db.parent / stimulus.file).unlink()
    missing = c.get("/" + state["item"]["image"])
    assert missing.status_code == 404 and "no such photo" in missing.json()["error"]


def test_every_method_of_an_image_arrives_alike_but_its_pixels(db: Path) -> None:
    """The served PNGs of one original image differ only inside their image data and checksums: the same length and
    the same chunks, each of the same length (a compressed or padded PNG tells its method by those), and the pixels of
    the stimulus's file."""
    with store.connect(db) as con:
        trial = store.study_stimuli(con, store.latest_study(con), "trial")
        by_image = defaultdict(list)
        for stimulus in trial:
            by_image[(stimulus.dataset, stimulus.image)].append(stimulus)
    for versions in by_image.values():
        assert len(versions) > 1 and len({(db.parent / s.file).stat().st_size for s in versions}) > 1  # the files differ
        served = [stimulus_png.stimulus_png(db.parent, s) for s in versions]
        assert len({layout(png) for png in served}) == 1 and len({len(png) for png in served}) == 1
        for s, png in zip(versions, served):
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(Image.open(db.parent / s.file).convert("RGB")))
    with pytest.raises(ValueError, match="not a readable image"):
        stimulus_png.uncompressed_png(b"\x89PNG\r\n\x1a\n cut short")


def test_a_returning_rater_is_checked_against_their_own_study_not_a_newer_one(db: Path, data: Path) -> None:
    c = client(db)
    early = start(c, identity="early")
    with store.connect(db) as con:
        own = store.largest_stimulus(con, "pilot")
    prepare.prepare(prepare.Request(name="second", **STUDY), data, db)  # prepared while the first is being rated
    with store.connect(db) as con:
        con.execute("UPDATE stimuli SET width = 3000 WHERE study = 'second'")  # too wide for VIEW
    assert c.post("/api/status", json={"token": early["token"]}).json()["needs"]["width"] == own[0]
    again = start(c, token=early["token"])  # the same window goes on with the first study
    assert again["token"] == early["token"] and again["item"]["ticket"] == early["item"]["ticket"]
    late = c.post("/api/start", json={"consent": True, "viewing": VIEW, "identity": "late"})
    assert late.status_code == 409 and "needs at least" in late.json()["error"]  # a newcomer joins the new study
    assert c.get("/api/study").json()["needs"]["width"] == 3000


def test_the_page_and_the_consent_use_the_study_scale(db: Path) -> None:
    """rate.html is static: its buttons and its label table must say what study.schema says."""
    c = client(db, admin=None)
    page = c.get("/").text
    buttons = dict(re.findall(r'<button data-score="(\d)" id="score-\1">\1 · (\w+)</button>', page))
    assert {int(k): v for k, v in buttons.items()} == SCORE_LABELS
    labels = re.search(r"const LABELS = \{(.*?)\};", page).group(1)
    assert {int(k): v for k, v in re.findall(r'(\d): "(\w+)"', labels)} == SCORE_LABELS
    assert SCORE_RANGE == "1 (bad) to 5 (excellent)" and SCORE_RANGE in c.get("/api/study").json()["consent"]


def test_identity_resumes_the_same_session_and_prolific_ids_are_kept(db: Path) -> None:
    c = client(db)
    first = start(c, identity="p-7")
    answer(c, first["token"], first, first["item"]["expected"])
    again = start(c, identity="p-7")  # no token: a second attempt, another browser
    assert again["token"] == first["token"] and again["item"]["step"] == 2
    prolific = {"PROLIFIC_PID": "5f00aa", "STUDY_ID": "s1", "SESSION_ID": "x9"}
    other = start(c, platform=prolific)
    assert other["token"] != first["token"]
    assert start(c, platform=prolific)["token"] == other["token"]
    with store.connect(db) as con:
        row = con.execute("SELECT identity, platform, consent_at FROM identities WHERE rater = ?", (other["token"][:16],)).fetchone()
    assert row["identity"] == "prolific:5f00aa" and '"SESSION_ID": "x9"' in row["platform"] and row["consent_at"]
    assert c.post("/api/start", json={"identity": "bad id!", "consent": True, "viewing": VIEW}).status_code == 400


def test_a_token_resumes_only_its_own_participant(db: Path) -> None:
    """A lab browser keeps alice's token; bob, named by his link, must get his own session, not hers."""
    c = client(db)
    alice = start(c, identity="alice")
    answer(c, alice["token"], alice, alice["item"]["expected"])
    assert start(c, token=alice["token"], identity="alice")["token"] == alice["token"]
    assert start(c, token=alice["token"])["token"] == alice["token"]  # no id given: the browser's own session
    bob = start(c, token=alice["token"], identity="bob")
    assert bob["token"] != alice["token"] and bob["item"]["step"] == 1
    unnamed = start(c, identity=None)
    assert start(c, token=unnamed["token"], identity="carol")["token"] not in {unnamed["token"], alice["token"], bob["token"]}
    refused = c.post("/api/start", json={"token": alice["token"], "identity": "dave", "viewing": VIEW})
    assert refused.status_code == 409 and "consent" in refused.json()["error"]  # a new person agrees for themselves


def test_consent_small_screens_and_a_closed_study_are_refused(db: Path) -> None:
    c = client(db)
    refused = c.post("/api/start", json={"identity": "a", "viewing": VIEW})
    assert refused.status_code == 409 and "consent" in refused.json()["error"]
    small = c.post("/api/start", json={"identity": "a", "consent": True, "viewing": {"viewport_w": 300, "viewport_h": 200, "dpr": 1}})
    assert small.status_code == 409 and "at least" in small.json()["error"]
    known = start(c, identity="early")
    assert c.post("/admin/api/close", json={"closed": True}, headers={"Authorization": f"Bearer {ADMIN}"}).json()["closed"]
    late = c.post("/api/start", json={"identity": "late", "consent": True, "viewing": VIEW})
    assert late.status_code == 409 and "closed" in late.json()["error"]
    assert start(c, identity="early")["token"] == known["token"]  # who joined before may go on
    assert c.get("/api/study").json()["open"] is False
    for value in ("yes", 1, None):  # not "reopen": only true or false
        bad = c.post("/admin/api/close", json={"closed": value}, headers={"Authorization": f"Bearer {ADMIN}"})
        assert bad.status_code == 400 and c.get("/api/study").json()["open"] is False
    huge = c.post("/api/answer", content=json.dumps({"token": "x", "pad": "a" * 50_000}), headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "larger than" in huge.json()["error"]
    long_id = c.post("/api/start", json={"consent": True, "viewing": VIEW, "platform": {"PROLIFIC_PID": "p", "STUDY_ID": "s" * 200}})
    assert long_id.status_code == 400 and "at most 128" in long_id.json()["error"]
    for viewing in ({**VIEW, "viewport_w": float("inf")}, {**VIEW, "screen_w": 10**30}, {**VIEW, "zoom": -1}):
        response = c.post("/api/start", content=json.dumps({"identity": "odd", "consent": True, "viewing": viewing}),
                          headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text


def test_undo_takes_back_the_last_answer_once(db: Path) -> None:
    c = client(db)
    state = start(c, identity="u")
    token = state["token"]
    first = state
    state = answer(c, token, state, 4)  # a mis-key on calibration (expects 1 or 5)
    assert state["undo"]["ticket"] == first["item"]["ticket"]
    undone = c.post("/api/undo", json={"token": token, "ticket": state["undo"]["ticket"]}).json()
    assert undone["item"]["ticket"] == first["item"]["ticket"] and undone["progress"]["answered"] == 0
    again = answer(c, token, undone, 1)
    assert "undo" not in again  # once per answer
    twice = c.post("/api/undo", json={"token": token, "ticket": first["item"]["ticket"]})
    assert twice.status_code == 409
    table = store.read_ratings(db)
    assert table.loc[table["stimulus"] == sessions.stimulus_of(db, token[:16], first["item"]["ticket"]).id, "score"].tolist() == [1]
    with store.connect(db) as con:  # the first answer is kept for the record
        assert con.execute("SELECT score FROM ratings WHERE rater = ?", (token[:16],)).fetchall()[0][0] == 4
    state = answer(c, token, again, again["item"]["expected"])
    older = c.post("/api/undo", json={"token": token, "ticket": first["item"]["ticket"]})
    assert older.status_code == 409 and "last answer" in older.json()["error"]


def test_a_replayed_answer_is_acknowledged_once_and_a_changed_one_refused(db: Path) -> None:
    c = client(db)
    state = start(c, identity="r")
    token, ticket = state["token"], state["item"]["ticket"]
    answer(c, token, state, 5)
    assert answer(c, token, state, 5)["progress"]["answered"] == 1  # a retry after a lost reply
    changed = c.post("/api/answer", json={"token": token, "ticket": ticket, "score": 2})
    assert changed.status_code == 409 and "already been rated" in changed.json()["error"]
    forged = token[:-1] + ("1" if token.endswith("0") else "0")  # always another signature (the last digit is random)
    assert c.post("/api/answer", json={"token": forged, "ticket": ticket, "score": 5}).status_code == 403
    assert len(store.read_ratings(db)) == 1


def test_admin_view_progress_export_download_and_exclusion(db: Path) -> None:
    c = client(db)
    state = start(c, identity="x")
    answer(c, state["token"], state, state["item"]["expected"])
    auth = {"Authorization": f"Bearer {ADMIN}"}
    overview = c.get("/admin/api/overview", headers=auth).json()
    (row,) = overview["raters"]
    assert row["identity"] == "x" and row["answered"] == 1 and row["finished"] is False and row["viewport"] == "1366x768"
    assert {"gold_failures", "retest_mean_abs_diff", "median_response_ms", "excluded", "completion_code"} <= set(row)
    export = c.get("/admin/api/export", headers=auth)
    assert export.headers["content-disposition"].startswith("attachment") and export.text.splitlines()[0] == ",".join(COLUMNS)
    assert not (db.parent / "exports").exists()  # nothing written on the server
    for bad in ({"excluded": "false"}, {"excluded": 1}, {"reason": 5}, {"reason": "x" * 501}):
        assert c.post("/admin/api/exclude", json={"rater": row["rater"]} | bad, headers=auth).status_code == 400
    assert len(store.read_ratings(db)) == 1  # a malformed request excludes nobody
    c.post("/admin/api/exclude", json={"rater": row["rater"], "excluded": True}, headers=auth)
    assert store.read_ratings(db).empty
    c.post("/admin/api/exclude", json={"rater": row["rater"], "excluded": False}, headers=auth)
    assert len(store.read_ratings(db)) == 1



def test_the_admin_view_shows_the_open_study_or_the_one_named(db: Path, data: Path) -> None:
    c = client(db)
    first = start(c, identity="first-study")
    answer(c, first["token"], first, first["item"]["expected"])
    prepare.prepare(prepare.Request(name="second", **STUDY), data, db)  # a new study in the same database
    auth = {"Authorization": f"Bearer {ADMIN}"}
    overview = c.get("/admin/api/overview", headers=auth).json()
    assert overview["study"] == "second" and overview["studies"] == ["second", "pilot"] and overview["raters"] == []
    assert {row["study"] for row in overview["stimuli"]} == {"second"}
    earlier = c.get("/admin/api/overview", params={"study": "pilot"}, headers=auth).json()  # its raters may still be rating
    assert earlier["study"] == "pilot" and [row["identity"] for row in earlier["raters"]] == ["first-study"]
    assert {row["study"] for row in earlier["stimuli"]} == {"pilot"}
    assert c.get("/admin/api/overview", params={"study": "nope"}, headers=auth).status_code == 404
    start(c, identity="second-study")  # a rater of the open study, with no answer yet
    assert len(c.get("/admin/api/export", params={"study": "second"}, headers=auth).text.splitlines()) == 1  # the header
    assert len(c.get("/admin/api/export", params={"study": "pilot"}, headers=auth).text.splitlines()) == 2
    assert c.get("/admin/api/export", params={"study": "nope"}, headers=auth).status_code == 404


def test_admin_tokens_short_wrong_and_absent(db: Path) -> None:
    with pytest.raises(server.AdminTokenError, match="at least 16"):
        server.create_app(db, "short")
    cli = subprocess.run(
        [sys.executable, "-m", "study.serve", "--db", str(db), "--admin-token", "short"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1 and "at least 16" in cli.stderr
    bare = client(db, admin=None)
    assert bare.get("/admin").status_code == 404
    assert bare.get("/admin/api/overview", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 404
    c = client(db)
    wrong = {"Authorization": "Bearer not-the-admin-token"}
    right = {"Authorization": f"Bearer {ADMIN}"}
    assert c.get("/admin/api/overview", headers=right).status_code == 200
    assert [c.get("/admin/api/overview", headers=wrong).status_code for _ in range(server.FREE_ATTEMPTS)] == [401] * server.FREE_ATTEMPTS
    slowed = c.get("/admin/api/overview", headers=right)  # even the right token waits now
    assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) > 0
    with sqlite3.connect(db) as con:  # the wait is over; then keep failing up to the lockout
        con.execute("UPDATE admin_attempts SET failures = ?, last_failure = '2000-01-01T00:00:00.000+00:00'", (server.LOCKOUT_ATTEMPTS - 1,))
    assert c.get("/admin/api/overview", headers=wrong).status_code == 401
    locked = c.get("/admin/api/overview", headers=right)
    assert locked.status_code == 429 and "locked out" in locked.json()["error"]
    assert int(locked.headers["retry-after"]) > server.LOCKOUT_S - 60


def test_serve_without_a_study_says_so_in_one_line(tmp_path: Path) -> None:
    for db in (tmp_path / "missing.sqlite", tmp_path / "empty.sqlite"):
        if db.name == "empty.sqlite":
            with store.connect(db):
                pass
        cli = subprocess.run([sys.executable, "-m", "study.serve", "--db", str(db)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 1 and cli.stderr.count("\n") == 1 and "study.prepare" in cli.stderr, cli.stderr


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """study.serve in-process: a check that let it through fails the test instead of serving forever."""

    def started(*args, **kwargs) -> None:
        raise AssertionError("study.serve started serving")

    monkeypatch.setattr(serve.uvicorn, "run", started)


def test_serve_on_a_port_in_use_says_so_in_one_line_before_any_banner(db: Path, capsys: pytest.CaptureFixture, no_uvicorn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve.main(["--db", str(db), "--port", str(port)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert serve.main(["--db", str(db), "--port", "70000"]) == 1 and "a port is 1-65535" in capsys.readouterr().err


def test_serve_refuses_a_study_whose_photos_are_missing(db: Path, capsys: pytest.CaptureFixture, no_uvicorn) -> None:
    shutil.rmtree(store.stimuli_dir(db, "pilot"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert serve.main(["--db", str(db), "--port", str(port)]) == 1
    assert "the photos of study 'pilot' are missing" in capsys.readouterr().err


def test_serve_settings_stay_until_another_serve_changes_them_and_the_banner_says_which(db: Path, tmp_path: Path) -> None:
    consent = tmp_path / "consent.txt"
    consent.write_text("Our own consent text.", encoding="utf-8")
    assert serve.configure(db, consent, "ABC", "https://example.org/done?c={code}") == "pilot"
    assert "the study's own consent text, completion code 'ABC', sent back to https://example.org" in serve.settings_line(db, "pilot")
    serve.configure(db, None, None, None)  # a restart without the flags keeps them ...
    with store.connect(db) as con:
        assert store.study_settings(con, "pilot") == {"consent": "Our own consent text.", "completion_code": "ABC",
                                                       "completion_url": "https://example.org/done?c={code}"}
    consent.write_text("", encoding="utf-8")
    serve.configure(db, consent, "", "")  # ... and empty values go back to the defaults
    assert serve.settings_line(db, "pilot").startswith("raters get the default consent text, a completion code per rater, no completion URL")
    consent.write_bytes(b"\xff\xfe bad")
    with pytest.raises(ValueError, match="--consent-file .*consent.txt: not UTF-8 text"):
        serve.configure(db, consent, None, None)
    with pytest.raises(OSError, match="--consent-file .*nothing.txt: No such file"):
        serve.configure(db, tmp_path / "nothing.txt", None, None)


def test_a_version_1_database_is_migrated_without_touching_its_rows(tmp_path: Path) -> None:
    old = tmp_path / "v1.sqlite"
    with sqlite3.connect(old) as con:
        for statement in store._statements(store.SCHEMA):
            con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('token_secret', ?)", ("ab" * 32,))
        con.execute("INSERT INTO studies VALUES ('old', '2026-01-01T00:00:00+00:00', '{}')")
        con.execute("PRAGMA user_version = 1")
    before = {t: list(sqlite3.connect(old).execute(f"SELECT * FROM {t}")) for t in ("meta", "studies")}
    with store.connect(old) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'revisions'").fetchone()[0] == 1
        assert [tuple(r) for r in con.execute("SELECT * FROM studies")] == before["studies"]
        assert dict(list(con.execute("SELECT key, value FROM meta")))["token_secret"] == "ab" * 32


def test_small_load_test_loses_and_duplicates_nothing(data: Path) -> None:
    """20 simulated raters as fast as they can against 2 worker processes (no timing asserted)."""
    figures = loadtest.run(raters=20, pace=0, seconds=4, workers=2, undo_rate=0.1, kill_at=None, data_root=data)
    assert figures["acknowledged"] > 20 and figures["refused"] == []
    assert figures["lost"] == figures["duplicated"] == figures["wrong"] == 0
    assert figures["stored"] == figures["acknowledged"] + figures["stored_not_acknowledged"]


def test_sigkill_of_a_worker_loses_no_acknowledged_answer(data: Path) -> None:
    """The kill comes after 5 acknowledged answers, however slow the machine, and the raters go on."""
    figures = loadtest.run(raters=10, pace=0, seconds=8, workers=2, undo_rate=0.0, kill_at=None, data_root=data, kill_after=5)
    assert figures["kill"] and figures["acknowledged"] > figures["kill"]["acknowledged_before"] > 0
    assert figures["lost"] == figures["duplicated"] == figures["wrong"] == 0 and figures["refused"] == []


def test_pilot_set5_all_methods_three_raters_through_the_api_then_analyze(data_root: Path, tmp_path: Path) -> None:
    """A pilot as a lab would run it: every method on Set5, 3 simulated raters (random scores, not a MOS
    result) finishing their sessions through the rate server's calls, then `study.analyze` on the database."""
    from srgan_core.method_specs import METHODS
    from study import analyze

    db = tmp_path / "study.sqlite"
    request = dict(STUDY, methods=[*METHODS, ORIGINAL], repeats=2)
    prepare.prepare(prepare.Request(name="pilot", **request), data_root, db)
    c = client(db)
    rng = np.random.default_rng(0)
    for k in range(3):
        state = start(c, identity=f"pilot-{k}")
        token = state["token"]
        while state["screen"] != "end":
            if state["screen"] == "trial":  # attentive on calibration and gold items (looked up: the page cannot tell)
                expected = sessions.stimulus_of(db, token[:16], state["item"]["ticket"]).expected
                state = answer(c, token, state, expected or int(rng.integers(1, 6)))
            else:
                state = advance(c, token, state)
        assert state["completion"]["code"]
    overview = c.get("/admin/api/overview", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert [r["finished"] for r in overview["raters"]] == [True] * 3
    out = tmp_path / "report"
    assert analyze.main(["--db", str(db), "--study", "pilot", "--out", str(out), "--no-metrics"]) == 0
    assert (out / "report.md").is_file()
