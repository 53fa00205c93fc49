"""Rater sessions: a randomized plan stored per rater, a signed token, and one answer at a time.

A new rater gets a plan that is fixed the moment they join: the calibration images first (in random
order), then their share of the study's stimuli in random order with the gold items at random
places and some of their stimuli shown a second time (phase ``repeat``) later on. With ``per_rater``
set, rater number k takes the k-th window of a study-wide order that cycles through the methods, so
every stimulus is planned for about equally many raters and each rater sees every method about
equally often.

The token a rater keeps (in the browser) is ``<rater id>.<HMAC of the id>`` under a secret stored in
the database, so nobody can act on another rater's session without holding that rater's token. An
answer names the presentation it answers (the *ticket*, ``<position>:<MAC>``, handed out with the
image); only the rater's next unanswered presentation, after it was shown, is accepted. A ticket names
neither the image nor its method, and a repeated image gets a ticket of its own, so no ticket tells a
repeat from its first showing.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import numbers
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from study import design, store
from study.schema import SCORES

UNDO_SECONDS = 10  # how long after an answer the rater can take it back (once per answer)
Db = Path | sqlite3.Connection  # a database file, or a connection the caller keeps open
_TOKEN = re.compile(r"([0-9a-f]{16})\.([0-9a-f]{32})")
_TICKET = re.compile(r"([1-9][0-9]{0,6}):[0-9a-f]{24}")


class InvalidToken(ValueError):
    """A rater token that is malformed, forged, or unknown to this database."""


class RatingRefused(ValueError):
    """An answer that is not taken (the database is left unchanged)."""


class NoStudy(LookupError):
    """No study has been prepared in the database."""


class JoinRefused(ValueError):
    """A new rater who cannot join (the study is closed, or consent was not given)."""


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
    """One presentation. The rater's page gets all but `stimulus`, and its image by a URL of its own (`study.server`)
    or as an uncompressed PNG inside the page (the Gradio tab); `expected` is set for calibration images only."""

    ticket: str
    stimulus: str
    width: int
    height: int
    phase: str
    expected: int | None
    step: int  # 1-based, within calibration or within the rating part
    steps: int


@contextmanager
def _connected(db: Db, create: bool = False) -> Iterator[sqlite3.Connection]:
    """The connection given, or a new one to the database file given (closed on exit)."""
    if isinstance(db, sqlite3.Connection):
        yield db
    else:
        with store.connect(db, create=create) as con:
            yield con


@contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`store.transaction`, or the transaction the connection is already in."""
    if con.in_transaction:
        yield con
    else:
        with store.transaction(con):
            yield con


def _sign(secret: bytes, rater: str) -> str:
    return hmac.new(secret, f"rater-token:{rater}".encode(), hashlib.sha256).hexdigest()[:32]


