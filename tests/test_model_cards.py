"""Every shipped model card says how its weights were made, and a user can get their starting weights and rerun them."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from srgan_core import train
from srgan_core.paths import MODELS_DIR, REPO_ROOT

CARDS = sorted(MODELS_DIR.glob("*.json"))


def git_history_available() -> bool:
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO_ROOT, capture_output=True, text=True)
    return shallow.returncode == 0 and shallow.stdout.strip() == "false"


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_card_states_hardware_precision_batch_iterations_and_samples(path: Path) -> None:
    card = json.loads(path.read_text())
    assert card["hardware"] and card["precision"] and card["iterations"] > 0
    assert card["schedule"]["batch_size"] > 0 and card["samples_seen"] >= card["iterations"]
    assert card["runs"] and all(run["command"].startswith("python -m srgan_core.train ") and run["batch_size"] for run in card["runs"])


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_card_rerun_commands_parse_and_never_overwrite_the_shipped_weights(path: Path) -> None:
    card = json.loads(path.read_text())
    *fetch, command = card["rerun"]
    args = train.parse_args(shlex.split(command)[3:])
    assert args.method == card["method"] and args.iters == card["iterations"] and args.out.parts[0] == "runs"
    if card.get("init"):
        assert fetch == [card["init"]["git_show"]] and str(args.init_weights) == card["init"]["git_show"].rsplit("> ", 1)[1]


@pytest.mark.skipif(not git_history_available(), reason="needs the repository's full git history")
@pytest.mark.parametrize("path", [p for p in CARDS if json.loads(p.read_text()).get("init")], ids=lambda p: p.stem)
def test_card_starting_weights_come_back_from_git_exactly(path: Path) -> None:
    init = json.loads(path.read_text())["init"]
    spec = init["git_show"].split("git show ", 1)[1].split(" > ", 1)[0]
    content = subprocess.run(["git", "show", spec], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    assert hashlib.sha256(content).hexdigest() == init["sha256"]
