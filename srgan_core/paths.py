"""Where the project's files and the shared data live."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "results" / "models"
TRAINING_DIR = REPO_ROOT / "results" / "training"  # shipped training logs and curves
RUNS_DIR = REPO_ROOT / "runs"  # training checkpoints (gitignored)


def default_data_root() -> Path | None:
    """`SRGAN_DATA`, else `../shared/data` beside the repo when it exists, else None."""
    env = os.environ.get("SRGAN_DATA")
    if env:
        return Path(env)
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else None
