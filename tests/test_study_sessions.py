"""Rater sessions: plans, balance, tokens, answering in order, resuming, refusing bad input."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter

import numpy as np
import pytest

from study import design, sessions, store
from tests.test_study_store import make_study


def dump(db) -> list[str]:
    """The whole database as SQL text, to show a refused request changed nothing."""
    with sqlite3.connect(db) as con:
        return list(con.iterdump())


def test_build_plan_puts_calibration_first_and_every_item_where_it_belongs():
    calibration, subset, gold = [f"c{i}" for i in range(4)], [f"s{i}" for i in range(20)], ["g0", "g1"]
    plan = design.build_plan(calibration, subset, gold, repeats=5, rng=np.random.default_rng(1))
    phases = [p for _, p in plan]
    assert phases[:4] == ["calibration"] * 4 and "calibration" not in phases[4:]
    assert sorted(s for s, p in plan if p == "calibration") == calibration
    assert sorted(s for s, p in plan if p == "trial") == sorted(subset)
    assert sorted(s for s, p in plan if p == "gold") == gold
    repeats = [s for s, p in plan if p == "repeat"]
    assert len(repeats) == len(set(repeats)) == 5
    for s in repeats:
        first, second = plan.index((s, "trial")), plan.index((s, "repeat"))
        assert second - first > design.LEGACY_REPEAT_GAP
    assert len(plan) == 4 + 20 + 5 + 2
    assert [s for s, _ in plan[4:]] != [s for s, _ in design.build_plan(calibration, subset, gold, 5, np.random.default_rng(2))[4:]]
    assert plan == design.build_plan(calibration, subset, gold, 5, np.random.default_rng(1))
    with pytest.raises(ValueError, match="repeats"):
        design.build_plan(calibration, subset[:3], gold, 4, np.random.default_rng(1))


def test_balanced_subsets_spread_stimuli_and_methods_evenly():
    trials = [
        store.Stimulus(f"{m}{i:030d}", "s", "trial", "Set14", f"img{i}", m, "f", 1, 1, None)
        for i in range(14)
        for m in ("nearest", "bicubic", "srgan-vgg54", "hr")
    ]
    order = design.study_order(trials, seed=3)
    assert sorted(order) == sorted(s.id for s in trials)
    method = {s.id: s.method for s in trials}
    for raters in (1, 5, 7, 13):
        counts = Counter()
        for seq in range(raters):
            subset = design.balanced_subset(order, seq, 10)
            assert len(subset) == len(set(subset)) == 10
            per_method = Counter(method[s] for s in subset)
            assert max(per_method.values()) - min(per_method.values()) <= 1
            counts.update(subset)
        planned = [counts[s.id] for s in trials]
        assert max(planned) - min(planned) <= 1
    assert design.balanced_subset(order, 4, None) == order


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "study.sqlite"
    make_study(path, images=4, calibration=2, gold=2, repeats=2, pause_every=3)
    return path


def answer_current(db, token: str, score: int = 3) -> sessions.Status:
    item = sessions.present(db, token)
    return sessions.answer(db, token, item.ticket, score)


def test_new_rater_plan_is_stored_and_replayed_exactly(db):
    token = sessions.new_rater(db)
    first = sessions.present(db, token)
    again = sessions.present(db, token)  # a reload shows the same image
    assert first.ticket == again.ticket and first.phase == "calibration" and first.expected in (1, 5)
    assert (first.step, first.steps) == (1, 4)
    tickets = []
    while (item := sessions.present(db, token)) is not None:
        tickets.append(item.ticket)
        sessions.answer(db, token, item.ticket, 4)
    st = sessions.status(db, token)
    assert st.finished and st.answered == st.total == 4 + 12 + 2 + 2
    with store.connect(db) as con:
        planned = [sessions.ticket_of(con, r["rater"], r["position"], r["stimulus"]) for r in con.execute("SELECT * FROM plan ORDER BY position")]
    assert tickets == planned
    table = store.read_ratings(db)
    assert table["phase"].value_counts().to_dict() == {"trial": 12, "calibration": 4, "repeat": 2, "gold": 2}
    assert (table["response_ms"] >= 0).all()


def whole_session(db, score: int) -> list[sessions.Item]:
    """Every presentation of a new rater's session, each answered with `score`."""
    token = sessions.new_rater(db)
    seen = []
    while (item := sessions.present(db, token)) is not None:
        seen.append(item)
        sessions.answer(db, token, item.ticket, score)
    return seen


def test_tickets_tell_neither_the_image_nor_a_repeat(db):
    seen = whole_session(db, 3)
    repeats = [i for i in seen if i.phase == "repeat"]
    assert repeats and len({i.ticket for i in seen}) == len(seen)  # a ticket of its own for each presentation
    for item in seen:
        assert item.stimulus not in item.ticket
    for repeat in repeats:
        first = next(i for i in seen if i.stimulus == repeat.stimulus and i.phase == "trial")
        assert first.ticket.split(":")[1] != repeat.ticket.split(":")[1]


def test_items_show_progress_and_calibration_anchor_only(db):
    seen = whole_session(db, 2)
    calibration = [i for i in seen if i.phase == "calibration"]
    rating = [i for i in seen if i.phase != "calibration"]
    assert sorted(i.expected for i in calibration) == [1, 1, 5, 5]
    assert all(i.expected is None for i in rating)  # gold items look like any other
    assert [(i.step, i.steps) for i in rating] == [(k, 16) for k in range(1, 17)]


