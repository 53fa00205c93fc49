"""The study design: which trial stimuli each rater rates, and the order of each rater's plan.

Designs (``config["design"]`` of a study):

- ``blocks`` (the default, the paper's): a rater gets whole images, every method's version of each image
  they get. Rater number k takes the k-th window of a study-wide random order of images, so every image
  is planned for equally many raters (+- 1), and every (rater, image) is a complete block for the paired
  tests and the Friedman test.
- ``incomplete``: rater k takes the k-th window of stimuli from an order that cycles through the
  methods, so a rater sees each method about equally often but rarely every version of one image.

Spacing (``config["spacing"]``, K): in a plan, at least K other presentations lie between any two
presentations of one image: two methods' versions of it, or a stimulus and its repeat. The
calibration images come first, in random order, and are not spaced (they are not rated). A spacing
is possible exactly when ``(m - 1) * (K + 1) + c <= L`` (L presentations after calibration, m the most
presentations of one image, c the number of images with m): the task-scheduling bound.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from study.schema import PHASES
from study.store import Stimulus

DESIGNS = ("blocks", "incomplete")
DEFAULT_DESIGN = "blocks"
MAX_DEFAULT_SPACING = 20  # beyond this, spacing adds little against recall and costs randomness
LEGACY_REPEAT_GAP = 5  # the spacing of plans built without image groups (studies prepared before designs)
_ATTEMPTS = 50


class DesignError(ValueError):
    """A design whose plans cannot keep the spacing rules (or is otherwise impossible)."""


def image_key(s: Stimulus) -> str:
    """What makes two stimuli versions of one image."""
    return f"{s.dataset}/{s.image}"


def study_order(trials: Sequence[Stimulus], seed: int, design: str = DEFAULT_DESIGN) -> list[str]:
    """The study-wide order the raters' windows are cut from.

    ``blocks``: the images in random order, each image's stimuli together. ``incomplete``: each method's
    stimuli shuffled, then interleaved method by method (a window holds every method about equally often).
    """
    rng = np.random.default_rng(seed)
    if design == "blocks":
        by_image: dict[str, list[str]] = {}
        for s in trials:
            by_image.setdefault(image_key(s), []).append(s.id)
        images = sorted(by_image)
        return [sid for i in rng.permutation(len(images)) for sid in sorted(by_image[images[i]])]
    if design != "incomplete":
        raise DesignError(f"unknown design {design!r}; choose from {', '.join(DESIGNS)}")
    by_method: dict[str, list[str]] = {}
    for s in trials:
        by_method.setdefault(s.method, []).append(s.id)
    columns = [list(rng.permutation(ids)) for _, ids in sorted(by_method.items())]
    longest = max((len(c) for c in columns), default=0)
    return [str(c[i]) for i in range(longest) for c in columns if i < len(c)]


def balanced_subset(order: list[str], seq: int, per_rater: int | None) -> list[str]:
    """Rater `seq`'s share: the `seq`-th window of `per_rater` consecutive ids, wrapping round.
    Over any number of raters the times each id is planned differ by at most one. In the ``blocks``
    design `per_rater` is a multiple of the methods, so every window holds whole images."""
    if per_rater is None or per_rater >= len(order):
        return list(order)
    start = seq * per_rater
    return [order[(start + i) % len(order)] for i in range(per_rater)]


def windows(n_trials: int, per_rater: int | None) -> int:
    """How many different windows `balanced_subset` cuts (rater k and rater k + windows get the same)."""
    if per_rater is None or per_rater >= n_trials:
        return 1
    return n_trials // math.gcd(n_trials, per_rater)


def choose_repeats(subset: Sequence[str], groups: Mapping[str, Hashable], repeats: int, rng: np.random.Generator) -> list[str]:
    """`repeats` stimuli of `subset` to show twice, from as many different images as possible."""
    if repeats > len(subset):
        raise ValueError(f"{repeats} repeats asked but the rater sees only {len(subset)} stimuli")
    shuffled = [str(s) for s in rng.permutation(list(subset))]
    seen: Counter = Counter()
    rank = []
    for s in shuffled:
        rank.append(seen[groups[s]])
        seen[groups[s]] += 1
    by_round = sorted(range(len(shuffled)), key=lambda i: rank[i])  # stable: one per image first
    return [shuffled[i] for i in by_round[:repeats]]


def worst_group_sizes(sizes: Sequence[int], repeats: int) -> list[int]:
    """Presentations per image when `repeats` repeats land, one per image per round, on the largest images."""
    sizes = sorted(sizes, reverse=True)
    left = repeats
    while left > 0 and sizes:
        take = min(left, len(sizes))
        for i in range(take):
            sizes[i] += 1
        left -= take
    return sizes


@dataclass(frozen=True)
class SpacingLimit:
    """The largest spacing every rater's plan can keep, and the plan that limits it."""

    spacing: int | None  # None: no image is presented twice to any rater, so any spacing holds
    presentations: int  # after calibration, in the limiting plan
    largest: int  # presentations of its most-shown image
    images: int  # images with that many

    def explain(self, asked: int) -> str:
        return (
            f"a rater's plan has {self.presentations} presentations after calibration, {self.images} image(s) "
            f"shown {self.largest} times (methods and repeats): at most {self.spacing} others fit between two "
            f"of one image, not {asked}"
        )


