"""Rater sessions: a randomized plan stored per rater, a signed token, and one answer at a time.

A new rater gets a plan that is fixed the moment they join: the calibration images first (in random
order), then their share of the study's stimuli in random order with the gold items at random
places and some of their stimuli shown a second time (phase ``repeat``) later on. With ``per_rater``
set, rater number k takes the k-th window of a study-wide order that cycles through the methods, so
every stimulus is planned for about equally many raters and each rater sees every method about
equally often.

The token a rater keeps (in the browser) is ``<rater id>.<HMAC of the id>`` under a secret stored in
the database, so nobody can act on another rater's session without holding that rater's token. An
answer names the presentation it answers (the *ticket*, ``<position>:<stimulus id>``, handed out
with the image); only the rater's next unanswered presentation, after it was shown, is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import numbers
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from study import store
from study.design import LEGACY_REPEAT_GAP, balanced_subset, build_plan, study_order  # noqa: F401 (this module's API)

MIN_REPEAT_GAP = LEGACY_REPEAT_GAP  # presentations between a stimulus and its repeat when no spacing is given
_TOKEN = re.compile(r"([0-9a-f]{16})\.([0-9a-f]{32})")
_TICKET = re.compile(r"([1-9][0-9]{0,6}):([0-9a-f]{16,64})")


class InvalidToken(ValueError):
    """A rater token that is malformed, forged, or unknown to this database."""


class RatingRefused(ValueError):
    """An answer that is not taken (the database is left unchanged)."""


class NoStudy(LookupError):
    """No study has been prepared in the database."""


@dataclass(frozen=True)
class Status:
    """Where a rater stands: answered of total presentations, the first `calibration` of them calibration."""

    rater: str
    study: str
    answered: int
    total: int
    calibration: int
    pause_every: int

    @property
    def finished(self) -> bool:
        return self.answered >= self.total

    @property
    def rated(self) -> int:
        """Answers given after calibration."""
        return max(self.answered - self.calibration, 0)

    @property
    def to_rate(self) -> int:
        """Presentations after calibration."""
        return self.total - self.calibration

    def interlude(self) -> str | None:
        """What to show before the next image, if anything, right after an answer:
        ``"calibrated"`` when calibration just ended, ``"pause"`` every `pause_every` rated images."""
        if self.finished:
            return None
        if self.calibration and self.answered == self.calibration:
            return "calibrated"
        if self.pause_every and self.rated and self.rated % self.pause_every == 0:
            return "pause"
        return None


@dataclass(frozen=True)
class Item:
    """One presentation as the rater sees it. `expected` is set for calibration images only."""

    ticket: str
    path: Path
    width: int
    height: int
    phase: str
    expected: int | None
    step: int  # 1-based, within calibration or within the rating part
    steps: int


def _sign(secret: bytes, rater: str) -> str:
    return hmac.new(secret, f"rater-token:{rater}".encode(), hashlib.sha256).hexdigest()[:32]


def new_rater(db_path: Path, study: str | None = None) -> str:
    """Register a rater in `study` (default: the latest prepared) with a fresh plan; returns their token."""
    with store.connect(db_path) as con, store.transaction(con):
        study = study or store.latest_study(con)
        if study is None:
            raise NoStudy("no study has been prepared yet: run `python -m study.prepare --name NAME ...`")
        config = store.study_config(con, study)
        seq = store.next_rater_seq(con, study)
        trials = store.study_stimuli(con, study, "trial")
        subset = balanced_subset(study_order(trials, config["seed"]), seq, config["per_rater"])
        rng = np.random.default_rng([config["seed"], seq])
        plan = build_plan(
            [s.id for s in store.study_stimuli(con, study, "calibration")],
            subset,
            [s.id for s in store.study_stimuli(con, study, "gold")],
            config["repeats"],
            rng,
        )
        rater = secrets.token_hex(8)
        store.add_rater(con, rater, study, seq, plan)
        return f"{rater}.{_sign(store.token_secret(con), rater)}"


def _rater_of(con: sqlite3.Connection, token: object) -> str:
    """The rater a token belongs to; InvalidToken unless it is genuine and known here."""
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise InvalidToken("not a rater token")
    rater, mac = match.groups()
    if not hmac.compare_digest(mac, _sign(store.token_secret(con), rater)) or store.rater_study(con, rater) is None:
        raise InvalidToken("this rater token is not valid here")
    return rater


def _status(con: sqlite3.Connection, rater: str) -> Status:
    study = store.rater_study(con, rater)
    answered, total, calibration = store.plan_counts(con, rater)
    return Status(rater, study, answered, total, calibration, store.study_config(con, study)["pause_every"])


def status(db_path: Path, token: object) -> Status:
    with store.connect(db_path, create=False) as con:
        return _status(con, _rater_of(con, token))


def present(db_path: Path, token: object) -> Item | None:
    """The rater's next unanswered image, marked as shown now; None when the session is complete."""
    with store.connect(db_path, create=False) as con, store.transaction(con):
        rater = _rater_of(con, token)
        row = store.next_unanswered(con, rater)
        if row is None:
            return None
        store.mark_shown(con, rater, row["position"], store.utc_now())
        s = store.get_stimulus(con, row["stimulus"])
        st = _status(con, rater)
        calibrating = row["phase"] == "calibration"
        return Item(
            ticket=f"{row['position']}:{s.id}",
            path=Path(db_path).parent / s.file,
            width=s.width,
            height=s.height,
            phase=row["phase"],
            expected=s.expected if calibrating else None,
            step=row["position"] if calibrating else row["position"] - st.calibration,
            steps=st.calibration if calibrating else st.to_rate,
        )


def valid_score(score: object) -> int:
    """An integer 1..5 (an integral float such as 3.0 is accepted), else RatingRefused."""
    integral = isinstance(score, numbers.Integral) or (
        isinstance(score, float) and math.isfinite(score) and score.is_integer()
    )
    if isinstance(score, bool) or not integral or not 1 <= int(score) <= 5:
        raise RatingRefused(f"a score is a whole number from 1 to 5, not {score!r}")
    return int(score)


def answer(db_path: Path, token: object, ticket: object, score: object) -> Status:
    """Store one answer, committed before returning; RatingRefused (nothing stored) unless it answers
    the rater's next unanswered presentation after it was shown."""
    score = valid_score(score)
    match = _TICKET.fullmatch(ticket) if isinstance(ticket, str) else None
    if match is None:
        raise RatingRefused(f"not an image ticket: {ticket!r}")
    position, stimulus = int(match.group(1)), match.group(2)
    with store.connect(db_path, create=False) as con, store.transaction(con):
        rater = _rater_of(con, token)
        if store.get_stimulus(con, stimulus) is None:
            raise RatingRefused(f"unknown image {stimulus!r}")
        row = store.next_unanswered(con, rater)
        if row is None:
            raise RatingRefused("this session is complete; it takes no more answers")
        if position < row["position"]:
            raise RatingRefused(f"image {position} of this session has already been rated")
        if (position, stimulus) != (row["position"], row["stimulus"]):
            raise RatingRefused("that is not the image this session is showing")
        if row["shown_at"] is None:
            raise RatingRefused("that image has not been shown yet")
        answered_at = store.utc_now()
        elapsed = datetime.fromisoformat(answered_at) - datetime.fromisoformat(row["shown_at"])
        store.add_rating(
            con,
            rater=rater,
            position=position,
            stimulus=stimulus,
            phase=row["phase"],
            score=score,
            shown_at=row["shown_at"],
            answered_at=answered_at,
            response_ms=max(round(elapsed.total_seconds() * 1000), 0),
        )
        return _status(con, rater)
