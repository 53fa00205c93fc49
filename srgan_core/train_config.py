"""What a training run does: its `TrainConfig` (the command line's settings), the presets' schedules, and each
method's recipe as the presets adapt it. Read by `train` (which runs it) and `provenance` (which records it)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from srgan_core.losses import PAPER_BATCH
from srgan_core.method_specs import SPECS, Recipe


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings (`parse_args` builds it from the command line; None = the preset's)."""

    method: str
    preset: str = "cpu"
    iters: int | None = None  # total, counting earlier runs
    lr: float | None = None
    decay_at: int | None = None  # 0 = never
    batch_size: int | None = None
    crop: int | None = None
    resume: bool = False
    init_weights: Path | None = None
    data_root: Path | None = None
    vgg_weights: str | None = None
    run_dir: Path | None = None
    out: Path | None = None
    overwrite: bool = False  # a run that does not continue the weights at `out` may replace them
    seed: int = 0
    device: str | None = None
    log_every: int = 10
    eval_every: int = 250
    checkpoint_minutes: float = 5.0
    snapshot_every: int = 0  # 0 = keep no generator snapshots
    ema_decay: float = 0.0  # 0 = export the trained generator itself, not a moving average of it
    time_budget: float | None = None
    threads: int | None = None
    amp: str = "auto"
    adversarial_reduction: str = "sum"
    discriminator_batch: str = "joint"
    final_eval: bool = True
    command: str = ""  # the command line, for the model card


def scaled_lr(lr: float, batch_size: int) -> float:
    """A learning rate stated for the paper's batch of 16, moved to another batch size by Adam's square-root
    rule (Hoffer et al. 2017; Malladi et al. 2022, "On the SDEs and scaling rules for adaptive gradient
    algorithms"): the batch gradient's noise falls as 1/sqrt(batch), and Adam's step is normalised by it."""
    return lr * (batch_size / PAPER_BATCH) ** 0.5


@dataclass(frozen=True)
class Schedule:
    iters: int
    lr: float  # at batch_size (the presets' at the paper's 16)
    decay_at: int | None  # iteration where lr drops 10x (SRGAN: 1e-4 -> 1e-5)
    batch_size: int = PAPER_BATCH
    crop: int = 96


# The paper: SRResNet 1e6 iterations at 1e-4; SRGAN 1e5 at 1e-4 then 1e5 at 1e-5; batch 16 of 96 px crops.
# "cpu": same method and batch, fewer iterations; SRResNet at 2e-4 (converges faster early, stable with Adam
# and BN) with a 10x drop near the end of the budget (the PSNR curve had flattened at 2e-4 by ~6k iterations).
# SRGAN at the paper's second-phase rate 1e-5 throughout: at 1e-4 a few hundred iterations (all a CPU budget
# affords of the paper's 1e5-iteration first phase) left colour casts and grid patterns and Set5 below bicubic
# (results/training/srgan_cpu_schedule.md). SRResNet-VGG22 fine-tunes SRResNet-MSE on CPU ("finetune"): the
# paper's rate 1e-4, dropped 10x for the last quarter of a budget one session can afford.
PRESETS = {
    "paper": {"srresnet": Schedule(1_000_000, 1e-4, None), "srgan": Schedule(200_000, 1e-4, 100_000)},
    "cpu": {
        "srresnet": Schedule(10_000, 2e-4, 8_000),
        "finetune": Schedule(2_000, 1e-4, 1_500),
        "srgan": Schedule(4_000, 1e-5, None),
    },
}


def schedule_for(method: str, preset: str) -> Schedule:
    """SRGANs take the preset's "srgan" schedule, SRResNets started from other weights its "finetune" one."""
    if SPECS[method].recipe.adversarial:
        return PRESETS[preset]["srgan"]
    return PRESETS[preset]["finetune" if recipe_for(method, preset).init_method else "srresnet"]


def recipe_for(method: str, preset: str) -> Recipe:
    """The method's recipe; on the CPU preset SRResNet-VGG22 fine-tunes the trained SRResNet-MSE."""
    recipe = SPECS[method].recipe
    if method == "srresnet-vgg22" and preset == "cpu":
        recipe = replace(recipe, init_method="srresnet-mse")
    return recipe
