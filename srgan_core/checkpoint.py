"""Training state on disk: atomic checkpoints holding every RNG state (an interrupted run resumes exactly), and
resuming from shipped weights and their model card when no checkpoint exists (a fresh optimiser)."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from srgan_core.losses import PAPER_BATCH


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


def save(path: Path, parts: Parts, progress: Progress) -> None:
    """Write the checkpoint atomically: a kill mid-write keeps the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "iteration": progress.iteration,
        "samples_seen": progress.samples_seen,
        "wall_seconds": progress.wall_seconds,
        "runs": progress.runs,
        "init": progress.starting_weights,
        "generator": parts.generator.state_dict(),
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
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: Path, parts: Parts) -> tuple[Progress, bool]:
    """Restore every part and RNG from a checkpoint. Returns the progress, and whether the crop sampler's state
    could be restored (not when the checkpoint was written on another kind of device: reseed it then)."""
    state = torch.load(path, map_location=parts.device, weights_only=False)
    iteration = state["iteration"]
    progress = Progress(
        iteration=iteration,
        samples_seen=state.get("samples_seen", iteration * PAPER_BATCH),
        wall_seconds=state["wall_seconds"],
        runs=state.get("runs") or older_runs(state.get("history", [])),
        starting_weights=state.get("init"),
    )
    parts.generator.load_state_dict(state["generator"])
    parts.opt_g.load_state_dict(state["opt_g"])
    if parts.discriminator is not None:
        parts.discriminator.load_state_dict(state["discriminator"])
        parts.opt_d.load_state_dict(state["opt_d"])
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
    training log (relative to the repository) or None."""
    card = json.loads(weights.with_suffix(".json").read_text())
    generator.load_state_dict(load_file(str(weights)))
    iteration = int(card["iterations"])
    progress = Progress(
        iteration=iteration,
        samples_seen=int(card.get("samples_seen", iteration * PAPER_BATCH)),  # older cards: all at batch 16
        wall_seconds=float(card.get("wall_seconds", 0.0)),
        runs=card.get("runs") or older_runs(card.get("commands", [])),
        starting_weights=card.get("init"),
    )
    return progress, card.get("log")


def older_runs(commands: list[str]) -> list[dict]:
    """The runs of weights whose card or checkpoint lists command lines only (before session 7): all at batch 16."""
    return [{"command": command, "batch_size": PAPER_BATCH, "hardware": "a CPU (model not recorded)"} for command in commands]
