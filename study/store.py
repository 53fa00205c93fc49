"""The MOS study's SQLite database: studies, stimuli, each rater's stored plan, and the ratings.

WAL mode with `synchronous=FULL`: a rating is durable the moment `add_rating` returns. The schema
enforces what must never happen (a score outside 1..5, a second answer to the same presentation,
an answer to an image that is not in the rater's plan, a rating edited or deleted afterwards), so a
bug elsewhere cannot write such a row. Stimulus files live beside the database, under
``<db folder>/<study>/stimuli/<opaque id>.png``.

Schema version 2 adds tables only (version-1 databases are migrated on open, their rows untouched):
a rater's identity from the study platform and consent, the viewing conditions of each session, an
undone answer's replacement (``revisions``: the first answer stays in ``ratings``), excluded raters,
per-study settings (consent text, completion code and URL, closed to new raters) and the admin
endpoint's failed-attempt counters.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from study.schema import COLUMNS, KINDS, PHASES, SCORES

DB_ENV = "SRGAN_STUDY_DB"
DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "study" / "study.sqlite"  # gitignored
SCHEMA_VERSION = 2
LOWEST, HIGHEST = SCORES[0], SCORES[-1]

SCHEMA = f"""
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE studies (
    name TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
    created_at TEXT NOT NULL,
    config TEXT NOT NULL CHECK (json_valid(config))
) STRICT;
CREATE TABLE stimuli (
    id TEXT PRIMARY KEY CHECK (length(id) >= 16),
    study TEXT NOT NULL REFERENCES studies(name),
    kind TEXT NOT NULL CHECK (kind IN {KINDS}),
    dataset TEXT NOT NULL,
    image TEXT NOT NULL,
    method TEXT NOT NULL,
    file TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL CHECK (width > 0),
    height INTEGER NOT NULL CHECK (height > 0),
    expected INTEGER CHECK (expected BETWEEN {LOWEST} AND {HIGHEST}),
    CHECK ((kind = 'trial') = (expected IS NULL)),
    UNIQUE (study, kind, dataset, image, method)
) STRICT;
CREATE TABLE raters (
    id TEXT PRIMARY KEY,
    study TEXT NOT NULL REFERENCES studies(name),
    seq INTEGER NOT NULL CHECK (seq >= 0),
    created_at TEXT NOT NULL,
    UNIQUE (study, seq)
) STRICT;
CREATE TABLE plan (
    rater TEXT NOT NULL REFERENCES raters(id),
    position INTEGER NOT NULL CHECK (position >= 1),
    stimulus TEXT NOT NULL REFERENCES stimuli(id),
    phase TEXT NOT NULL CHECK (phase IN {PHASES}),
    shown_at TEXT,
    PRIMARY KEY (rater, position),
    UNIQUE (rater, stimulus, phase),
    UNIQUE (rater, position, stimulus, phase)
) STRICT;
CREATE TABLE ratings (
    rater TEXT NOT NULL,
    position INTEGER NOT NULL,
    stimulus TEXT NOT NULL,
    phase TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN {LOWEST} AND {HIGHEST}),
    shown_at TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    response_ms INTEGER NOT NULL CHECK (response_ms >= 0),
    PRIMARY KEY (rater, position),
    UNIQUE (rater, stimulus, phase),
    FOREIGN KEY (rater, position, stimulus, phase) REFERENCES plan (rater, position, stimulus, phase)
) STRICT;
CREATE TRIGGER ratings_are_final_update BEFORE UPDATE ON ratings
BEGIN SELECT RAISE(ABORT, 'ratings cannot be changed'); END;
CREATE TRIGGER ratings_are_final_delete BEFORE DELETE ON ratings
BEGIN SELECT RAISE(ABORT, 'ratings cannot be deleted'); END;
CREATE TRIGGER plans_are_fixed BEFORE UPDATE OF rater, position, stimulus, phase ON plan
BEGIN SELECT RAISE(ABORT, 'a stored plan cannot be changed'); END;
"""

SETTINGS = ("consent", "completion_code", "completion_url", "closed")
# Version 2: additive tables only.
SCHEMA_V2 = f"""
CREATE TABLE identities (
    rater TEXT PRIMARY KEY REFERENCES raters(id),
    study TEXT NOT NULL REFERENCES studies(name),
    identity TEXT CHECK (identity IS NULL OR length(identity) BETWEEN 1 AND 200),
    platform TEXT CHECK (platform IS NULL OR json_valid(platform)),
    consent_at TEXT,
    UNIQUE (study, identity)
) STRICT;
CREATE TABLE viewings (
    rater TEXT NOT NULL REFERENCES raters(id),
    recorded_at TEXT NOT NULL,
    viewport_w INTEGER NOT NULL CHECK (viewport_w > 0),
    viewport_h INTEGER NOT NULL CHECK (viewport_h > 0),
    dpr REAL NOT NULL CHECK (dpr > 0),
    zoom REAL,
    screen_w INTEGER,
    screen_h INTEGER,
    fits INTEGER NOT NULL CHECK (fits IN (0, 1)),
    one_to_one INTEGER NOT NULL CHECK (one_to_one IN (0, 1))
) STRICT;
CREATE INDEX viewings_rater ON viewings (rater);
CREATE TABLE revisions (
    rater TEXT NOT NULL,
    position INTEGER NOT NULL,
    reopened_at TEXT NOT NULL,
    shown_at TEXT NOT NULL,
    score INTEGER CHECK (score BETWEEN {LOWEST} AND {HIGHEST}),
    answered_at TEXT,
    response_ms INTEGER CHECK (response_ms >= 0),
    PRIMARY KEY (rater, position),
    FOREIGN KEY (rater, position) REFERENCES ratings (rater, position),
    CHECK ((score IS NULL) = (answered_at IS NULL) AND (score IS NULL) = (response_ms IS NULL))
) STRICT;
CREATE TRIGGER revisions_are_final_update BEFORE UPDATE ON revisions WHEN OLD.score IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'a revised answer cannot be changed'); END;
CREATE TRIGGER revisions_are_final_delete BEFORE DELETE ON revisions
BEGIN SELECT RAISE(ABORT, 'revisions cannot be deleted'); END;
CREATE TABLE exclusions (
    rater TEXT PRIMARY KEY REFERENCES raters(id),
    excluded_at TEXT NOT NULL,
    reason TEXT NOT NULL
) STRICT;
CREATE TABLE study_settings (
    study TEXT NOT NULL REFERENCES studies(name),
    key TEXT NOT NULL CHECK (key IN {SETTINGS}),
    value TEXT NOT NULL,
    PRIMARY KEY (study, key)
) STRICT;
CREATE TABLE admin_attempts (
    client TEXT PRIMARY KEY,
    failures INTEGER NOT NULL CHECK (failures >= 0),
    last_failure TEXT NOT NULL
) STRICT;
"""


def default_db() -> Path:
    """The study database when none is given: `SRGAN_STUDY_DB`, else data/study/study.sqlite in the clone."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