def spacing_limit(trials: Sequence[Stimulus], config: Mapping) -> SpacingLimit:
    """The largest K that every rater's plan keeps, whatever window they get and wherever their repeats
    fall (the worst case: repeats on the most-shown images)."""
    order = study_order(trials, config["seed"], config["design"])
    key = {s.id: image_key(s) for s in trials}
    worst = SpacingLimit(None, 0, 1, 0)
    for seq in range(windows(len(order), config["per_rater"])):
        per_image = Counter(key[s] for s in balanced_subset(order, seq, config["per_rater"]))
        sizes = worst_group_sizes(list(per_image.values()), config["repeats"]) + [1] * config["gold"]
        limit = max_spacing(sizes)
        if limit is not None and (worst.spacing is None or limit < worst.spacing):
            worst = SpacingLimit(limit, sum(sizes), sizes[0], sizes.count(sizes[0]))
    return worst


def default_spacing(limit: SpacingLimit) -> int:
    """Half the largest possible spacing (at the limit the order is nearly fixed), at most
    `MAX_DEFAULT_SPACING`."""
    return MAX_DEFAULT_SPACING if limit.spacing is None else min(limit.spacing // 2, MAX_DEFAULT_SPACING)


def max_spacing(sizes: Sequence[int]) -> int | None:
    """The largest K for which presentations grouped by image (`sizes`, one count per image or gold
    item) can be ordered with K others between any two of a group; None when no group repeats."""
    m = max(sizes, default=0)
    if m <= 1:
        return None
    c = sum(1 for s in sizes if s == m)
    return (sum(sizes) - c) // (m - 1) - 1


def spaced_order(labels: Sequence[Hashable], spacing: int, rng: np.random.Generator) -> list[int]:
    """A random order of the indices of `labels` with at least `spacing` others between equal labels.

    Each place is filled from the labels free there, drawn in proportion to the square of what is left
    of each (so the larger groups do not run out of room); a draw that gets stuck is started afresh,
    and after many the largest group free is always taken (the schedule that fits whenever any does).
    DesignError when even that fails.
    """
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(labels):
        members.setdefault(g, []).append(i)
    names = list(members)
    for attempt in range(_ATTEMPTS + 1):
        order = _draw(names, [len(members[g]) for g in names], spacing, rng, greedy=attempt == _ATTEMPTS)
        if order is not None:
            queues = {g: [int(i) for i in rng.permutation(members[g])] for g in names}
            return [queues[names[k]].pop() for k in order]
    sizes = sorted((len(v) for v in members.values()), reverse=True)
    raise DesignError(
        f"no order keeps {spacing} presentations between two of one image: {len(labels)} presentations, "
        f"the largest image has {sizes[0]}; at most {max_spacing(sizes)} fit"
    )


def _draw(names: list, counts: list[int], spacing: int, rng: np.random.Generator, greedy: bool) -> list[int] | None:
    left = np.array(counts, dtype=float)
    free_at = np.zeros(len(names), dtype=int)
    order = []
    for place in range(int(left.sum())):
        free = (left > 0) & (free_at <= place)
        if not free.any():
            return None
        if greedy:
            best = np.flatnonzero(free & (left == left[free].max()))
            k = int(rng.choice(best))
        else:
            weights = np.where(free, left**2, 0.0)
            k = int(rng.choice(len(names), p=weights / weights.sum()))
        order.append(k)
        left[k] -= 1
        free_at[k] = place + spacing + 1
    return order


def build_plan(
    calibration: list[str],
    subset: list[str],
    gold: list[str],
    repeats: int,
    rng: np.random.Generator,
    groups: Mapping[str, Hashable] | None = None,
    spacing: int = LEGACY_REPEAT_GAP,
) -> list[tuple[str, str]]:
    """The ordered (stimulus, phase) presentations of one rater: calibration first (random order), then
    the subset, its repeats and the gold items in a random order with at least `spacing` presentations
    between two of one image (`groups` maps a stimulus to its image; without it each stimulus is its own
    image, so only a stimulus and its repeat are spaced). A repeat always follows its first showing.

    The gold items go in last, each at a uniformly random place (a place between two of one image only widens
    their gap): drawn with the images, they would land late, since the spaced draw takes larger groups first.
    Only when the images cannot be spaced without the gold items between them are these drawn together."""
    groups = dict(groups) if groups is not None else {s: s for s in subset}
    again = choose_repeats(subset, groups, repeats, rng) if repeats else []
    items = [(str(s), "trial") for s in subset] + [(s, "repeat") for s in again]
    golds = [(str(g), "gold") for g in rng.permutation(gold)]
    try:
        ordered = _spaced_items(items, groups, spacing, rng)
    except DesignError:
        ordered = _spaced_items(items + golds, groups, spacing, rng)
    else:
        for item in golds:
            ordered.insert(int(rng.integers(len(ordered) + 1)), item)
    return [(str(c), "calibration") for c in rng.permutation(calibration)] + ordered


def _spaced_items(items: list[tuple[str, str]], groups: Mapping[str, Hashable], spacing: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """`items` in a spaced random order (`spaced_order` by image; a gold item is an image of its own). An image's
    places are interchangeable for spacing: its items take them in random order, but for a repeat drawn before its
    first showing, which swaps places with it."""
    labels = [groups[s] if phase != "gold" else ("gold", s) for s, phase in items]
    order = spaced_order(labels, spacing, rng)
    ordered = [items[i] for i in order]
    places: dict[Hashable, list[int]] = {}
    for place, i in enumerate(order):
        places.setdefault(labels[i], []).append(place)
    for where in places.values():
        for p, item in zip(where, [ordered[p] for p in rng.permutation(where)]):
            ordered[p] = item
        first = {ordered[p][0]: p for p in where if ordered[p][1] == "trial"}
        for p in where:
            s, phase = ordered[p]
            if phase == "repeat" and first[s] > p:
                ordered[p], ordered[first[s]] = ordered[first[s]], ordered[p]
    return ordered


def spacing_violations(plan: Sequence[tuple[str, str]], groups: Mapping[str, Hashable], spacing: int) -> list[str]:
    """Every place where `plan` (after calibration) breaks the spacing or a repeat precedes its first showing."""
    last: dict[Hashable, int] = {}
    first_showing: dict[str, int] = {}
    problems = []
    for place, (s, phase) in enumerate(plan, start=1):
        if phase == "calibration":
            continue
        label = ("gold", s) if phase == "gold" else groups[s]
        if label in last and place - last[label] - 1 < spacing:
            problems.append(f"positions {last[label]} and {place}: {place - last[label] - 1} between two of {label}")
        last[label] = place
        if phase == "trial":
            first_showing[s] = place
        elif phase == "repeat" and s not in first_showing:
            problems.append(f"position {place}: repeat of {s} before its first showing")
    return problems


def presentation_counts(plan: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Presentations of each phase, and in all: the one source of every count a rater is told."""
    counts = Counter(phase for _, phase in plan)
    return {p: counts.get(p, 0) for p in PHASES} | {"total": len(plan)}


def rater_plan(
    trials: Sequence[Stimulus], calibration: Sequence[str], gold: Sequence[str], config: Mapping, seq: int
) -> list[tuple[str, str]]:
    """The plan of rater number `seq` of a study with this `config` (what `sessions.new_rater` stores).
    A study prepared before designs existed (no ``design`` in its config) keeps its method-cycling windows and
    spaces only a stimulus and its repeat, as its raters' plans were built then."""
    legacy = "design" not in config
    design = config.get("design", "incomplete")
    spacing = config.get("spacing", LEGACY_REPEAT_GAP)
    subset = balanced_subset(study_order(trials, config["seed"], design), seq, config["per_rater"])
    groups = None if legacy else {s.id: image_key(s) for s in trials}
    rng = np.random.default_rng([config["seed"], seq])
    return build_plan(list(calibration), subset, list(gold), config["repeats"], rng, groups, spacing)
