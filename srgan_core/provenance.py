"""Where trained weights came from: their model card (recipe, schedule, every run's hardware and precision,
commit, and the starting weights, with the `git show` line that gets them back)."""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from srgan_core.checkpoint import Progress, recorded_progress
from srgan_core.download import sha256_file
from srgan_core.losses import ADVERSARIAL_WEIGHT
from srgan_core.method_specs import SPECS, Recipe
from srgan_core.paths import (
    DATA_ROOT_DEFAULT,
    REPO_ROOT,
    RUNS_DIR,
    replace_text,
    shipped_log,
    shown_path,
)
from srgan_core.train_config import Schedule, TrainConfig, scaled_lr, schedule_for
from srgan_core.vgg import ORIGINAL, TORCHVISION


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
        "samples_seen": recorded_progress(card, card["iterations"], card.get("commands", [])).samples_seen if "iterations" in card else None,
        "wall_seconds": card.get("wall_seconds"), "commit": card.get("commit"),
    }
    commit = committed_copy(path, sha256)
    if commit is not None:
        info["git_show"] = git_show_command(commit, shown, card.get("method", path.stem), card.get("iterations"))
    return info


def describe_vgg(source: str) -> dict:
    """The VGG19 a run's loss used, for its model card: torchvision's retrained weights, or the file and its sha256."""
    if source == TORCHVISION:
        return {"weights": TORCHVISION}
    return {"weights": shown_path(Path(source).resolve()), "sha256": sha256_file(Path(source))}  # relative when in the clone


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
    data: list[str],
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
        "hardware": across_runs(progress.runs, "hardware", progress.iteration),
        "processes": processes,
        "samples_seen": progress.samples_seen,
        "wall_seconds": round(progress.wall_seconds, 1),
        "precision": across_runs(progress.runs, "precision", progress.iteration),
        "commit": git_commit(),
        "runs": progress.runs,
        "init": progress.starting_weights,
        "log": shipped_log(config.method).relative_to(REPO_ROOT).as_posix() if config.out is None else str(run_log(config)),  # shipped, or this run's
    }
    card["rerun"] = rerun(card)
    return card


def run_log(config: TrainConfig) -> Path:
    """The training log of a run (its --run-dir's log.csv)."""
    return (config.run_dir or RUNS_DIR / config.method) / "log.csv"


def across_runs(runs: list[dict], key: str, iterations: int) -> str:
    """A run field (hardware, precision) over all of a card's runs: its value when the runs agree, else each value
    with the iterations trained under it, in order of first use. Runs that did not record where they began and
    ended (before session 7) share the iterations the others leave (listed without a count when their values differ);
    a run without the field reads "not recorded"."""
    counted: dict[str, int] = {}
    unrecorded: set[str] = set()
    for run in runs:
        value = run.get(key) or "not recorded"
        counted.setdefault(value, 0)
        if run.get("from_iteration") is None or run.get("iterations") is None:
            unrecorded.add(value)
        else:
            counted[value] += run["iterations"] - run["from_iteration"]
    if len(counted) == 1:
        return next(iter(counted))
    if len(unrecorded) == 1:
        counted[unrecorded.pop()] += iterations - sum(counted.values())
    return "; ".join(f"{value} ({count:,} iterations)" if value not in unrecorded else value for value, count in counted.items())


def write_card(path: Path, card: dict) -> None:
    """Write a model card atomically."""
    replace_text(path, json.dumps(card, indent=2) + "\n")


def rerun(card: dict) -> list[str]:
    """Shell lines that train the card's recipe again, into runs/: get the starting weights, then one stage per stretch
    of runs that kept one setting (batch size, rate, drop, moving average), each with its own. The shipped weights may
    come from more resumed runs, each with a fresh optimiser."""
    schedule, init = card["schedule"], card.get("init") or {}
    name = f"{card['method']}-rerun"
    common = [
        "python -m srgan_core.train", f"--method {card['method']}", f"--preset {card['preset']}", f"--crop {schedule['crop']}",
        f"--seed {card['seed']}", f"--run-dir runs/{name}", f"--out runs/{name}.safetensors",  # beside, not over, the shipped weights
    ]
    if card.get("adversarial_reduction"):
        common += [f"--adversarial-reduction {card['adversarial_reduction']}", f"--discriminator-batch {card['discriminator_batch']}"]
    lines, start = [], []
    if init.get("git_show"):
        lines.append(init["git_show"])
        start = [f"--init {init['git_show'].rsplit('> ', 1)[1]}"]
    elif init:
        start = [f"--init {init['weights']}"]
    before = RunSettings(0, 0.0, None, None)  # a bare --resume keeps the run's moving average, --amp and VGG19: a
    for stage, (end, settings) in enumerate(stages(card)):  # stage names its own where it or the one before is not the default
        command = [*common, f"--batch-size {settings.batch_size}", f"--lr {settings.lr}", f"--decay-at {settings.decay_at or 0}",
                   f"--iters {end}", *(start if stage == 0 else ["--resume"])]
        if settings.ema_decay or before.ema_decay:
            command.append(f"--ema-decay {settings.ema_decay or 0.0!r}")  # every digit: the GPU campaign's decays are not round
        if settings.amp or before.amp:
            command.append(f"--amp {settings.amp or 'auto'}")
        if settings.vgg_weights or before.vgg_weights:
            command.append(f"--vgg-weights {settings.vgg_weights or ORIGINAL}")
        lines.append(" ".join(command))
        before = settings
    return lines


