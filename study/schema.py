"""The MOS study's shared vocabulary: the ratings table's columns, the phases and stimulus kinds, the score
scale and the original image's method name (whose home is srgan_core's method table). A leaf: it imports
nothing from study/ or demo/."""

from __future__ import annotations

from srgan_core.method_specs import ORIGINAL as ORIGINAL  # re-exported for study/: the original's method name

# The long-format ratings table, one row per answer (the database export and the CSV study.analyze reads).
COLUMNS = (
    "study",
    "rater",
    "stimulus",
    "dataset",
    "image",
    "method",
    "phase",
    "score",
    "shown_at",
    "response_ms",
    "position",
)
# Why a rater is shown a stimulus: the anchors first, a first showing, a second showing, an attention check.
PHASES = ("calibration", "trial", "repeat", "gold")
# What a stimulus is for: a studied method's output, a calibration anchor, or a gold item.
KINDS = ("trial", "calibration", "gold")
# The paper's absolute category rating scale (section 3.3): each score with its word.
SCORE_LABELS = {1: "Bad", 2: "Poor", 3: "Fair", 4: "Good", 5: "Excellent"}
SCORES = tuple(SCORE_LABELS)
# The scale in words, for consent texts and reports: "1 (bad) to 5 (excellent)".
SCORE_RANGE = f"{SCORES[0]} ({SCORE_LABELS[SCORES[0]].lower()}) to {SCORES[-1]} ({SCORE_LABELS[SCORES[-1]].lower()})"
