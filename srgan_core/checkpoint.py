"""Training state on disk: atomic checkpoints holding every RNG state (an interrupted run resumes exactly), and
resuming from shipped weights and their model card when no checkpoint exists (a fresh optimiser)."""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.optim.swa_utils import AveragedModel

from srgan_core.losses import PAPER_BATCH
from srgan_core.paths import replacing


@dataclass
class Progress:
    """How far the weights have come over every run that built them; carried by checkpoints and model cards."""

    iteration: int = 0
    samples_seen: int = 0
    wall_seconds: float = 0.0  # time spent in training steps
    runs: list[dict] = field(default_factory=list)  # each run's command, hardware, precision, batch and iterations
    starting_weights: dict | None = None  # what the first run started from (SRGAN: the trained SRResNet-MSE)


@dataclass
class Parts:
    """The live objects a checkpoint saves and restores."""

    generator: nn.Module
    discriminator: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    sampler: torch.Generator  # draws the training crops, on the training device
    device: torch.device
    ema: AveragedModel | None = None  # the exported moving average of the generator, when the run keeps one


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that belongs to another kind of run."""


def save(path: Path, parts: Parts, progress: Progress, method: str, crop: int) -> None:
    """Write the checkpoint atomically: a kill mid-write keeps the previous one. `method` and `crop` name the run
    it belongs to, so that another run cannot resume it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "method": method,
        "crop": crop,
        "iteration": progress.iteration,
        "samples_seen": progress.samples_seen,
        "wall_seconds": progress.wall_seconds,
        "runs": progress.runs,
        "init": progress.starting_weights,
        "generator": parts.generator.state_dict(),
        "ema": parts.ema.state_dict() if parts.ema else None,
        "discriminator": parts.discriminator.state_dict() if parts.discriminator else None,
        "opt_g": parts.opt_g.state_dict(),
        "opt_d": parts.opt_d.state_dict() if parts.opt_d else None,
        "scaler": parts.scaler.state_dict(),
        "sampler": parts.sampler.get_state(),
        "sampler_device": parts.device.type,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }
    with replacing(path) as partial:
        torch.save(state, partial)


def read(path: Path, mmap: bool = False) -> dict:
    """A checkpoint's state (`mmap`: its tensors left in the file, to read a few fields); CheckpointError when it
    cannot be read."""
    try:  # RNG states must be CPU tensors; load_state_dict moves the rest
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{path} cannot be read ({err}): it is damaged; move it away to start afresh") from None


def last_run(path: Path) -> tuple[dict, int | None]:
    """The record of the last run that wrote the checkpoint (its command and settings; {} for checkpoints without
    runs), and the run's HR crop (None when not recorded)."""
    state = read(path, mmap=True)
    return (state.get("runs") or [{}])[-1], state.get("crop")


def load(path: Path, parts: Parts, method: str, crop: int) -> tuple[Progress, bool]:
    """Restore every part and RNG from the checkpoint of a `method` run at HR crop `crop`. Returns the progress, and
    whether the crop sampler's state could be restored (not when the checkpoint was written on another kind of
    device: reseed it then)."""
    state = read(path)
    for key, want in (("method", method), ("crop", crop)):
        if state.get(key, want) != want:  # checkpoints from before these were recorded cannot be checked
            raise CheckpointError(
                f"{path} is the checkpoint of a run with {key} {state[key]}, not {want}: resume it with --{key} "
                f"{state[key]}, or give this run another --run-dir"
            )
    progress = recorded_progress(state, state["iteration"], state.get("history", []))
    parts.generator.load_state_dict(state["generator"])
    parts.opt_g.load_state_dict(state["opt_g"])
    if parts.discriminator is not None:
        parts.discriminator.load_state_dict(state["discriminator"])
        parts.opt_d.load_state_dict(state["opt_d"])
    if parts.ema is not None and state.get("ema") is not None:  # else the average starts afresh from the generator
        parts.ema.load_state_dict(state["ema"])
    for opt in filter(None, (parts.opt_g, parts.opt_d)):  # checkpoints from before fused Adam restore fused=None
        for group in opt.param_groups:
            group["fused"], group["foreach"] = True, None
    parts.scaler.load_state_dict(state["scaler"])
    same_device = state.get("sampler_device", "cpu") == parts.device.type
    if same_device:
        parts.sampler.set_state(state["sampler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return progress, same_device


def load_shipped(weights: Path, generator: nn.Module) -> tuple[Progress, str | None]:
    """Load shipped weights into `generator` and read their model card: the progress so far, and the card's
    training log (relative to the repository, or absolute for weights trained with --out) or None."""
    card = json.loads(weights.with_suffix(".json").read_text())
    generator.load_state_dict(load_file(str(weights)))
    return recorded_progress(card, int(card["iterations"]), card.get("commands", [])), card.get("log")


def recorded_progress(record: dict, iteration: int, older_commands: list[str]) -> Progress:
    """The progress a checkpoint or a model card records. Records from before session 7 lack the samples seen and
    the runs (they list command lines only): every run then trained at the paper's batch of 16 on a CPU."""
    older_runs = [{"command": c, "batch_size": PAPER_BATCH, "hardware": "a CPU (model not recorded)"} for c in older_commands]
    return Progress(
        iteration=iteration,
        samples_seen=int(record.get("samples_seen", iteration * PAPER_BATCH)),
        wall_seconds=float(record.get("wall_seconds", 0.0)),
        runs=record.get("runs") or older_runs,
        starting_weights=record.get("init"),
    )
