"""Reading and validating the long-format ratings table, from a CSV export or from the study database.

One row per answer, with the columns of `study.schema.COLUMNS`. Every problem is reported as a
`RatingsError` naming the offending row (``line N`` of a CSV, counting the header as line 1; ``row N``
of the database, counting from 1).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from study.schema import COLUMNS, ORIGINAL, PHASES, SCORES
from study.store import StoreError, connect_read_only, read_ratings

REQUIRED = ("study", "rater", "stimulus", "dataset", "image", "method", "phase", "score")
# P.808-style gold items: the scores a rater who is paying attention gives them.
GOLD_EXPECTED: dict[str, tuple[int, int]] = {"nearest": (1, 2), ORIGINAL: (4, 5)}
# Calibration items: the score the page asks for (the paper's anchors, 1 and 5).
CALIBRATION_EXPECTED: dict[str, int] = {"nearest": 1, ORIGINAL: 5}

RowName = Callable[[int], str]


class RatingsError(ValueError):
    """The ratings table is missing, empty or malformed."""


def read_ratings_csv(path: Path) -> pd.DataFrame:
    """The validated ratings of a long-format CSV file."""
    path = Path(path)
    if not path.is_file():
        raise RatingsError(f"{path} is a folder: give the ratings CSV file" if path.is_dir() else f"{path}: no such ratings file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except OSError as err:
        raise RatingsError(f"{path}: cannot read it ({err.strerror or err}); give a ratings file you can read") from None
    except pd.errors.EmptyDataError:
        raise RatingsError(
            f"{path}: the file is empty; expected a header row with the columns {', '.join(COLUMNS)}"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RatingsError(f"{path}: not a readable CSV file ({err})") from None
    table = table[~(table == "").all(axis=1)]  # blank lines; the index keeps the line numbers
    return validate_ratings(table, str(path), lambda i: f"line {i + 2}")


def read_ratings_db(path: Path) -> pd.DataFrame:
    """The validated ratings stored in the study database."""
    path = Path(path)
    if not path.is_file():
        raise RatingsError(f"{path}: no such study database")
    if path.stat().st_size == 0:
        raise RatingsError(f"{path}: the file is empty, not a study database")
    try:
        table = read_ratings(path).reset_index(drop=True)
    except StoreError as err:
        raise RatingsError(str(err)) from None
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as err:
        raise RatingsError(f"{path}: cannot read the ratings ({err}); the file may be damaged") from None
    if table.empty:
        raise RatingsError(f"{path}: no ratings stored yet (no rater has answered, or every rater who did is excluded)")
    return validate_ratings(table, str(path), lambda i: f"row {i + 1}")


def read_planned(path: Path) -> pd.DataFrame:
    """Per rater of the study database (opened read-only): study, rater, the presentations planned for
    them (the number a rater must answer to have finished) and why the admin excluded them (None if not)."""
    path = Path(path)
    try:
        with connect_read_only(path) as con:
            return pd.read_sql_query(
                """SELECT ra.study, ra.id AS rater, count(p.position) AS planned, e.reason AS excluded
                   FROM raters ra LEFT JOIN plan p ON p.rater = ra.id LEFT JOIN exclusions e ON e.rater = ra.id
                   GROUP BY ra.id ORDER BY ra.study, ra.id""",
                con,
            )
    except StoreError as err:
        raise RatingsError(str(err)) from None
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as err:
        raise RatingsError(f"{path}: cannot read the raters' plans ({err})") from None


def read_study_names(path: Path) -> list[str]:
    """The studies prepared in the study database (opened read-only), sorted; none when there is no database."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return []
    try:
        with connect_read_only(path) as con:
            return sorted(row[0] for row in con.execute("SELECT name FROM studies"))
    except (StoreError, sqlite3.DatabaseError):
        return []


