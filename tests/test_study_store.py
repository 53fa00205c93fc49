"""The study database: schema constraints, schema version, durability and the long-format export."""

from __future__ import annotations

import secrets
import sqlite3
import threading

import pandas as pd
import pytest

from study import store
from study.schema import COLUMNS


def make_study(
    db,
    name: str = "pilot",
    images: int = 4,
    methods: tuple[str, ...] = ("nearest", "bicubic", "hr"),
    calibration: int = 2,
    gold: int = 2,
    per_rater: int | None = None,
    repeats: int = 2,
    pause_every: int = 0,
    seed: int = 0,
) -> dict[str, list[store.Stimulus]]:
    """A study registered without image files (enough for everything but serving images)."""
    config = {"per_rater": per_rater, "repeats": repeats, "seed": seed, "pause_every": pause_every}
    rows: dict[str, list[store.Stimulus]] = {"trial": [], "calibration": [], "gold": []}

    def stim(kind: str, dataset: str, image: str, method: str, expected: int | None) -> None:
        sid = secrets.token_hex(16)
        rows[kind].append(store.Stimulus(sid, name, kind, dataset, image, method, f"{name}/stimuli/{sid}.png", 8, 6, expected))

    for i in range(images):
        for m in methods:
            stim("trial", "Set5", f"img{i}", m, None)
    for i in range(calibration):
        stim("calibration", "BSDS500_train", f"cal{i}", "nearest", 1)
        stim("calibration", "BSDS500_train", f"cal{i}", "hr", 5)
    for i in range(gold):
        stim("gold", "BSDS500_train", f"gold{i}", ("nearest", "hr")[i % 2], (1, 5)[i % 2])
    with store.connect(db) as con, store.transaction(con):
        store.add_study(con, name, config)
        for kind in rows.values():
            for s in kind:
                store.add_stimulus(con, s)
    return rows


def add_rater_with_plan(con: sqlite3.Connection, study: str, plan: list[tuple[str, str]]) -> str:
    rater = secrets.token_hex(8)
    with store.transaction(con):
        store.add_rater(con, rater, study, store.next_rater_seq(con, study), plan)
    return rater


def rate(con: sqlite3.Connection, rater: str, position: int, stimulus: str, phase: str, score: object) -> None:
    now = store.utc_now()
    store.add_rating(
        con, rater=rater, position=position, stimulus=stimulus, phase=phase, score=score, shown_at=now, answered_at=now, response_ms=5
    )


def count_ratings(con: sqlite3.Connection) -> int:
    return con.execute("SELECT count(*) FROM ratings").fetchone()[0]


@pytest.fixture
def study(tmp_path):
    db = tmp_path / "study.sqlite"
    stimuli = make_study(db)
    trial = stimuli["trial"]
    with store.connect(db) as con:
        rater = add_rater_with_plan(con, "pilot", [(trial[0].id, "trial"), (trial[1].id, "trial"), (trial[0].id, "repeat")])
    return db, rater, trial


def test_new_database_records_schema_version_wal_and_secret(tmp_path):
    db = tmp_path / "sub" / "study.sqlite"
    with store.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(store.SCHEMA_VERSION)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        secret = store.token_secret(con)
    assert len(secret) == 32
    with store.connect(db) as con:  # reopening keeps the secret
        assert store.token_secret(con) == secret