def new_rater(db_path: Db, study: str | None = None) -> str:
    """Register a rater in `study` (default: the latest prepared) with a fresh plan; returns their token. JoinRefused
    once the admin has closed the study. Given a connection already in a transaction, it joins that transaction."""
    with _connected(db_path, create=True) as con, _transaction(con):
        study = study or store.latest_study(con)
        if study is None:
            raise NoStudy("no study has been prepared yet: run `python -m study.prepare --name NAME ...`")
        if store.is_closed(con, study):  # checked in the transaction that adds the rater
            raise JoinRefused("this study is closed to new participants")
        config = store.study_config(con, study)
        seq = store.next_rater_seq(con, study)
        plan = design.rater_plan(
            store.study_stimuli(con, study, "trial"),
            [s.id for s in store.study_stimuli(con, study, "calibration")],
            [s.id for s in store.study_stimuli(con, study, "gold")],
            config,
            seq,
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


def rater_of(db: Db, token: object) -> str:
    """The rater id of a genuine token (InvalidToken otherwise)."""
    with _connected(db) as con:
        return _rater_of(con, token)


def join(db: Db, identity: str | None = None, platform: dict | None = None, consent: bool = False) -> str:
    """The token of whoever starts a session in the open (latest) study: the rater already registered
    under `identity` resumes (one identity, one session); anyone else joins as a new rater, unless the
    study is closed to new raters or `consent` was not given (JoinRefused)."""
    with _connected(db, create=True) as con, store.transaction(con):
        study = store.latest_study(con)
        if study is None:
            raise NoStudy("no study has been prepared yet: run `python -m study.prepare --name NAME ...`")
        known = store.rater_by_identity(con, study, identity) if identity else None
        if known:
            return f"{known}.{_sign(store.token_secret(con), known)}"
        if store.is_closed(con, study):  # before the consent check: no consent makes a closed study open
            raise JoinRefused("this study is closed to new participants")
        if not consent:
            raise JoinRefused("please read the consent text and agree to it before you start")
        token = new_rater(con, study)
        store.add_identity(con, token.split(".")[0], study, identity, platform, store.utc_now())
        return token


def closed_to_new_raters(db: Db) -> bool:
    """Whether the open (latest) study takes no new raters (the admin closed it)."""
    with _connected(db) as con:
        study = store.latest_study(con)
        return study is not None and store.is_closed(con, study)


def record_viewing(db: Db, token: object, viewing: dict) -> None:
    """Store the rater's viewing conditions (see `store.add_viewing`)."""
    with _connected(db) as con, _transaction(con):
        store.add_viewing(con, _rater_of(con, token), viewing)


def _next_open(con: sqlite3.Connection, rater: str) -> sqlite3.Row | None:
    """The presentation the rater must answer next: an undone one first, else the first unanswered."""
    return store.open_revision(con, rater) or store.next_unanswered(con, rater)


def _status(con: sqlite3.Connection, rater: str) -> Status:
    study = store.rater_study(con, rater)
    answered, total, calibration = store.plan_counts(con, rater)
    answered -= store.open_revisions(con, rater)
    return Status(rater, study, answered, total, calibration, store.study_config(con, study)["pause_every"])


def status(db_path: Db, token: object) -> Status:
    with _connected(db_path) as con:
        return _status(con, _rater_of(con, token))


def _present(con: sqlite3.Connection, rater: str) -> Item | None:
    row = _next_open(con, rater)
    if row is None:
        return None
    now = store.utc_now()
    store.mark_shown(con, rater, row["position"], now)
    store.mark_reshown(con, rater, row["position"], now)
    s = store.get_stimulus(con, row["stimulus"])
    st = _status(con, rater)
    calibrating = row["phase"] == "calibration"
    return Item(
        ticket=ticket_of(con, rater, row["position"], s.id),
        stimulus=s.id,
        width=s.width,
        height=s.height,
        phase=row["phase"],
        expected=s.expected if calibrating else None,
        step=row["position"] if calibrating else row["position"] - st.calibration,
        steps=st.calibration if calibrating else st.to_rate,
    )


def present(db_path: Db, token: object) -> Item | None:
    """The rater's next image to answer, marked as shown now; None when the session is complete."""
    with _connected(db_path) as con, _transaction(con):
        return _present(con, _rater_of(con, token))


def valid_score(score: object) -> int:
    """A score of `SCORES` (an integral float such as 3.0 is accepted), else RatingRefused."""
    integral = isinstance(score, numbers.Integral) or (
        isinstance(score, float) and math.isfinite(score) and score.is_integer()
    )
    if isinstance(score, bool) or not integral or int(score) not in SCORES:
        raise RatingRefused(f"a score is a whole number from {SCORES[0]} to {SCORES[-1]}, not {score!r}")
    return int(score)


def ticket_of(con: sqlite3.Connection, rater: str, position: int, stimulus: str) -> str:
    """The ticket of one presentation: its position and a MAC of the rater, position and stimulus."""
    mac = hmac.new(store.token_secret(con), f"ticket:{rater}:{position}:{stimulus}".encode(), hashlib.sha256)
    return f"{position}:{mac.hexdigest()[:24]}"


def _presentation(con: sqlite3.Connection, rater: str, ticket: object) -> tuple[int, str]:
    """(position, stimulus id) of the rater's presentation a ticket names; RatingRefused for any other ticket."""
    match = _TICKET.fullmatch(ticket) if isinstance(ticket, str) else None
    if match is None:
        raise RatingRefused(f"not an image ticket: {ticket!r}")
    position = int(match.group(1))
    planned = store.planned_stimulus(con, rater, position)
    if planned is None or not hmac.compare_digest(ticket, ticket_of(con, rater, position, planned.id)):
        raise RatingRefused("that ticket names no image of this session")
    return position, planned.id


def _elapsed_ms(since: str, until: str) -> int:
    elapsed = datetime.fromisoformat(until) - datetime.fromisoformat(since)
    return max(round(elapsed.total_seconds() * 1000), 0)


def stimulus_of(db: Db, rater: str, ticket: object) -> store.Stimulus:
    """What a rater's ticket shows, for the study's own tools (the ticket itself does not say); RatingRefused for a
    ticket that is not one of the rater's."""
    with _connected(db) as con:
        return store.get_stimulus(con, _presentation(con, rater, ticket)[1])


def answer(db_path: Db, token: object, ticket: object, score: object, replay_ok: bool = False) -> Status:
    """Store one answer, committed before returning; RatingRefused (nothing stored) unless it answers
    the rater's next open presentation after it was shown. With `replay_ok`, the same answer sent again
    (a client retrying after a lost reply) is acknowledged without storing anything."""
    score = valid_score(score)
    with _connected(db_path) as con, _transaction(con):
        rater = _rater_of(con, token)
        position, stimulus = _presentation(con, rater, ticket)
        row = _next_open(con, rater)
        stored = store.stored_score(con, rater, position, stimulus)
        if row is None or (position, stimulus) != (row["position"], row["stimulus"]):
            if replay_ok and stored == score:
                return _status(con, rater)
            if row is None:
                raise RatingRefused("this session is complete; it takes no more answers")
            if stored is not None or position < row["position"]:
                raise RatingRefused(f"image {position} of this session has already been rated")
            raise RatingRefused("that is not the image this session is showing")
        if row["shown_at"] is None:
            raise RatingRefused("that image has not been shown yet")
        answered_at = store.utc_now()
        response_ms = _elapsed_ms(row["shown_at"], answered_at)
        if stored is not None:  # an undone answer, given again
            store.add_revised_rating(con, rater, position, score, answered_at, response_ms)
        else:
            store.add_rating(
                con,
                rater=rater,
                position=position,
                stimulus=stimulus,
                phase=row["phase"],
                score=score,
                shown_at=row["shown_at"],
                answered_at=answered_at,
                response_ms=response_ms,
            )
        return _status(con, rater)


def undo(db_path: Db, token: object, ticket: object) -> Item:
    """Take back the rater's last answer (the one `ticket` names), within `UNDO_SECONDS` and once per
    answer: that image is shown again and its next answer replaces the first in `store.read_ratings`."""
    with _connected(db_path) as con, _transaction(con):
        rater = _rater_of(con, token)
        position, stimulus = _presentation(con, rater, ticket)
        last = store.last_answer(con, rater)
        now = store.utc_now()
        if last is not None and (last["position"], last["stimulus"]) != (position, stimulus):
            raise RatingRefused("only the last answer can be undone")
        refusal = _undo_refusal(con, rater, last, now)
        if refusal:
            raise RatingRefused(refusal)
        store.reopen(con, rater, position, now)
        return _present(con, rater)


def undoable(db: Db, token: object) -> str | None:
    """The ticket of the rater's last answer while `undo` may take it back, else None."""
    with _connected(db) as con:
        rater = _rater_of(con, token)
        last = store.last_answer(con, rater)
        if _undo_refusal(con, rater, last, store.utc_now()):
            return None
        return ticket_of(con, rater, last["position"], last["stimulus"])


def _undo_refusal(con: sqlite3.Connection, rater: str, last: sqlite3.Row | None, now: str) -> str:
    """Why the rater's last answer cannot be undone now ('' when it can): the rule `undo` and `undoable` share."""
    if last is None or store.open_revision(con, rater):
        return "only the last answer can be undone"
    answered, planned, _ = store.plan_counts(con, rater)
    if answered >= planned:  # the completion code is out: the session's answers stand
        return "the session has ended: its answers can no longer be undone"
    if last["revisions"]:
        return "this answer has already been undone once"
    if _elapsed_ms(last["answered_at"], now) > UNDO_SECONDS * 1000:
        return f"an answer can be undone within {UNDO_SECONDS} seconds only"
    return ""


def completion_code(db: Db, token: object) -> str:
    """The code a finished rater gives the study platform: the study's own (setting ``completion_code``),
    else one derived from the rater id (the admin view lists it)."""
    with _connected(db) as con:
        rater = _rater_of(con, token)
        fixed = store.study_settings(con, store.rater_study(con, rater)).get("completion_code")
        return fixed or rater_code(con, rater)


def rater_code(con: sqlite3.Connection, rater: str) -> str:
    return hmac.new(store.token_secret(con), f"completion:{rater}".encode(), hashlib.sha256).hexdigest()[:10].upper()
