"""The MOS study's SQLite database: studies, stimuli, each rater's stored plan, and the ratings.

WAL mode with `synchronous=FULL`: a rating is durable the moment `add_rating` returns. The schema
enforces what must never happen (a score outside 1..5, a second answer to the same presentation,
an answer to an image that is not in the rater's plan, a rating edited or deleted afterwards), so a
bug elsewhere cannot write such a row. Stimulus files live beside the database, under
``<db folder>/<study>/stimuli/<opaque id>.png``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from study.ratings import COLUMNS, PHASES

SCHEMA_VERSION = 1
KINDS = ("trial", "calibration", "gold")
RATING_COLUMNS = COLUMNS  # the long format study.analyze reads

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
    expected INTEGER CHECK (expected BETWEEN 1 AND 5),
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
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
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


@contextmanager
def connect(db_path: Path, create: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode (use `transaction` to group writes), closed on exit.

    Creates the database and its schema when `create` and the file is new; refuses a database of
    another schema version.
    """
    db_path = Path(db_path)
    if not create and not db_path.is_file():
        raise FileNotFoundError(f"{db_path}: no such study database (create one with `python -m study.prepare`)")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(db_path, timeout=30, isolation_level=None)) as con:
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{db_path}: not an SQLite database ({err})") from None
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA foreign_keys=ON")
        _ensure_schema(con, db_path)
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


def _ensure_schema(con: sqlite3.Connection, db_path: Path) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    with transaction(con):
        version = con.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
        if version == 0:
            tables = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise StoreError(f"{db_path}: an SQLite file that is not a study database")
            for statement in _statements(SCHEMA):  # not executescript: it would COMMIT midway
                con.execute(statement)
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("INSERT INTO meta VALUES ('token_secret', ?)", (secrets.token_hex(32),))
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{db_path}: study database schema version {version}; this code reads version {SCHEMA_VERSION}")


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


def read_ratings(db_path: Path) -> pd.DataFrame:
    """Every answer in long format, one row each, with exactly the columns of `RATING_COLUMNS`.

    `position` is the 1-based place in the rater's plan (calibration first); `shown_at` is ISO 8601
    UTC; `response_ms` is the time from serving the image to receiving the answer.
    """
    with connect(db_path, create=False) as con:
        table = pd.read_sql_query(
            """SELECT s.study, r.rater, r.stimulus, s.dataset, s.image, s.method, r.phase, r.score,
                      r.shown_at, r.response_ms, r.position
               FROM ratings r JOIN stimuli s ON s.id = r.stimulus JOIN raters ra ON ra.id = r.rater
               ORDER BY s.study, ra.seq, r.position""",
            con,
        )
    return table.loc[:, list(RATING_COLUMNS)]


def export_csv(db_path: Path, out: Path) -> Path:
    """`read_ratings` written as CSV (the admin view's export)."""
    read_ratings(db_path).to_csv(out, index=False)
    return Path(out)


def rater_progress(db_path: Path) -> pd.DataFrame:
    """One row per rater: study, rater, answered / planned, started and last answer (UTC)."""
    with connect(db_path, create=False) as con:
        return pd.read_sql_query(
            """SELECT ra.study, ra.id AS rater, count(r.position) AS answered,
                      (SELECT count(*) FROM plan p WHERE p.rater = ra.id) AS planned,
                      ra.created_at AS started, max(r.answered_at) AS last_answer
               FROM raters ra LEFT JOIN ratings r ON r.rater = ra.id
               GROUP BY ra.id ORDER BY ra.study, ra.seq""",
            con,
        )


def stimulus_progress(db_path: Path) -> pd.DataFrame:
    """One row per stimulus: what it is, how often it is planned and how often it was rated."""
    with connect(db_path, create=False) as con:
        return pd.read_sql_query(
            """SELECT s.study, s.id AS stimulus, s.kind, s.dataset, s.image, s.method,
                      (SELECT count(*) FROM plan p WHERE p.stimulus = s.id) AS planned,
                      (SELECT count(*) FROM ratings r WHERE r.stimulus = s.id) AS rated,
                      (SELECT round(avg(r.score), 2) FROM ratings r WHERE r.stimulus = s.id) AS mean_score
               FROM stimuli s ORDER BY s.study, s.kind, s.dataset, s.image, s.method""",
            con,
        )