def validate_ratings(table: pd.DataFrame, source: str, row_name: RowName) -> pd.DataFrame:
    """The table with typed columns (score int, response_ms float, position nullable int).

    `row_name` turns an index label of `table` into the name a person finds the row by.
    """
    table = _check_columns(table, source)
    if table.empty:
        raise RatingsError(f"{source}: no ratings (the table has a header but no rows)")
    text = table.loc[:, list(COLUMNS)].astype(object).where(table.notna(), "")
    text = text.map(lambda v: str(v).strip())

    def fail(mask: pd.Series, message: Callable[[object], str]) -> None:
        if mask.any():
            first = mask[mask].index[0]
            more = int(mask.sum()) - 1
            tail = f" ({more} more row{'s' if more != 1 else ''} like it)" if more else ""
            raise RatingsError(f"{source}, {row_name(first)}: {message(first)}{tail}")

    for column in REQUIRED:
        fail(text[column] == "", lambda i, c=column: f"{c} is empty")
    fail(
        ~text["phase"].isin(PHASES),
        lambda i: f"unknown phase {text.at[i, 'phase']!r}; expected one of {', '.join(PHASES)}",
    )

    score = pd.to_numeric(text["score"], errors="coerce")
    fail(
        ~score.isin(SCORES),
        lambda i: f"score {text.at[i, 'score']!r} is not an integer in {SCORES[0]}..{SCORES[-1]}",
    )
    response_ms = pd.to_numeric(text["response_ms"].replace("", np.nan), errors="coerce")
    fail(
        (text["response_ms"] != "") & ~(response_ms >= 0),
        lambda i: f"response_ms {text.at[i, 'response_ms']!r} is not a non-negative number",
    )
    position = pd.to_numeric(text["position"].replace("", np.nan), errors="coerce")
    fail(
        (text["position"] != "") & ~((position >= 0) & (position == position.round())),
        lambda i: f"position {text.at[i, 'position']!r} is not a non-negative integer",
    )
    shown_at = pd.to_datetime(text["shown_at"].replace("", None), errors="coerce", utc=True, format="ISO8601")
    fail(
        (text["shown_at"] != "") & shown_at.isna(),
        lambda i: f"shown_at {text.at[i, 'shown_at']!r} is not an ISO 8601 time",
    )
    gold = text["phase"] == "gold"
    fail(
        gold & ~text["method"].isin(list(GOLD_EXPECTED)),
        lambda i: f"gold item with method {text.at[i, 'method']!r}; gold items are "
        + " or ".join(GOLD_EXPECTED),
    )
    _check_duplicates(text, source, row_name)

    typed = text.copy()
    typed["score"] = score.astype(int)
    typed["response_ms"] = response_ms.astype(float)
    typed["position"] = position.astype("Int64")
    return typed.reset_index(drop=True)


def select_study(ratings: pd.DataFrame, study: str | None) -> tuple[str, pd.DataFrame]:
    """The ratings of one study: the one named, or the only one present."""
    studies = sorted(ratings["study"].unique())
    if study is None:
        if len(studies) > 1:
            raise RatingsError(f"the ratings hold several studies ({', '.join(studies)}); choose one with --study")
        study = studies[0]
    elif study not in studies:
        raise RatingsError(f"no ratings for study {study!r}; the ratings hold {', '.join(studies)}")
    return study, ratings[ratings["study"] == study].reset_index(drop=True)


def _check_columns(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """The table with its header names stripped, when they are exactly `COLUMNS` (in any order)."""
    columns = [str(c).strip() for c in table.columns]
    missing = [c for c in COLUMNS if c not in columns]
    unexpected = [c for c in columns if c not in COLUMNS]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected column{'s' if len(unexpected) > 1 else ''} {', '.join(unexpected)}")
        raise RatingsError(f"{source}, header: {'; '.join(parts)}; expected exactly {', '.join(COLUMNS)}")
    return table.set_axis(columns, axis=1)


def _check_duplicates(text: pd.DataFrame, source: str, row_name: RowName) -> None:
    """A trial or repeat is answered once per rater and stimulus."""
    once = text[text["phase"].isin(["trial", "repeat"])]
    key = ["study", "rater", "stimulus", "phase"]
    dup = once[once.duplicated(key, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        same = dup[(dup[key] == first[key]).all(axis=1)].index
        raise RatingsError(
            f"{source}, {row_name(same[1])}: rater {first['rater']!r} answered stimulus "
            f"{first['stimulus']!r} ({first['phase']}) again; first answer at {row_name(same[0])}"
        )