def test_interludes_after_calibration_and_every_pause(db):
    token = sessions.new_rater(db)
    kinds = []
    while (item := sessions.present(db, token)) is not None:
        kinds.append(sessions.answer(db, token, item.ticket, 3).interlude())
    # 4 calibration answers, then 16 rated with a pause after every 3 (none after the last)
    expected = [None] * 3 + ["calibrated"] + [("pause" if k % 3 == 0 and k < 16 else None) for k in range(1, 17)]
    assert kinds == expected


def test_raters_get_disjoint_windows_and_unique_numbers(tmp_path):
    db = tmp_path / "study.sqlite"
    make_study(db, images=6, per_rater=6, repeats=0, calibration=1, gold=0)
    tokens: list[str] = []
    lock = threading.Lock()

    def join() -> None:
        token = sessions.new_rater(db)
        with lock:
            tokens.append(token)

    threads = [threading.Thread(target=join) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.connect(db) as con:
        seqs = sorted(r[0] for r in con.execute("SELECT seq FROM raters"))
        planned = Counter(r[0] for r in con.execute("SELECT stimulus FROM plan WHERE phase = 'trial'"))
    assert seqs == list(range(6))
    assert sorted(planned.values()) == [2] * 18  # 6 raters x 6 stimuli over 18 stimuli


def test_answers_only_the_current_shown_image(db):
    token = sessions.new_rater(db)
    with store.connect(db) as con:
        plan = [tuple(r) for r in con.execute("SELECT position, stimulus FROM plan ORDER BY position")]
    with store.connect(db) as con:
        ticket1, ticket2 = (sessions.ticket_of(con, token[:16], position, stimulus) for position, stimulus in plan[:2])
    before = dump(db)
    with pytest.raises(sessions.RatingRefused, match="not been shown"):
        sessions.answer(db, token, ticket1, 3)
    assert dump(db) == before
    item = sessions.present(db, token)
    assert item.ticket == ticket1
    with pytest.raises(sessions.RatingRefused, match="not the image"):  # skipping ahead
        sessions.answer(db, token, ticket2, 3)
    sessions.answer(db, token, ticket1, 3)
    after_first = dump(db)
    with pytest.raises(sessions.RatingRefused, match="already been rated"):  # replay
        sessions.answer(db, token, ticket1, 5)
    assert dump(db) == after_first


@pytest.mark.parametrize("score", [0, 6, -3, 2.5, float("nan"), True, "4", None])
def test_bad_scores_are_refused(db, score):
    token = sessions.new_rater(db)
    item = sessions.present(db, token)
    before = dump(db)
    with pytest.raises(sessions.RatingRefused, match="whole number from 1 to 5"):
        sessions.answer(db, token, item.ticket, score)
    assert dump(db) == before
    sessions.answer(db, token, item.ticket, 4.0)  # an integral float (what a number box sends) is fine


def test_forged_tampered_and_foreign_tokens_are_refused(db, tmp_path):
    alice, bob = sessions.new_rater(db), sessions.new_rater(db)
    item = sessions.present(db, alice)
    rater, mac = alice.split(".")
    other_db = tmp_path / "other.sqlite"
    make_study(other_db)
    stranger = sessions.new_rater(other_db)
    forged = [
        f"{rater}.{'0' * 32}",  # made-up signature
        f"{rater}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",  # one character changed
        f"{bob.split('.')[0]}.{mac}",  # alice's signature on bob's id
        f"{'f' * 16}.{mac}",
        stranger,  # genuine, but signed by another database
        "",
        None,
        alice + " ",
    ]
    before = dump(db)
    for token in forged:
        with pytest.raises(sessions.InvalidToken):
            sessions.answer(db, token, item.ticket, 3)
        with pytest.raises(sessions.InvalidToken):
            sessions.present(db, token)
    with pytest.raises(sessions.RatingRefused, match="names no image"):  # bob answering alice's image
        sessions.answer(db, bob, item.ticket, 3)
    assert dump(db) == before


@pytest.mark.parametrize("ticket", ["", "1", "1:", "0:" + "a" * 24, "1:" + "g" * 24, "1:abc", "1:" + "a" * 32, None, 5])
def test_malformed_and_unknown_tickets_are_refused(db, ticket):
    token = sessions.new_rater(db)
    sessions.present(db, token)
    before = dump(db)
    with pytest.raises(sessions.RatingRefused):
        sessions.answer(db, token, ticket, 3)
    with pytest.raises(sessions.RatingRefused, match="names no image"):  # well formed, but not this presentation's
        sessions.answer(db, token, "1:" + "a" * 24, 3)
    with pytest.raises(sessions.RatingRefused, match="names no image"):  # past the end of the plan
        sessions.answer(db, token, "9999:" + "a" * 24, 3)
    assert dump(db) == before


def test_no_study_and_finished_sessions(tmp_path, db):
    with pytest.raises(sessions.NoStudy, match="study.prepare"):
        sessions.new_rater(tmp_path / "empty.sqlite")
    token = sessions.new_rater(db)
    while (item := sessions.present(db, token)) is not None:
        last = item.ticket
        sessions.answer(db, token, item.ticket, 3)
    with pytest.raises(sessions.RatingRefused, match="complete"):
        sessions.answer(db, token, last, 3)
    assert sessions.status(db, token).rater == token.split(".")[0]


def test_a_closed_study_takes_no_new_rater_but_keeps_the_ones_it_has(db):
    token = sessions.new_rater(db)
    with store.connect(db) as con:
        store.set_setting(con, store.latest_study(con), "closed", "1")
    assert sessions.closed_to_new_raters(db)
    with pytest.raises(sessions.JoinRefused, match="closed to new participants"):
        sessions.new_rater(db)
    assert sessions.present(db, token) is not None  # who joined before goes on