def test_refuses_other_files_and_other_schema_versions(tmp_path):
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE notes (x)")
    with pytest.raises(store.StoreError, match="not a study database"):
        with store.connect(foreign):
            pass
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(store.StoreError, match="not an SQLite database"):
        with store.connect(garbage):
            pass
    newer = tmp_path / "newer.sqlite"
    with store.connect(newer) as con:
        con.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    with pytest.raises(store.StoreError, match="schema version"):
        with store.connect(newer):
            pass
    with pytest.raises(FileNotFoundError, match="study.prepare"):
        store.read_ratings(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


@pytest.mark.parametrize("score", [0, 6, -1, 2.5, "three", None])
def test_schema_refuses_scores_outside_1_to_5(study, score):
    db, rater, trial = study
    with store.connect(db) as con:
        with pytest.raises(sqlite3.IntegrityError):
            rate(con, rater, 1, trial[0].id, "trial", score)
        assert count_ratings(con) == 0


def test_schema_refuses_second_answer_and_answers_outside_the_plan(study):
    db, rater, trial = study
    with store.connect(db) as con:
        rate(con, rater, 1, trial[0].id, "trial", 4)
        with pytest.raises(sqlite3.IntegrityError):  # same presentation again
            rate(con, rater, 1, trial[0].id, "trial", 2)
        with pytest.raises(sqlite3.IntegrityError):  # position 2 shows trial[1], not trial[2]
            rate(con, rater, 2, trial[2].id, "trial", 3)
        with pytest.raises(sqlite3.IntegrityError):  # wrong phase for the presentation
            rate(con, rater, 3, trial[0].id, "trial", 3)
        with pytest.raises(sqlite3.IntegrityError):  # a position the plan does not have
            rate(con, rater, 9, trial[0].id, "trial", 3)
        with pytest.raises(sqlite3.IntegrityError):  # an unknown rater
            rate(con, "0" * 16, 1, trial[0].id, "trial", 3)
        rate(con, rater, 3, trial[0].id, "repeat", 5)  # the repeat is a presentation of its own
        assert count_ratings(con) == 2


def test_ratings_cannot_be_changed_or_deleted_and_plans_are_fixed(study):
    db, rater, trial = study
    with store.connect(db) as con:
        rate(con, rater, 1, trial[0].id, "trial", 4)
        with pytest.raises(sqlite3.IntegrityError, match="cannot be changed"):
            con.execute("UPDATE ratings SET score = 1")
        with pytest.raises(sqlite3.IntegrityError, match="cannot be deleted"):
            con.execute("DELETE FROM ratings")
        with pytest.raises(sqlite3.IntegrityError, match="cannot be changed"):
            con.execute("UPDATE plan SET stimulus = ? WHERE position = 2", (trial[2].id,))
        assert [tuple(r) for r in con.execute("SELECT score FROM ratings")] == [(4,)]


def test_a_rating_is_durable_once_added(study):
    """Autocommit: another connection (another process after a crash) sees it at once."""
    db, rater, trial = study
    with store.connect(db) as writer, store.connect(db) as reader:
        rate(writer, rater, 1, trial[0].id, "trial", 4)
        assert count_ratings(reader) == 1


def test_failed_transaction_changes_nothing(study):
    db, rater, trial = study
    with store.connect(db) as con:
        with pytest.raises(sqlite3.IntegrityError):
            with store.transaction(con):
                rate(con, rater, 1, trial[0].id, "trial", 4)
                rate(con, rater, 2, trial[1].id, "trial", 9)
        assert count_ratings(con) == 0


def test_concurrent_writers_each_commit(tmp_path):
    db = tmp_path / "study.sqlite"
    trial = make_study(db, images=10)["trial"]
    with store.connect(db) as con:
        raters = [add_rater_with_plan(con, "pilot", [(s.id, "trial") for s in trial]) for _ in range(8)]
    errors = []

    def work(rater: str) -> None:
        try:
            with store.connect(db) as con:
                for position, s in enumerate(trial, start=1):
                    with store.transaction(con):
                        rate(con, rater, position, s.id, "trial", position % 5 + 1)
        except Exception as err:  # collected: a thread's exception would otherwise vanish
            errors.append(err)

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    table = store.read_ratings(db)
    assert len(table) == len(raters) * len(trial)
    assert not table.duplicated(["rater", "position"]).any()


def test_read_ratings_and_csv_export_have_exactly_the_long_format(study, tmp_path):
    db, rater, trial = study
    with store.connect(db) as con:
        rate(con, rater, 1, trial[0].id, "trial", 4)
        rate(con, rater, 2, trial[1].id, "trial", 2)
    table = store.read_ratings(db)
    assert tuple(table.columns) == COLUMNS
    assert table["score"].tolist() == [4, 2]
    assert table["position"].tolist() == [1, 2]
    assert table.loc[0, "method"] == trial[0].method and table.loc[0, "image"] == trial[0].image
    assert set(table["study"]) == {"pilot"} and set(table["phase"]) == {"trial"}
    assert pd.to_datetime(table["shown_at"], utc=True, format="ISO8601").notna().all()
    csv = tmp_path / "ratings.csv"
    csv.write_text(store.ratings_csv(db))
    # dtype=str: a random rater id such as 55987112138584e2 must not be read as a number (it once was)
    assert pd.read_csv(csv, dtype=str).equals(table.astype(str))


def test_progress_tables(study):
    db, rater, trial = study
    with store.connect(db) as con:
        rate(con, rater, 1, trial[0].id, "trial", 4)
    raters = store.rater_progress(db)
    assert raters[["rater", "answered", "planned"]].values.tolist() == [[rater, 1, 3]]
    stimuli = store.stimulus_progress(db).set_index("stimulus")
    assert stimuli.loc[trial[0].id, ["planned", "rated"]].tolist() == [2, 1]
    assert stimuli.loc[trial[0].id, "mean_score"] == 4
    assert len(stimuli) == len(trial) + 2 * 2 + 2
    with store.connect(db) as con:  # undone: no answer while open again (as the session counts it), then its new one
        store.reopen(con, rater, 1, store.utc_now())
        assert store.stimulus_progress(db).set_index("stimulus").loc[trial[0].id, ["rated", "mean_score"]].tolist() == [0, None]
        assert store.read_ratings(db).empty and store.rater_overview(con)["finished"].tolist() == [False]
        assert store.rater_progress(db)["answered"].tolist() == [0]
        store.add_revised_rating(con, rater, 1, 2, store.utc_now(), 7)
    assert store.stimulus_progress(db).set_index("stimulus").loc[trial[0].id, ["rated", "mean_score"]].tolist() == [1, 2]
    assert store.rater_progress(db)["answered"].tolist() == [1]
    with store.connect(db) as con:  # an excluded rater's plan and answers are left out, as in the analysis
        store.set_excluded(con, rater, "test")
    assert store.stimulus_progress(db).set_index("stimulus").loc[trial[0].id, ["planned", "rated"]].tolist() == [0, 0]
