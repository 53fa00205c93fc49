"""Where trained weights came from: their model card (recipe, schedule, every run's hardware and precision,
commit, and the starting weights, with the `git show` line that gets them back)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
from dataclasses import asdict
from pathlib import Path

import torch

from srgan_core.checkpoint import Progress
from srgan_core.download import sha256_file
from srgan_core.losses import ADVERSARIAL_WEIGHT
from srgan_core.method_specs import SPECS, Recipe
from srgan_core.paths import REPO_ROOT
from srgan_core.train_config import Schedule, TrainConfig


def hardware(device: torch.device) -> str:
    """What a run trained on: the GPU's name, or the CPU's model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    threads = torch.get_num_threads()
    return f"{model}, {threads} thread{'' if threads == 1 else 's'}"


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def git_commit() -> str | None:
    return _git("rev-parse", "HEAD")


def committed_copy(path: Path, sha256: str) -> str | None:
    """The newest commit holding `path` (inside the repository) with exactly this content (by sha256), or None."""
    resolved = path.resolve()
    if not resolved.is_relative_to(REPO_ROOT):
        return None
    relative = resolved.relative_to(REPO_ROOT).as_posix()
    for commit in (_git("log", "--format=%H", "--", relative) or "").split():
        content = subprocess.run(["git", "show", f"{commit}:{relative}"], cwd=REPO_ROOT, capture_output=True)
        if content.returncode == 0 and hashlib.sha256(content.stdout).hexdigest() == sha256:
            return commit
    return None


def git_show_command(commit: str, path: str, method: str | None, iterations: int | None) -> str:
    """The shell line that writes the weights committed as `commit:path` to runs/<method>-<iterations>.safetensors."""
    return f"mkdir -p runs && git show {commit}:{path} > runs/{method}-{iterations}.safetensors"


def describe_init(path: Path) -> dict:
    """The starting weights of a run, for its model card: file, sha256, their own card's iterations and time, and
    (when the repository holds them) the `git show` line that gets exactly these weights back."""
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    resolved = path.resolve()
    shown = resolved.relative_to(REPO_ROOT).as_posix() if resolved.is_relative_to(REPO_ROOT) else str(path)
    sha256 = sha256_file(path)
    info = {
        "weights": shown, "sha256": sha256, "method": card.get("method"), "iterations": card.get("iterations"),
        "wall_seconds": card.get("wall_seconds"), "commit": card.get("commit"),
    }
    commit = committed_copy(path, sha256)
    if commit is not None:
        info["git_show"] = git_show_command(commit, shown, card.get("method", path.stem), card.get("iterations"))
    return info


def link_init(card: dict) -> bool:
    """Point a card's starting weights at the committed file they are (the history of
    results/models/<method>.safetensors, found by sha256) and add the `git show` line; False if none is."""
    init = card.get("init")
    if not init or init.get("method") not in SPECS:
        return False
    shipped = SPECS[init["method"]].weights_file.relative_to(REPO_ROOT).as_posix()
    commit = committed_copy(REPO_ROOT / shipped, init["sha256"])
    if commit is None:
        return False
    init["weights"] = shipped
    init["git_show"] = git_show_command(commit, shipped, init["method"], init["iterations"])
    card["rerun"] = rerun(card)
    return True


def model_card(
    config: TrainConfig, recipe: Recipe, schedule: Schedule, progress: Progress, device: torch.device, processes: int,
    precision: str, data: list[str],
) -> dict:
    """The JSON model card of weights trained by `srgan_core.train`: how to read and how to remake them."""
    adversarial = recipe.adversarial
    card = {
        "method": config.method,
        "iterations": progress.iteration,
        "preset": config.preset,
        "schedule": asdict(schedule),
        "recipe": asdict(recipe),
        "adversarial_weight": ADVERSARIAL_WEIGHT if adversarial else 0.0,
        "adversarial_reduction": config.adversarial_reduction if adversarial else None,
        "discriminator_batch": config.discriminator_batch if adversarial else None,
        "seed": config.seed,
        "ema_decay": config.ema_decay or None,  # set: the weights are a moving average of the trained generator
        "data": data,
        "device": str(device),
        "hardware": hardware(device),
        "processes": processes,
        "samples_seen": progress.samples_seen,
        "wall_seconds": round(progress.wall_seconds, 1),
        "precision": precision,
        "commit": git_commit(),
        "runs": progress.runs,
        "init": progress.starting_weights,
        "log": f"results/training/{config.method}_log.csv",
    }
    card["rerun"] = rerun(card)
    return card


