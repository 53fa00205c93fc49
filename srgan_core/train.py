"""Train a method: `python -m srgan_core.train --method srresnet-mse --preset cpu`.

SRResNet variants train the generator alone on a content loss; SRGAN variants start from the trained
SRResNet-MSE and alternate one discriminator and one generator update per iteration, as in the paper.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import os
import random
import shlex
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from srgan_core import losses
from srgan_core.data import TrainImages, make_pair, require_data_root, train_folders
from srgan_core.inference import cpu_has_native_bf16, pick_device
from srgan_core.methods import weights_path
from srgan_core.models import Discriminator, Generator
from srgan_core.niqe import FETCH_COMMAND as NIQE_FETCH
from srgan_core.niqe import model_path as niqe_model_path
from srgan_core.paths import REPO_ROOT, RUNS_DIR, TRAINING_DIR
from srgan_core.provenance import describe_init, git_commit, hardware, rerun
from srgan_core.vgg import VGGFeatures

log = logging.getLogger("srgan_core.train")


@dataclass(frozen=True)
class Recipe:
    """What a method optimises (the paper's section 2.2 and Table 1)."""

    content: str  # "mse" | "vgg22" | "vgg54"
    adversarial: bool
    tv_weight: float = 0.0
    init: str | None = None  # method whose generator weights start the run


RECIPES = {
    "srresnet-mse": Recipe("mse", adversarial=False),
    "srresnet-vgg22": Recipe("vgg22", adversarial=False, tv_weight=2e-8),
    "srgan-mse": Recipe("mse", adversarial=True, init="srresnet-mse"),
    "srgan-vgg22": Recipe("vgg22", adversarial=True, init="srresnet-mse"),
    "srgan-vgg54": Recipe("vgg54", adversarial=True, init="srresnet-mse"),
}
ADVERSARIAL_WEIGHT = 1e-3
PAPER_BATCH = 16  # the paper's batch size: the presets' learning rates are stated for it
ADVERSARIAL_REDUCTIONS = ("sum", "mean")
DISCRIMINATOR_BATCHES = ("joint", "separate")
VALIDATION_METRICS = ("psnr", "colour_shift", "grid", "niqe")  # evaluate's columns, logged for Set5 at every validation


def adversarial_scale(reduction: str) -> float:
    """Factor on the batch-mean adversarial loss -log D(G(I_LR)) in the generator loss.

    The paper's eq. 6 sums -log D(G(I_LR)) over the samples of its batch of 16, while its content losses
    (eq. 4, 5) are per-image means: mean content + 1e-3 x (sum over 16) = mean content + 1e-3 x 16 x (batch
    mean). "sum" is that factor, 1e-3 x 16, at any batch size: each sample's adversarial term then weighs
    against its content term exactly as in the paper's batch of 16, and a larger batch (`--batch-size`, the
    GPU runs) averages more samples instead of making the adversarial term stronger. "mean" (1e-3 x batch
    mean) is what most reimplementations use; here it leaves the adversarial gradient at 1.5 % of the VGG54
    one (results/training/discriminator_probe.md) and D(G(z)) pinned near 0 in training."""
    if reduction not in ADVERSARIAL_REDUCTIONS:
        raise ValueError(f"adversarial reduction must be one of {ADVERSARIAL_REDUCTIONS}, got {reduction!r}")
    return ADVERSARIAL_WEIGHT * (PAPER_BATCH if reduction == "sum" else 1)


def scaled_lr(lr: float, batch_size: int) -> float:
    """A learning rate stated for the paper's batch of 16, moved to another batch size by Adam's square-root
    rule (Hoffer et al. 2017; Malladi et al. 2022, "On the SDEs and scaling rules for adaptive gradient
    algorithms"): the batch gradient's noise falls as 1/sqrt(batch), and Adam's step is normalised by it."""
    return lr * (batch_size / PAPER_BATCH) ** 0.5


def discriminate(discriminator: nn.Module, hr: torch.Tensor, sr: torch.Tensor, batch: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator logits for the HR and the SR batch. "separate": one pass each, so the discriminator's
    BatchNorm normalises each batch by its own statistics (and cannot see a shift common to a whole batch,
    such as a colour cast); "joint": one pass over both, sharing the statistics."""
    if batch not in DISCRIMINATOR_BATCHES:
        raise ValueError(f"discriminator batch must be one of {DISCRIMINATOR_BATCHES}, got {batch!r}")
    if batch == "joint":
        return discriminator(torch.cat([hr, sr])).split(len(hr))
    return discriminator(hr), discriminator(sr)


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
    if RECIPES[method].adversarial:
        return PRESETS[preset]["srgan"]
    return PRESETS[preset]["finetune" if recipe_for(method, preset).init else "srresnet"]


def recipe_for(method: str, preset: str) -> Recipe:
    recipe = RECIPES[method]
    if method == "srresnet-vgg22" and preset == "cpu":
        recipe = replace(recipe, init="srresnet-mse")
    return recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", required=True, choices=sorted(RECIPES), help="which model to train")
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="paper = the paper's schedule; cpu = the 2-core budget")
    p.add_argument("--iters", type=int, help="stop at this iteration (total, counting earlier runs); default: the preset's")
    p.add_argument("--lr", type=float, help="learning rate; default: the preset's, moved to --batch-size by the square-root rule (lr x sqrt(batch / 16))")
    p.add_argument("--decay-at", type=int, help="iteration where the learning rate drops 10x (0 = never); default: the preset's")
    p.add_argument("--batch-size", type=int, help="global batch size; default: the preset's (16, the paper's)")
    p.add_argument("--crop", type=int, help="HR crop side in pixels, a multiple of 16; default: the preset's (96)")
    p.add_argument("--resume", action="store_true", help="continue from runs/<method>/checkpoint.pt, or from the shipped weights and model card (fresh optimiser) when there is no checkpoint")
    p.add_argument("--init", type=Path, help="generator weights to start from; default for SRGAN: results/models/srresnet-mse.safetensors")
    p.add_argument("--data-root", type=Path, help="data folder with train/ and benchmarks/ (default: SRGAN_DATA or ../shared/data)")
    p.add_argument(
        "--vgg-weights",
        help="VGG19 features: a safetensors file, or a bundle's bfloat16 .npz (`srgan_core.pack`); default: SRGAN_VGG19_WEIGHTS "
        "or the data folder's copy of the original Oxford VGG19. 'torchvision' = torchvision's retrained IMAGENET1K_V1 "
        "weights (another network than the one the shipped weights were trained with: only when asked for)",
    )
    p.add_argument("--run-dir", type=Path, help="checkpoints and logs (default: runs/<method>)")
    p.add_argument("--out", type=Path, help="final weights (default: results/models/<method>.safetensors, with a .json model card)")
    p.add_argument("--seed", type=int, default=0, help="seeds model init and the crop sampler")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--log-every", type=int, default=10, help="iterations per CSV log row")
    p.add_argument("--eval-every", type=int, default=250, help="iterations between Set5 PSNR evaluations (0 = never)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints")
    p.add_argument("--time-budget", type=float, help="seconds of training in this run; then stop cleanly as at --iters (checkpoint, weights, card, log)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument(
        "--amp", choices=("auto", "losses", "off"), default="auto",
        help="mixed precision. auto: the whole step under bfloat16 autocast where the device computes it natively (CUDA; "
        "CPUs with AVX512-BF16 or AMX), float16 with loss scaling on GPUs without bfloat16, float32 elsewhere. losses: "
        "only the VGG loss network and the discriminator in reduced precision, the generator in float32 (how the CPU "
        "runs before session 7 trained; results/training/generator_bf16.md compares the two). off: float32 throughout",
    )
    p.add_argument(
        "--adversarial-reduction", choices=ADVERSARIAL_REDUCTIONS, default="sum",
        help="how the 1e-3 adversarial term covers a batch: sum = the paper's eq. 6, the sum over its batch of 16 "
        "samples (16e-3 x the batch mean, at any --batch-size); mean = 1e-3 x the batch mean, 1/16 as strong",
    )
    p.add_argument(
        "--discriminator-batch", choices=DISCRIMINATOR_BATCHES, default="joint",
        help="joint: HR and SR crops pass the discriminator as one batch, sharing its BatchNorm statistics; separate: "
        "one batch after the other, each normalised by its own statistics, which leaves the discriminator blind to a "
        "colour cast common to all SR crops (results/training/srgan_cpu_schedule.md)",
    )
    p.add_argument("--no-final-eval", action="store_true", help="skip the Set5/Set14/BSD100 evaluation written into the model card")
    args = p.parse_args(argv)
    args.command = "python -m srgan_core.train " + shlex.join(sys.argv[1:] if argv is None else argv)  # for the model card
    return args


def adam(model: nn.Module, lr: float) -> torch.optim.Adam:
    """The paper's optimiser (beta1 0.9); fused into one kernel per step, which is faster on CPU and CUDA."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), fused=True)


class Trainer:
    """One training run: models, optimisers, the step, checkpoints and logs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.method = args.method
        self.recipe = recipe_for(args.method, args.preset)
        base = schedule_for(args.method, args.preset)
        batch_size = args.batch_size or base.batch_size
        self.schedule = replace(
            base,
            iters=args.iters or base.iters,
            lr=args.lr or scaled_lr(base.lr, batch_size),
            decay_at=base.decay_at if args.decay_at is None else (args.decay_at or None),
            batch_size=batch_size,
            crop=args.crop or base.crop,
        )
        if self.schedule.crop % 16:
            raise SystemExit(f"--crop must be a multiple of 16 (the discriminator halves it 4 times), got {self.schedule.crop}")
        self.run_dir = args.run_dir or RUNS_DIR / args.method
        self.out = args.out or weights_path(args.method)
        self.world, self.rank = setup_distributed()
        self.device = pick_device(args.device) if self.world == 1 else distributed_device(self.rank)
        if self.schedule.batch_size % self.world:
            raise SystemExit(f"batch size {self.schedule.batch_size} does not split over {self.world} processes")
        self.local_batch = self.schedule.batch_size // self.world
        self.amp_dtype = amp_dtype(self.device) if args.amp != "off" else None
        self.generator_amp = self.amp_dtype is not None and args.amp == "auto"
        self.adversarial_scale = adversarial_scale(args.adversarial_reduction) if self.recipe.adversarial else 0.0
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once

        torch.manual_seed(args.seed)
        self.generator = Generator().to(self.device, memory_format=torch.channels_last)
        self.discriminator = (
            Discriminator(self.schedule.crop).to(self.device, memory_format=torch.channels_last)
            if self.recipe.adversarial
            else None
        )
        self.vgg_loss = (
            losses.VGGLoss(VGGFeatures(self.recipe.content[3:], args.vgg_weights, data_root=args.data_root)).to(self.device)
            if self.recipe.content != "mse"
            else None
        )
        self.opt_g = adam(self.generator, self.schedule.lr)
        self.opt_d = adam(self.discriminator, self.schedule.lr) if self.discriminator else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.iteration = 0
        self.samples_seen = 0
        self.sampler = torch.Generator(self.device).manual_seed(self.sampler_seed)  # crops are drawn on the training device
        self.wall_seconds = 0.0
        self.runs: list[dict] = []  # every run that built these weights: command, hardware, precision, batch, iterations
        self.init_info: dict | None = None  # the weights this run started from (SRGAN: the trained SRResNet-MSE)

        self.g_step = self.generator
        self.d_step = self.discriminator
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_step = DistributedDataParallel(self.generator, device_ids=ids)
            if self.discriminator is not None:
                self.d_step = DistributedDataParallel(self.discriminator, device_ids=ids)

    # ----- state -----
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def sampler_seed(self) -> int:
        return self.args.seed * 1_000_003 + self.rank + self.iteration

    def initialise(self) -> None:
        """Resume, or start from --init / the recipe's initial weights."""
        if self.args.resume and self.checkpoint_path.is_file():
            self.load_checkpoint()
            log.info("resumed from %s at iteration %d", self.checkpoint_path, self.iteration)
        elif self.args.resume and self.out.is_file() and self.out.with_suffix(".json").is_file():
            card = json.loads(self.out.with_suffix(".json").read_text())
            self.generator.load_state_dict(load_file(str(self.out)))
            self.iteration = int(card["iterations"])
            self.samples_seen = int(card.get("samples_seen", self.iteration * PAPER_BATCH))  # older cards: all at batch 16
            self.wall_seconds = float(card.get("wall_seconds", 0.0))
            self.runs = card.get("runs") or older_runs(card.get("commands", []))
            self.init_info = card.get("init")
            self.sampler.manual_seed(self.sampler_seed)
            self.continue_shipped_log(REPO_ROOT / card["log"] if card.get("log") else None)
            log.info("no checkpoint: continuing the shipped weights %s from iteration %d with a fresh optimiser", self.out, self.iteration)
        else:
            if self.args.resume:
                log.info("--resume: nothing to resume for %s, starting fresh", self.method)
            init = self.args.init or (weights_path(self.recipe.init) if self.recipe.init else None)
            if init is not None:
                if not Path(init).is_file():
                    raise SystemExit(f"{self.method} starts from {init}, which does not exist: train {self.recipe.init} first or pass --init PATH")
                self.generator.load_state_dict(load_file(str(init)))
                self.init_info = describe_init(Path(init))
                log.info("generator initialised from %s", init)
        self.set_lr()

    def continue_shipped_log(self, shipped: Path | None) -> None:
        """Start the run's log with the shipped weights' log (rows up to their iteration), so the log exported
        at the end of this run still covers every iteration that built the weights."""
        run_log = self.run_dir / "log.csv"
        if self.rank != 0 or run_log.is_file() or shipped is None or not shipped.is_file():
            return
        header, *rows = shipped.read_text().splitlines()
        kept = [row for row in rows if int(row.split(",", 1)[0]) <= self.iteration]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        run_log.write_text("\n".join([header, *kept]) + "\n")

    def set_lr(self) -> None:
        decay = self.schedule.decay_at is not None and self.iteration >= self.schedule.decay_at
        lr = self.schedule.lr * (0.1 if decay else 1.0)
        for opt in filter(None, (self.opt_g, self.opt_d)):
            for group in opt.param_groups:
                group["lr"] = lr

    def state(self) -> dict:
        return {
            "iteration": self.iteration,
            "samples_seen": self.samples_seen,
            "wall_seconds": self.wall_seconds,
            "runs": self.runs,
            "init": self.init_info,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.get_state(),
            "sampler_device": self.device.type,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, self.checkpoint_path)  # atomic: a kill mid-write keeps the previous checkpoint

    def load_checkpoint(self) -> None:
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        self.iteration, self.wall_seconds = state["iteration"], state["wall_seconds"]
        self.samples_seen = state.get("samples_seen", self.iteration * PAPER_BATCH)
        self.runs = state.get("runs") or older_runs(state.get("history", []))
        self.init_info = state.get("init")
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        for opt in filter(None, (self.opt_g, self.opt_d)):  # checkpoints from before fused Adam restore fused=None
            for group in opt.param_groups:
                group["fused"], group["foreach"] = True, None
        self.scaler.load_state_dict(state["scaler"])
        if state.get("sampler_device", "cpu") == self.device.type:
            self.sampler.set_state(state["sampler"])
        else:  # a checkpoint from another kind of device: its crop sampler cannot continue here
            log.info("the checkpoint's crop sampler is another device's: reseeding it for iteration %d", self.iteration)
            self.sampler.manual_seed(self.sampler_seed)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])

    # ----- the step -----
    @property
    def precision(self) -> str:
        """Which parts of a step run in lower precision (for the model card and the benchmark)."""
        if self.amp_dtype is None:
            return "float32"
        dtype = str(self.amp_dtype).removeprefix("torch.")
        if self.generator_amp:
            return f"{dtype} autocast, whole step"
        if self.discriminator is None and self.vgg_loss is None:
            return "float32 (no loss network to cast)"
        return f"{dtype} autocast for the VGG loss network and the discriminator, generator float32"

    def autocast(self, generator: bool = False):
        """Mixed precision for the loss networks; for the generator too unless --amp losses."""
        enabled = self.amp_dtype is not None and (self.generator_amp or not generator)
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=enabled)

    def discriminate_sr(self, hr: torch.Tensor, sr: torch.Tensor) -> torch.Tensor:
        """Logits for the SR batch as the generator step sees them (with the HR batch beside it when joint)."""
        if self.args.discriminator_batch == "joint":
            return discriminate(self.d_step, hr, sr, "joint")[1]
        return self.d_step(sr)

    def content_loss(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return losses.mse_loss(sr, hr) if self.vgg_loss is None else self.vgg_loss(sr, hr)

    def step(self, hr_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration on a uint8 HR batch; returns its losses and D outputs as detached 0-d tensors (reading
        them waits for the device, so the loop reads them only when it logs)."""
        lr, hr = make_pair(hr_uint8.to(self.device))
        lr = lr.contiguous(memory_format=torch.channels_last)
        hr = hr.contiguous(memory_format=torch.channels_last)
        stats: dict[str, torch.Tensor] = {}

        with self.autocast(generator=True):
            sr = self.g_step(lr)

        if self.d_step is not None:  # discriminator update on the current SR batch
            self.opt_d.zero_grad(set_to_none=True)
            with self.autocast():
                real_logits, fake_logits = discriminate(self.d_step, hr, sr.detach(), self.args.discriminator_batch)
                loss_d = losses.discriminator_loss(real_logits.float(), fake_logits.float())
            self.scaler.scale(loss_d).backward()
            self.scaler.step(self.opt_d)
            stats.update(
                loss_d=loss_d.detach(),
                d_real=torch.sigmoid(real_logits.detach().float()).mean(),
                d_fake=torch.sigmoid(fake_logits.detach().float()).mean(),
            )

        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            content = self.content_loss(sr.float(), hr)
            loss_g = content
            if self.recipe.tv_weight:
                tv = losses.total_variation(sr.float())
                loss_g = loss_g + self.recipe.tv_weight * tv
                stats["loss_tv"] = tv.detach()
            if self.d_step is not None:
                for p in self.discriminator.parameters():
                    p.requires_grad_(False)
                adv = losses.generator_adversarial_loss(self.discriminate_sr(hr, sr).float())
                for p in self.discriminator.parameters():
                    p.requires_grad_(True)
                loss_g = loss_g + self.adversarial_scale * adv
                stats["loss_adv"] = adv.detach()
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        stats.update(loss_g=loss_g.detach(), loss_content=content.detach())
        return stats

    # ----- the loop -----
    def run(self) -> None:
        self.initialise()
        this_run = {
            "command": self.args.command, "hardware": hardware(self.device), "processes": self.world, "precision": self.precision,
            "batch_size": self.schedule.batch_size, "lr": self.schedule.lr, "from_iteration": self.iteration,
            "iterations": self.iteration, "wall_seconds": 0.0,
        }
        self.runs.append(this_run)
        images = TrainImages.load(train_folders(self.args.data_root), self.schedule.crop, self.device)
        log_path = self.run_dir / "log.csv"
        logger = CsvLog(log_path) if self.rank == 0 else None
        stop = StopFlag()
        started = last_ckpt = time.monotonic()
        budget = self.args.time_budget
        window: list[dict[str, float]] = []
        window_start = time.monotonic()
        self.generator.train()
        bar = tqdm(total=self.schedule.iters, initial=self.iteration, desc=self.method, disable=None if self.rank == 0 else True, dynamic_ncols=True)  # None: no bar when not on a terminal
        while self.iteration < self.schedule.iters and not stop.requested:
            if budget is not None and time.monotonic() - started >= budget:
                log.info("time budget of %.0f s spent at iteration %d", budget, self.iteration)
                break
            t0 = time.monotonic()
            window.append(self.step(images.batch(self.local_batch, self.schedule.crop, self.sampler)))
            self.iteration += 1
            self.samples_seen += self.schedule.batch_size
            self.wall_seconds += time.monotonic() - t0
            this_run.update(iterations=self.iteration, wall_seconds=round(time.monotonic() - started, 1))
            self.set_lr()
            bar.update(1)
            if logger and (self.iteration % self.args.log_every == 0 or self.iteration == self.schedule.iters):
                now = time.monotonic()
                row = {k: torch.stack([w[k] for w in window if k in w]).float().mean().item() for k in window[-1]}
                row.update(iteration=self.iteration, lr=self.opt_g.param_groups[0]["lr"], it_per_s=len(window) / (now - window_start))
                if self.args.eval_every and self.iteration % self.args.eval_every == 0:
                    row.update(self.validate())
                    bar.set_postfix({k.removeprefix("set5_"): f"{v:.2f}" for k, v in row.items() if k.startswith("set5_")})
                logger.write(row)
                window, window_start = [], time.monotonic()
            if time.monotonic() - last_ckpt > self.args.checkpoint_minutes * 60:
                self.save_checkpoint()
                self.export()
                last_ckpt = time.monotonic()
        bar.close()
        self.save_checkpoint()
        if self.rank == 0:
            self.export(final_eval=not (self.args.no_final_eval or stop.requested))
            log.info("stopped at iteration %d (%s)", self.iteration, "signal" if stop.requested else "done")
        if self.world > 1:
            dist.destroy_process_group()

    def validate(self) -> dict[str, float]:
        """Mean Set5 PSNR (Y, the paper's protocol), colour shift and sub-pixel grid (levels) and NIQE of the current
        generator; NIQE only where the data folder has its model (`niqe_available`)."""
        from srgan_core.evaluate import score_generator

        self.generator.eval()
        try:
            scores = score_generator(self.generator, "Set5", self.args.data_root, device=self.device, with_niqe=self.niqe_available)
        finally:
            self.generator.train()
        return {f"set5_{metric}": float(scores[metric].mean()) for metric in VALIDATION_METRICS if metric in scores}

    @functools.cached_property
    def niqe_available(self) -> bool:
        """Whether the data folder has the NIQE model; said once in the log if not (training goes on without it)."""
        path = niqe_model_path(require_data_root(self.args.data_root))
        if not path.is_file():
            log.warning("no NIQE model at %s: the log's set5_niqe column stays empty (`%s` fetches it)", path, NIQE_FETCH)
        return path.is_file()

    def export(self, final_eval: bool = False) -> None:
        """Weights (safetensors) + a JSON model card saying how they were made."""
        if self.rank != 0:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.generator.state_dict().items()}
        save_file(state, str(self.out), metadata={"method": self.method, "iterations": str(self.iteration)})
        card = {
            "method": self.method,
            "iterations": self.iteration,
            "preset": self.args.preset,
            "schedule": asdict(self.schedule),
            "recipe": asdict(self.recipe),
            "adversarial_weight": ADVERSARIAL_WEIGHT if self.recipe.adversarial else 0.0,
            "adversarial_reduction": self.args.adversarial_reduction if self.recipe.adversarial else None,
            "discriminator_batch": self.args.discriminator_batch if self.recipe.adversarial else None,
            "seed": self.args.seed,
            "data": [f"train/{p.name}" for p in train_folders(self.args.data_root)],
            "device": str(self.device),
            "hardware": hardware(self.device),
            "processes": self.world,
            "samples_seen": self.samples_seen,
            "wall_seconds": round(self.wall_seconds, 1),
            "precision": self.precision,
            "commit": git_commit(),
            "runs": self.runs,
            "init": self.init_info,
            "log": f"results/training/{self.method}_log.csv",
        }
        card["rerun"] = rerun(card)
        if final_eval:
            from srgan_core.evaluate import score_generator

            self.generator.eval()
            card["benchmarks"] = {}
            for dataset in ("Set5", "Set14", "BSD100"):
                scores = score_generator(self.generator, dataset, self.args.data_root, device=self.device)
                card["benchmarks"][dataset] = {"psnr": round(scores["psnr"].mean(), 3), "ssim": round(scores["ssim"].mean(), 4)}
            self.generator.train()
        tmp = self.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(card, indent=2) + "\n")
        os.replace(tmp, self.out.with_suffix(".json"))
        if self.args.out is None and (self.run_dir / "log.csv").is_file():  # shipped weights ship their log
            TRAINING_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.run_dir / "log.csv", TRAINING_DIR / f"{self.method}_log.csv")


def older_runs(commands: list[str]) -> list[dict]:
    """The runs of weights whose card or checkpoint lists command lines only (before session 7): all at batch 16."""
    return [{"command": command, "batch_size": PAPER_BATCH, "hardware": "a CPU (model not recorded)"} for command in commands]


class CsvLog:
    FIELDS = [
        "iteration", "lr", "loss_g", "loss_content", "loss_adv", "loss_tv", "loss_d", "d_real", "d_fake", "it_per_s",
        *(f"set5_{metric}" for metric in VALIDATION_METRICS),
    ]

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file()
        if not new:
            self.upgrade(path)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, self.FIELDS, lineterminator="\n")
        if new:
            self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.file.flush()

    @classmethod
    def upgrade(cls, path: Path) -> None:
        """Rewrite a log from an older version with today's columns (new ones empty), so rows can be appended."""
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames == cls.FIELDS:
                return
            unknown = set(reader.fieldnames or []) - set(cls.FIELDS)
            if unknown:
                raise SystemExit(f"{path} has columns this trainer does not write: {sorted(unknown)}; move it away to start a new log")
            rows = list(reader)
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, cls.FIELDS, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)


class StopFlag:
    """Set by SIGINT/SIGTERM so the loop ends after the current step and saves everything."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.request)

    def request(self, signum: int, frame: object) -> None:
        log.info("signal %d: finishing the current step, then checkpointing", signum)
        self.requested = True


def setup_distributed() -> tuple[int, int]:
    """(world size, rank); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 1, 0
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return world, dist.get_rank()


def distributed_device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 (with loss scaling); on CPU bf16 where the cores compute it
    natively (elsewhere it is emulated and slower than float32), else none."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        Trainer(args).run()
    except FileNotFoundError as exc:  # data, VGG19 or NIQE model, starting weights: the message names the fix
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