class StoreError(RuntimeError):
    """The database file is not a study database this code can use."""


@dataclass(frozen=True)
class Stimulus:
    id: str
    study: str
    kind: str
    dataset: str
    image: str
    method: str
    file: str  # relative to the database's folder
    width: int
    height: int
    expected: int | None


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def stimuli_dir(db_path: Path, study: str) -> Path:
    return Path(db_path).parent / study / "stimuli"


def open_connection(db_path: Path, create: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (use `transaction` to group writes), for callers that keep one open
    (the rate server keeps one per thread). Creates the database and its schema when `create` and the
    file is new; migrates an older schema; refuses a database of another schema version."""
    db_path = Path(db_path)
    if not create and not db_path.is_file():
        raise FileNotFoundError(f"{db_path}: no such study database (create one with `python -m study.prepare`)")
    if not create and db_path.stat().st_size == 0:
        raise StoreError(f"{db_path}: an empty file, not a study database")
    if db_path.is_dir():
        raise StoreError(f"{db_path} is a folder: give the study database's file name (e.g. {db_path / 'study.sqlite'})")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(db_path.parent, os.W_OK):  # SQLite keeps its write-ahead log and locks beside the database
        raise StoreError(f"{db_path}: its folder is not writable, and the study database needs to write beside it")
    con = sqlite3.connect(db_path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{db_path}: not an SQLite database ({err})") from None
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA foreign_keys=ON")
        _ensure_schema(con, db_path, create)
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def connect_read_only(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that cannot change the database (for analysing an archived study): nothing is created,
    converted or migrated. A database in a folder this process may not write to is read from a temporary copy (with
    its write-ahead log), as SQLite cannot read a WAL database in place there."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError(f"{db_path}: no such study database (create one with `python -m study.prepare`)")
    with ExitStack() as stack:
        read = db_path
        if not os.access(db_path.parent, os.W_OK):  # a WAL reader makes a -shm file beside the database: not here
            read = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="study-db-"))) / db_path.name
            for suffix in ("", "-wal"):  # answers still in the write-ahead log are part of the database
                if Path(f"{db_path}{suffix}").is_file():
                    shutil.copyfile(f"{db_path}{suffix}", f"{read}{suffix}")
        yield stack.enter_context(_read_only(read, db_path))


@contextmanager
def _read_only(path: Path, shown: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to `path`, checked to be a study database of this schema (`shown` names it in errors)."""
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    try:
        con.row_factory = sqlite3.Row
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{shown}: not an SQLite database ({err})") from None
        if version != SCHEMA_VERSION:
            what = "not a study database" if version == 0 else f"study database schema version {version}"
            raise StoreError(
                f"{shown}: {what}; this code reads version {SCHEMA_VERSION} (an older study database is migrated "
                "by opening it once with `python -m study.serve` or the app)"
            )
        yield con
    finally:
        con.close()


@contextmanager
def connect(db_path: Path, create: bool = True) -> Iterator[sqlite3.Connection]:
    """`open_connection`, closed on exit."""
    with closing(open_connection(db_path, create)) as con:
        yield con


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (so a refused write changes nothing)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _ensure_schema(con: sqlite3.Connection, db_path: Path, create: bool) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    with transaction(con):
        version = con.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
        if version == 0:
            tables = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables or not create:
                raise StoreError(f"{db_path}: an SQLite file that is not a study database")
            for statement in _statements(SCHEMA + SCHEMA_V2):  # not executescript: it would COMMIT midway
                con.execute(statement)
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("INSERT INTO meta VALUES ('token_secret', ?)", (secrets.token_hex(32),))
        elif version == 1:  # migrate: add the version-2 tables, leave every existing row as it is
            for statement in _statements(SCHEMA_V2):
                con.execute(statement)
            con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{db_path}: study database schema version {version}; this code reads version {SCHEMA_VERSION}")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _statements(script: str) -> Iterator[str]:
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""


def token_secret(con: sqlite3.Connection) -> bytes:
    """The server secret that signs rater tokens; made once with the database."""
    return bytes.fromhex(con.execute("SELECT value FROM meta WHERE key = 'token_secret'").fetchone()[0])


def add_study(con: sqlite3.Connection, name: str, config: dict) -> None:
    con.execute("INSERT INTO studies VALUES (?, ?, ?)", (name, utc_now(), json.dumps(config, sort_keys=True)))


def has_study(con: sqlite3.Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM studies WHERE name = ?", (name,)).fetchone() is not None


def latest_study(con: sqlite3.Connection) -> str | None:
    """The study new raters join: the one prepared last."""
    row = con.execute("SELECT name FROM studies ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
    return row[0] if row else None


def study_names(con: sqlite3.Connection) -> list[str]:
    """Every study of the database, the open (latest prepared) one first."""
    return [row[0] for row in con.execute("SELECT name FROM studies ORDER BY created_at DESC, rowid DESC")]


def study_config(con: sqlite3.Connection, name: str) -> dict:
    row = con.execute("SELECT config FROM studies WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise KeyError(f"no study {name!r}")
    return json.loads(row[0])


def add_stimulus(con: sqlite3.Connection, s: Stimulus) -> None:
    con.execute(
        "INSERT INTO stimuli VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (s.id, s.study, s.kind, s.dataset, s.image, s.method, s.file, s.width, s.height, s.expected),
    )


def get_stimulus(con: sqlite3.Connection, stimulus_id: str) -> Stimulus | None:
    row = con.execute("SELECT * FROM stimuli WHERE id = ?", (stimulus_id,)).fetchone()
    return Stimulus(**dict(row)) if row else None


def study_stimuli(con: sqlite3.Connection, study: str, kind: str) -> list[Stimulus]:
    """The stimuli of one kind, in a fixed order (by id, which is random)."""
    rows = con.execute("SELECT * FROM stimuli WHERE study = ? AND kind = ? ORDER BY id", (study, kind))
    return [Stimulus(**dict(row)) for row in rows]


def next_rater_seq(con: sqlite3.Connection, study: str) -> int:
    """The sequence number the next rater of `study` gets (0 for the first)."""
    return con.execute("SELECT count(*) FROM raters WHERE study = ?", (study,)).fetchone()[0]


def add_rater(con: sqlite3.Connection, rater: str, study: str, seq: int, plan: list[tuple[str, str]]) -> None:
    """Register a rater with their ordered plan of (stimulus, phase). Call inside `transaction`,
    with `seq` from `next_rater_seq` in the same transaction."""
    con.execute("INSERT INTO raters VALUES (?, ?, ?, ?)", (rater, study, seq, utc_now()))
    con.executemany(
        "INSERT INTO plan (rater, position, stimulus, phase) VALUES (?, ?, ?, ?)",
        [(rater, position, stimulus, phase) for position, (stimulus, phase) in enumerate(plan, start=1)],
    )


def rater_study(con: sqlite3.Connection, rater: str) -> str | None:
    row = con.execute("SELECT study FROM raters WHERE id = ?", (rater,)).fetchone()
    return row[0] if row else None


def next_unanswered(con: sqlite3.Connection, rater: str) -> sqlite3.Row | None:
    """The rater's first planned presentation without an answer: position, stimulus, phase, shown_at."""
    return con.execute(
        """SELECT p.position, p.stimulus, p.phase, p.shown_at FROM plan p
           LEFT JOIN ratings r ON r.rater = p.rater AND r.position = p.position
           WHERE p.rater = ? AND r.position IS NULL ORDER BY p.position LIMIT 1""",
        (rater,),
    ).fetchone()


def planned_stimulus(con: sqlite3.Connection, rater: str, position: int) -> Stimulus | None:
    """The stimulus at `position` of the rater's plan (None past its end)."""
    row = con.execute(
        "SELECT s.* FROM plan p JOIN stimuli s ON s.id = p.stimulus WHERE p.rater = ? AND p.position = ?", (rater, position)
    ).fetchone()
    return Stimulus(**dict(row)) if row else None


def plan_counts(con: sqlite3.Connection, rater: str) -> tuple[int, int, int]:
    """(answered, planned, planned calibration items) of one rater."""
    answered = con.execute("SELECT count(*) FROM ratings WHERE rater = ?", (rater,)).fetchone()[0]
    total, calibration = con.execute(
        "SELECT count(*), coalesce(sum(phase = 'calibration'), 0) FROM plan WHERE rater = ?", (rater,)
    ).fetchone()
    return answered, total, calibration


def mark_shown(con: sqlite3.Connection, rater: str, position: int, when: str) -> None:
    con.execute("UPDATE plan SET shown_at = ? WHERE rater = ? AND position = ?", (when, rater, position))


def add_rating(
    con: sqlite3.Connection,
    *,
    rater: str,
    position: int,
    stimulus: str,
    phase: str,
    score: int,
    shown_at: str,
    answered_at: str,
    response_ms: int,
) -> None:
    con.execute(
        "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (rater, position, stimulus, phase, score, shown_at, answered_at, response_ms),
    )


# Each answer as it stands: an undone answer's replacement (if given) instead of the first one.
EFFECTIVE_RATINGS = """
    SELECT r.rater, r.position, r.stimulus, r.phase,
           coalesce(v.score, r.score) AS score,
           CASE WHEN v.score IS NULL THEN r.shown_at ELSE v.shown_at END AS shown_at,
           coalesce(v.answered_at, r.answered_at) AS answered_at,
           coalesce(v.response_ms, r.response_ms) AS response_ms,
           v.score IS NOT NULL AS revised
    FROM ratings r LEFT JOIN revisions v ON v.rater = r.rater AND v.position = r.position
    WHERE (v.position IS NULL OR v.score IS NOT NULL)
"""  # an answer taken back and not given again is no answer (the rater's session counts it so too); callers add AND ...


def read_ratings(db_path: Path) -> pd.DataFrame:
    """Every answer in long format, one row each, with exactly the columns of `schema.COLUMNS`.

    `position` is the 1-based place in the rater's plan (calibration first); `shown_at` is ISO 8601
    UTC; `response_ms` is the time from serving the image to receiving the answer. An answer the rater
    undid and gave again counts with its second score (and that showing's time); an answer undone and not
    given again is left out, as the rater's session does not count it. Raters the admin excluded are left out.
    Reads without writing.
    """
    with connect_read_only(db_path) as con:
        table = pd.read_sql_query(
            f"""SELECT s.study, r.rater, r.stimulus, s.dataset, s.image, s.method, r.phase, r.score,
                       r.shown_at, r.response_ms, r.position
                FROM ({EFFECTIVE_RATINGS}) r JOIN stimuli s ON s.id = r.stimulus JOIN raters ra ON ra.id = r.rater
                WHERE r.rater NOT IN (SELECT rater FROM exclusions)
                ORDER BY s.study, ra.seq, r.position""",
            con,
        )
    return table.loc[:, list(COLUMNS)]


def ratings_csv(db_path: Path, study: str | None = None) -> str:
    """`read_ratings` as CSV text: every study's, or `study`'s only."""
    table = read_ratings(db_path)
    return (table if study is None else table[table["study"] == study]).to_csv(index=False)


def rater_progress(db_path: Path, study: str | None = None) -> pd.DataFrame:
    """One row per rater (of `study` only, when given): study, rater, answered / planned, started and last answer (UTC);
    an answer taken back and not given again is not counted (as the rater's session counts it)."""
    with connect(db_path, create=False) as con:
        return pd.read_sql_query(
            f"""SELECT ra.study, ra.id AS rater, count(r.position) AS answered,
                      (SELECT count(*) FROM plan p WHERE p.rater = ra.id) AS planned,
                      ra.created_at AS started, max(r.answered_at) AS last_answer
               FROM raters ra LEFT JOIN ({EFFECTIVE_RATINGS}) r ON r.rater = ra.id WHERE ? IS NULL OR ra.study = ?
               GROUP BY ra.id ORDER BY ra.study, ra.seq""",
            con,
            params=(study, study),
        )


def stimulus_progress(db_path: Path, study: str | None = None) -> pd.DataFrame:
    """One row per stimulus (of `study` only, when given): what it is, how often it is planned and rated, and its
    mean score, counted as `read_ratings` (hence the analysis) counts: an undone answer by its new score once given
    (by its first until then), and no rater the admin excluded."""
    with connect(db_path, create=False) as con:
        return pd.read_sql_query(
            f"""WITH answers AS ({EFFECTIVE_RATINGS} AND r.rater NOT IN (SELECT rater FROM exclusions))
                SELECT s.study, s.id AS stimulus, s.kind, s.dataset, s.image, s.method,
                       (SELECT count(*) FROM plan p WHERE p.stimulus = s.id AND p.rater NOT IN (SELECT rater FROM exclusions)) AS planned,
                       (SELECT count(*) FROM answers a WHERE a.stimulus = s.id) AS rated,
                       (SELECT round(avg(a.score), 2) FROM answers a WHERE a.stimulus = s.id) AS mean_score
                FROM stimuli s WHERE ? IS NULL OR s.study = ? ORDER BY s.study, s.kind, s.dataset, s.image, s.method""",
            con,
            params=(study, study),
        )


def is_closed(con: sqlite3.Connection, study: str) -> bool:
    """Whether the admin closed the study to new raters."""
    return study_settings(con, study).get("closed") == "1"


def study_settings(con: sqlite3.Connection, study: str) -> dict[str, str]:
    """The study's settings (keys from `SETTINGS`) that have been set."""
    rows = con.execute("SELECT key, value FROM study_settings WHERE study = ?", (study,))
    return {key: value for key, value in rows}


def set_setting(con: sqlite3.Connection, study: str, key: str, value: str | None) -> None:
    """Set (or, with None, clear) one of the study's `SETTINGS`."""
    if value is None:
        con.execute("DELETE FROM study_settings WHERE study = ? AND key = ?", (study, key))
    else:
        con.execute("INSERT OR REPLACE INTO study_settings VALUES (?, ?, ?)", (study, key, value))


def largest_stimulus(con: sqlite3.Connection, study: str) -> tuple[int, int]:
    """(width, height) the screen must show at once: the widest and the tallest stimulus of the study."""
    row = con.execute("SELECT max(width), max(height) FROM stimuli WHERE study = ?", (study,)).fetchone()
    return int(row[0] or 0), int(row[1] or 0)


def rater_by_identity(con: sqlite3.Connection, study: str, identity: str) -> str | None:
    row = con.execute("SELECT rater FROM identities WHERE study = ? AND identity = ?", (study, identity)).fetchone()
    return row[0] if row else None


def identity_of(con: sqlite3.Connection, rater: str) -> str | None:
    """The participant id a rater joined under (None if they gave none)."""
    row = con.execute("SELECT identity FROM identities WHERE rater = ?", (rater,)).fetchone()
    return row[0] if row else None


def add_identity(
    con: sqlite3.Connection, rater: str, study: str, identity: str | None, platform: dict | None, consent_at: str | None
) -> None:
    con.execute(
        "INSERT INTO identities VALUES (?, ?, ?, ?, ?)",
        (rater, study, identity, json.dumps(platform, sort_keys=True) if platform else None, consent_at),
    )


def add_viewing(con: sqlite3.Connection, rater: str, viewing: dict) -> None:
    """One record of the rater's viewing conditions (keys as the `viewings` columns after recorded_at)."""
    con.execute(
        """INSERT INTO viewings (rater, recorded_at, viewport_w, viewport_h, dpr, zoom, screen_w, screen_h, fits, one_to_one)
           VALUES (:rater, :recorded_at, :viewport_w, :viewport_h, :dpr, :zoom, :screen_w, :screen_h, :fits, :one_to_one)""",
        {"rater": rater, "recorded_at": utc_now()} | viewing,
    )


def open_revision(con: sqlite3.Connection, rater: str) -> sqlite3.Row | None:
    """The presentation the rater undid and has not answered again: position, stimulus, phase, shown_at."""
    return con.execute(
        """SELECT v.position, p.stimulus, p.phase, v.shown_at FROM revisions v
           JOIN plan p ON p.rater = v.rater AND p.position = v.position
           WHERE v.rater = ? AND v.score IS NULL""",
        (rater,),
    ).fetchone()


def last_answer(con: sqlite3.Connection, rater: str) -> sqlite3.Row | None:
    """The rater's latest answered presentation: position, stimulus, score (as it stands), answered_at, revisions."""
    return con.execute(
        """SELECT r.position, r.stimulus, coalesce(v.score, r.score) AS score, r.answered_at,
                  v.position IS NOT NULL AS revisions
           FROM ratings r LEFT JOIN revisions v ON v.rater = r.rater AND v.position = r.position
           WHERE r.rater = ? ORDER BY r.position DESC LIMIT 1""",
        (rater,),
    ).fetchone()


def stored_score(con: sqlite3.Connection, rater: str, position: int, stimulus: str) -> int | None:
    """The score the rater's answer to `stimulus` at `position` stands at (None when not answered)."""
    row = con.execute(
        """SELECT coalesce(v.score, r.score) FROM ratings r
           LEFT JOIN revisions v ON v.rater = r.rater AND v.position = r.position
           WHERE r.rater = ? AND r.position = ? AND r.stimulus = ?""",
        (rater, position, stimulus),
    ).fetchone()
    return row[0] if row else None


def reopen(con: sqlite3.Connection, rater: str, position: int, when: str) -> None:
    """Undo the answer at `position`: it is shown again and its next answer replaces it."""
    con.execute("INSERT INTO revisions (rater, position, reopened_at, shown_at) VALUES (?, ?, ?, ?)", (rater, position, when, when))


def mark_reshown(con: sqlite3.Connection, rater: str, position: int, when: str) -> None:
    con.execute("UPDATE revisions SET shown_at = ? WHERE rater = ? AND position = ? AND score IS NULL", (when, rater, position))


def add_revised_rating(con: sqlite3.Connection, rater: str, position: int, score: int, answered_at: str, response_ms: int) -> None:
    con.execute(
        "UPDATE revisions SET score = ?, answered_at = ?, response_ms = ? WHERE rater = ? AND position = ? AND score IS NULL",
        (score, answered_at, response_ms, rater, position),
    )


def open_revisions(con: sqlite3.Connection, rater: str) -> int:
    return con.execute("SELECT count(*) FROM revisions WHERE rater = ? AND score IS NULL", (rater,)).fetchone()[0]


def set_excluded(con: sqlite3.Connection, rater: str, reason: str | None) -> None:
    """Exclude a rater from the ratings `read_ratings` returns (reason given), or include them again (None)."""
    if reason is None:
        con.execute("DELETE FROM exclusions WHERE rater = ?", (rater,))
    else:
        con.execute("INSERT OR REPLACE INTO exclusions VALUES (?, ?, ?)", (rater, utc_now(), reason))


def admin_failures(con: sqlite3.Connection, client: str) -> tuple[int, str | None]:
    """(failed admin attempts in a row, time of the last one) of one client."""
    row = con.execute("SELECT failures, last_failure FROM admin_attempts WHERE client = ?", (client,)).fetchone()
    return (row[0], row[1]) if row else (0, None)


def record_admin_attempt(con: sqlite3.Connection, client: str, ok: bool) -> None:
    if ok:
        con.execute("DELETE FROM admin_attempts WHERE client = ?", (client,))
    else:
        con.execute(
            """INSERT INTO admin_attempts VALUES (?, 1, ?)
               ON CONFLICT (client) DO UPDATE SET failures = failures + 1, last_failure = excluded.last_failure""",
            (client, utc_now()),
        )


def rater_overview(con: sqlite3.Connection, study: str | None = None) -> pd.DataFrame:
    """One row per rater (of `study` only, when given) for the admin view: identity, progress, finished, gold failures, test-retest
    (mean |repeat - first showing|), median response time, latest viewing conditions, excluded."""
    table = pd.read_sql_query(
        f"""WITH answers AS ({EFFECTIVE_RATINGS}),
                 latest_view AS (SELECT * FROM viewings w WHERE w.rowid = (SELECT max(rowid) FROM viewings WHERE rater = w.rater))
            SELECT ra.study, ra.id AS rater, i.identity,
                   (SELECT count(*) FROM answers a WHERE a.rater = ra.id) AS answered,
                   (SELECT count(*) FROM plan p WHERE p.rater = ra.id) AS planned,
                   (SELECT count(*) FROM answers a JOIN stimuli s ON s.id = a.stimulus
                     WHERE a.rater = ra.id AND a.phase = 'gold' AND abs(a.score - s.expected) > 1) AS gold_failures,
                   (SELECT avg(abs(t.score - r.score)) FROM answers r JOIN answers t
                     ON t.rater = r.rater AND t.stimulus = r.stimulus AND t.phase = 'trial'
                     WHERE r.rater = ra.id AND r.phase = 'repeat') AS retest_mean_abs_diff,
                   (SELECT count(*) FROM revisions v WHERE v.rater = ra.id) AS undone,
                   lv.viewport_w || 'x' || lv.viewport_h AS viewport, lv.dpr, lv.fits, lv.one_to_one,
                   e.reason AS excluded, ra.created_at AS started,
                   (SELECT max(answered_at) FROM answers a WHERE a.rater = ra.id) AS last_answer
            FROM raters ra LEFT JOIN identities i ON i.rater = ra.id LEFT JOIN latest_view lv ON lv.rater = ra.id
            LEFT JOIN exclusions e ON e.rater = ra.id
            WHERE ? IS NULL OR ra.study = ?
            ORDER BY ra.study, ra.seq""",
        con,
        params=(study, study),
    )
    medians = pd.read_sql_query(f"SELECT rater, response_ms FROM ({EFFECTIVE_RATINGS})", con).groupby("rater")["response_ms"].median()
    table.insert(5, "finished", table["answered"] >= table["planned"])
    table.insert(7, "median_response_ms", table["rater"].map(medians))
    return table