def write_card(path: Path, card: dict) -> None:
    """Write a model card atomically."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)


def rerun(card: dict) -> list[str]:
    """Shell lines that train the card's recipe again, into runs/: get the starting weights, then train with the schedule of
    the card's last run, in one stage per moving-average setting (a run that began the average at iteration N resumes the
    stage before it there). The shipped weights may come from more resumed runs, each with a fresh optimiser."""
    schedule, init = card["schedule"], card.get("init") or {}
    name = f"{card['method']}-rerun"
    common = [
        "python -m srgan_core.train", f"--method {card['method']}", f"--preset {card['preset']}",
        f"--batch-size {schedule['batch_size']}", f"--crop {schedule['crop']}", f"--lr {schedule['lr']}",
        f"--decay-at {schedule['decay_at'] or 0}", f"--seed {card['seed']}",
        f"--run-dir runs/{name}", f"--out runs/{name}.safetensors",  # beside, not over, the shipped weights and their run
    ]
    if card.get("adversarial_reduction"):
        common += [f"--adversarial-reduction {card['adversarial_reduction']}", f"--discriminator-batch {card['discriminator_batch']}"]
    lines, start = [], []
    if init.get("git_show"):
        lines.append(init["git_show"])
        start = [f"--init {init['git_show'].rsplit('> ', 1)[1]}"]
    elif init:
        start = [f"--init {init['weights']}"]
    for stage, (end, decay) in enumerate(ema_stages(card)):
        command = [*common, f"--iters {end}", *(start if stage == 0 else ["--resume"])]
        if decay:
            command.append(f"--ema-decay {decay:g}")
        lines.append(" ".join(command))
    return lines


def ema_stages(card: dict) -> list[tuple[int, float | None]]:
    """(last iteration, moving-average decay) of each stretch of the card's runs that kept one setting; one stretch, with
    the card's setting, when the runs do not say at which iteration a setting began."""
    changes: list[tuple[int | None, float | None]] = []  # (iteration the setting began at, its decay)
    for run in card["runs"]:
        decay = run_ema_decay(run["command"])
        if not changes or decay != changes[-1][1]:
            changes.append((run.get("from_iteration") if changes else 0, decay))
    if not changes or changes[-1][1] != card.get("ema_decay") or any(begun is None for begun, _ in changes):
        return [(card["iterations"], card.get("ema_decay"))]
    ends = [begun for begun, _ in changes[1:]] + [card["iterations"]]
    return [(end, decay) for end, (_, decay) in zip(ends, changes)]


def run_ema_decay(command: str) -> float | None:
    """The --ema-decay a recorded train command set (None for none or 0)."""
    words = shlex.split(command)
    for i, word in enumerate(words):
        if word.startswith("--ema-decay="):
            return float(word.split("=", 1)[1]) or None
        if word == "--ema-decay" and i + 1 < len(words):
            return float(words[i + 1]) or None
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m srgan_core.provenance CARD.json ...`: link each card's starting weights to the commit that holds them."""
    import argparse
    import sys

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("cards", type=Path, nargs="+", help="model cards (results/models/*.json)")
    args = p.parse_args(argv)
    status = 0
    for path in args.cards:
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"{path}: not a readable model card ({exc})", file=sys.stderr)
            status = 1
            continue
        if link_init(card):
            write_card(path, card)
            print(f"{path}: {card['init']['git_show']}")
        elif card.get("init"):
            print(f"{path}: its starting weights (sha256 {card['init']['sha256'][:12]}...) are in no commit of "
                  f"results/models/{card['init'].get('method')}.safetensors: commit them first", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