@dataclass(frozen=True)
class RunSettings:
    """What a stretch of training ran with."""
    batch_size: int
    lr: float
    decay_at: int | None
    ema_decay: float | None
    amp: str | None = None  # the --amp that gives the precision the run recorded; None = the default (auto)
    vgg_weights: str | None = None  # TORCHVISION when the run's VGG loss used torchvision's VGG19; None = the original


def stages(card: dict) -> list[tuple[int, RunSettings]]:
    """(last iteration, settings) of each stretch of the card's runs that kept one setting. A stretch can end only where
    the next run recorded its first iteration (or the training log shows it: `runs_begun_from_log`); runs that did
    not are folded into the stretch before, which takes the last one's settings. One stretch with the card's own
    settings when the runs end on another moving average than the card's (they disagree)."""
    found: list[tuple[int, RunSettings]] = []  # (iteration the stretch began at, its settings)
    for run in runs_begun_from_log(card):
        settings, begun = run_settings(card["method"], run), run.get("from_iteration")
        if found and settings == found[-1][1]:
            continue
        if found and begun is None:
            found[-1] = (found[-1][0], settings)
        else:
            found.append((begun or 0, settings))
    if not found or found[-1][1].ema_decay != card.get("ema_decay"):
        schedule = card["schedule"]
        return [(card["iterations"], RunSettings(schedule["batch_size"], schedule["lr"], schedule["decay_at"], card.get("ema_decay")))]
    ends = [begun for begun, _ in found[1:]] + [card["iterations"]]
    return [(end, settings) for end, (_, settings) in zip(ends, found)]


def runs_begun_from_log(card: dict) -> list[dict]:
    """The card's runs, where the first ones, which did not record where they began (before session 7), get it from the
    card's training log when their settings differ: a resumed run restarts its schedule, so the logged rate rises where
    it began, and drops 10x only at its --decay-at. Each stretch between rises goes to the next of those runs whose rate
    and drop it shows; the others left nothing in the weights and are left out. The runs as they are when the log is
    missing or does not fit them."""
    runs = card["runs"]
    recorded = next((k for k, run in enumerate(runs) if run.get("from_iteration") is not None), len(runs))
    settings = [run_settings(card["method"], run) for run in runs[:recorded]]
    if len(set(settings)) < 2 or not card.get("log"):
        return runs
    try:
        log = pd.read_csv(REPO_ROOT / card["log"], usecols=["iteration", "lr"])
    except (OSError, ValueError):
        return runs
    end = runs[recorded]["from_iteration"] if recorded < len(runs) else card["iterations"]
    log = log[log["iteration"] <= end].reset_index(drop=True)
    begins = [0, *(int(log["iteration"][row - 1]) for row in log.index[log["lr"].diff() > 0])]
    begun: dict[int, int] = {}  # run index -> the iteration it began at
    for begin, stop in zip(begins, [*begins[1:], end]):
        stretch = log[(log["iteration"] > begin) & (log["iteration"] <= stop)]
        if stretch.empty:
            return runs
        match = next((k for k in range(max(begun, default=-1) + 1, recorded) if _log_shows(stretch, settings[k])), None)
        if match is None:
            return runs
        begun[match] = begin
    return [{**runs[k], "from_iteration": begin} for k, begin in begun.items()] + runs[recorded:]


def _log_shows(stretch: pd.DataFrame, run: RunSettings) -> bool:
    """Whether every logged rate of a stretch is the one `run` trains at there (10x lower from --decay-at on: logs of
    that time showed the dropped rate from the --decay-at row itself, the only logs this is used on)."""
    dropped = run.decay_at is not None and stretch["iteration"] >= run.decay_at
    return bool(np.allclose(stretch["lr"], np.where(dropped, run.lr * 0.1, run.lr), rtol=1e-6, atol=0))


def run_settings(method: str, run: dict) -> RunSettings:
    """A recorded run's settings: what the run recorded, else its command's flags, else its preset's defaults."""
    command = run["command"]
    base = schedule_for(method, command_flag(command, "--preset") or TrainConfig.preset)
    batch = run.get("batch_size") or int(command_flag(command, "--batch-size") or base.batch_size)
    lr = run.get("lr") or float(command_flag(command, "--lr") or scaled_lr(base.lr, batch))
    decay = command_flag(command, "--decay-at")
    if "decay_at" not in run:  # runs before session 27 recorded no drop: their command's, else the preset's
        run = {**run, "decay_at": (int(decay) or None) if decay is not None else base.decay_at}
    ema = run["ema_decay"] if "ema_decay" in run else command_flag(command, "--ema-decay")  # recorded since session 27
    torchvision = (run.get("vgg19") or {}).get("weights") == TORCHVISION or command_flag(command, "--vgg-weights") == TORCHVISION
    return RunSettings(batch, lr, run["decay_at"], float(ema or 0) or None, amp_for(run.get("precision", "")), TORCHVISION if torchvision else None)


def amp_for(precision: str) -> str | None:
    """The --amp that runs a step in the precision a run recorded (`Trainer.precision`): "off" for float32 throughout
    (also what auto gave on hardware without native bfloat16), "losses" for a generator in float32, None for auto."""
    if precision == "float32":
        return "off"
    return "losses" if "generator float32" in precision or "no loss network" in precision else None


def command_flag(command: str, flag: str) -> str | None:
    """The value a recorded command gave a flag (`--flag VALUE` or `--flag=VALUE`), or None."""
    words = shlex.split(command)
    for i, word in enumerate(words):
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
        if word == flag and i + 1 < len(words):
            return words[i + 1]
    return None


def score_card(path: Path, card: dict, data_root: Path | None) -> None:
    """Fill the card's `benchmarks` block from the weights beside it (CARD.safetensors), as a run that ends by
    --iters or --time-budget does; a run stopped by a signal skips that evaluation."""
    from safetensors.torch import load_file

    from srgan_core.evaluate import card_benchmarks
    from srgan_core.models import Generator

    generator = Generator()
    generator.load_state_dict(load_file(str(path.with_suffix(".safetensors"))))
    card["benchmarks"] = card_benchmarks(generator.eval(), data_root)


def main(argv: list[str] | None = None) -> int:
    """`python -m srgan_core.provenance CARD.json ...`: link each card's starting weights to the commit that holds them;
    with --score, also score the card's weights on Set5, Set14 and BSD100 into its `benchmarks` block."""
    import argparse
    import sys

    from safetensors import SafetensorError

    p = argparse.ArgumentParser(prog="python -m srgan_core.provenance", description=main.__doc__)
    p.add_argument("cards", type=Path, nargs="+", help="model cards (results/models/*.json)")
    p.add_argument("--score", action="store_true", help="write each card's benchmarks block (PSNR/SSIM of the .safetensors beside it)")
    p.add_argument("--data-root", type=Path, help=f"folder with benchmarks/Set5, Set14, BSD100 (default: {DATA_ROOT_DEFAULT})")
    args = p.parse_args(argv)
    status = 0
    for path in args.cards:
        try:
            card = json.loads(path.read_text())
            if not isinstance(card, dict) or "method" not in card:
                raise ValueError("a card of srgan_core.train is a JSON object with its method")
        except (OSError, ValueError) as exc:
            print(f"{path}: not a readable model card ({exc})", file=sys.stderr)
            status = 1
            continue
        if args.score:
            try:
                score_card(path, card, args.data_root)
            except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
                print(f"{path}: not scored ({exc})", file=sys.stderr)
                status = 1
                continue
            write_card(path, card)
            print(f"{path}: benchmarks {card['benchmarks']}")
        if link_init(card):
            write_card(path, card)
            print(f"{path}: {card['init']['git_show']}")
        elif card.get("init"):
            print(f"{path}: its starting weights (sha256 {card['init']['sha256'][:12]}...) are in no commit of "
                  f"results/models/{card['init'].get('method')}.safetensors: commit them first", file=sys.stderr)
            status = 1
        try:
            fresh = rerun(card) if "rerun" in card else None
        except (KeyError, TypeError, ValueError) as exc:
            print(f"{path}: its rerun lines cannot be re-made ({type(exc).__name__}: {exc})", file=sys.stderr)
            status = 1
            continue
        if fresh is not None and fresh != card["rerun"]:  # e.g. made before the log's stretches were read
            card["rerun"] = fresh
            write_card(path, card)
            print(f"{path}: rerun lines re-made")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
