"""Train a method: `python -m srgan_core.train --method srresnet-mse --preset cpu`.

SRResNet variants train the generator alone on a content loss; SRGAN variants start from the trained
SRResNet-MSE and alternate one discriminator and one generator update per iteration, as in the paper.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from srgan_core import checkpoint, losses
from srgan_core.checkpoint import Parts, Progress
from srgan_core.data import (
    BENCHMARKS,
    TrainImages,
    benchmark_images,
    make_pair,
    require_data_root,
    train_folders,
)
from srgan_core.device import DeviceError, amp_dtype, pick_device
from srgan_core.losses import (
    ADVERSARIAL_REDUCTIONS,
    DISCRIMINATOR_BATCHES,
    adversarial_scale,
    discriminate,
)
from srgan_core.method_specs import LEARNED, SPECS
from srgan_core.models import Discriminator, Generator
from srgan_core.niqe import FETCH_COMMAND as NIQE_FETCH
from srgan_core.niqe import model_path as niqe_model_path
from srgan_core.paths import (
    DATA_ROOT_DEFAULT,
    REPO_ROOT,
    RUNS_DIR,
    TRAINING_DIR,
    shipped_log,
)
from srgan_core.provenance import (
    command_flag,
    describe_init,
    describe_vgg,
    hardware,
    model_card,
    write_card,
)
from srgan_core.train_config import (
    PRESETS,
    TrainConfig,
    recipe_for,
    scaled_lr,
    schedule_for,
)
from srgan_core.training_log import (
    VALIDATION_METRICS,
    CsvLog,
    cut_log,
    start_from_shipped_log,
)
from srgan_core.vgg import VGGFeatures

log = logging.getLogger("srgan_core.train")

AMP_MODES = ("auto", "losses", "off")


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Help with each option's default, except a switch's ("--no-final-eval (default: True)" reads as the opposite)
    and None (its help says what the default is)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.nargs == 0 or action.default is None else super()._get_help_string(action)


def positive(kind: type[int | float], zero_ok: bool = False) -> Callable[[str], int | float]:
    """An argparse type: a finite number of `kind` above 0 (or at least 0), refused with the flag's name otherwise."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"{text}: give a number {'of 0 or more' if zero_ok else 'above 0'}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    d = TrainConfig  # the defaults' one home
    p = argparse.ArgumentParser(prog="python -m srgan_core.train", description=__doc__, formatter_class=DefaultsShown)
    p.add_argument("--method", required=True, choices=sorted(LEARNED), help="which model to train")
    p.add_argument("--preset", default=d.preset, choices=sorted(PRESETS), help="paper = the paper's schedule; cpu = the 2-core budget")
    p.add_argument("--iters", type=positive(int), help="stop at this iteration (total, counting earlier runs); default: the preset's")
    p.add_argument("--lr", type=positive(float), help="learning rate; default: the preset's, moved to --batch-size by the square-root rule (lr x sqrt(batch / 16))")
    p.add_argument("--decay-at", type=positive(int, zero_ok=True), help="iteration where the learning rate drops 10x (0 = never); default: the preset's")
    p.add_argument("--batch-size", type=positive(int), help="global batch size; default: the preset's (16, the paper's)")
    p.add_argument("--crop", type=positive(int), help="HR crop side in pixels, a multiple of 16; default: the preset's (96)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt, or from the shipped weights and model card (--out's, else results/models/<method>; fresh optimiser) when there is no checkpoint; without it a RUN_DIR that holds a checkpoint or log is refused")
    p.add_argument("--init", dest="init_weights", type=Path, help="generator weights to start from; default for SRGAN: results/models/srresnet-mse.safetensors")
    p.add_argument("--data-root", type=Path, help=f"data folder with train/ and benchmarks/ (default: {DATA_ROOT_DEFAULT})")
    p.add_argument(
        "--vgg-weights",
        help="VGG19 features: a safetensors file, or a bundle's bfloat16 .npz (`srgan_core.pack`); default: SRGAN_VGG19_WEIGHTS "
        "or the data folder's copy of the original Oxford VGG19. 'torchvision' = torchvision's retrained IMAGENET1K_V1 "
        "weights (another network than the one the shipped weights were trained with: only when asked for); 'original' = "
        "the default, said (a --resume of a torchvision run keeps torchvision's otherwise)",
    )
    p.add_argument("--run-dir", type=Path, help="checkpoints and logs (default: runs/<method>)")
    p.add_argument("--out", type=Path, help="final weights (default: results/models/<method>.safetensors, with a .json model card); weights "
                   "already there are replaced only by a run that continues them (--resume) or with --overwrite")
    p.add_argument("--overwrite", action="store_true", help="let a run that does not continue the weights at --out replace them")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds model init and the crop sampler")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--log-every", type=positive(int), default=d.log_every, help="iterations per CSV log row")
    p.add_argument("--eval-every", type=positive(int, zero_ok=True), default=d.eval_every, help="iterations between Set5 PSNR evaluations (0 = never)")
    p.add_argument("--checkpoint-minutes", type=positive(float), default=d.checkpoint_minutes, help="minutes between checkpoints")
    p.add_argument(
        "--snapshot-every", type=positive(int, zero_ok=True), default=d.snapshot_every,
        help="keep the generator's weights every this many iterations as RUN_DIR/snapshots/ITERATION.safetensors, to pick "
        "or average later (`python -m tools.probe_weight_average`); the generator being trained, not its moving average; 0 = never",
    )
    p.add_argument(
        "--ema-decay", type=float, default=d.ema_decay,
        help="keep an exponential moving average of the generator's weights and BatchNorm statistics (decay per "
        "iteration, e.g. 0.999), and export and validate it instead of the generator itself; the training is unchanged. "
        "Not in the paper (results/training/weight_average_srgan-vgg54.md); 0 = off",
    )
    p.add_argument("--time-budget", type=positive(float), help="seconds of training in this run; then stop cleanly as at --iters (checkpoint, weights, card, log)")
    p.add_argument("--threads", type=positive(int), help="CPU threads for torch (default: torch's choice); another count gives other weights (sums in another order)")
    p.add_argument(
        "--amp", choices=AMP_MODES, default=d.amp,
        help="mixed precision. auto: the whole step under bfloat16 autocast where the device computes it natively (CUDA; "
        "CPUs with AVX512-BF16 or AMX), float16 with loss scaling on GPUs without bfloat16, float32 elsewhere. losses: "
        "only the VGG loss network and the discriminator in reduced precision, the generator in float32 (how the CPU "
        "runs before session 7 trained; results/training/generator_bf16.md compares the two). off: float32 throughout",
    )
    p.add_argument(
        "--adversarial-reduction", choices=ADVERSARIAL_REDUCTIONS, default=d.adversarial_reduction,
        help="how the 1e-3 adversarial term covers a batch: sum = the paper's eq. 6, the sum over its batch of 16 "
        "samples (16e-3 x the batch mean, at any --batch-size); mean = 1e-3 x the batch mean, 1/16 as strong",
    )
    p.add_argument(
        "--discriminator-batch", choices=DISCRIMINATOR_BATCHES, default=d.discriminator_batch,
        help="joint: HR and SR crops pass the discriminator as one batch, sharing its BatchNorm statistics; separate: "
        "one batch after the other, each normalised by its own statistics, which leaves the discriminator blind to a "
        "colour cast common to all SR crops (results/training/srgan_cpu_schedule.md)",
    )
    p.add_argument("--no-final-eval", dest="final_eval", action="store_false", help="skip the Set5/Set14/BSD100 evaluation written into the model card (a run stopped by a signal skips it too; `python -m srgan_core.provenance --score CARD` adds it later)")
    args = p.parse_args(argv)
    command = "python -m srgan_core.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    return TrainConfig(**vars(args), command=command)


# What a bare --resume keeps of the interrupted run: TrainConfig field -> its flag, the key its run record keeps it
# under (runs before session 27 recorded fewer: then their command's flag), and its type.
RESUMED = {
    "batch_size": ("--batch-size", "batch_size", int), "lr": ("--lr", "lr", float), "decay_at": ("--decay-at", "decay_at", int),
    "iters": ("--iters", "target_iterations", int), "ema_decay": ("--ema-decay", "ema_decay", float), "amp": ("--amp", "amp", str),
    "vgg_weights": ("--vgg-weights", None, str),
}


def resumed(config: TrainConfig, checkpoint_path: Path) -> TrainConfig:
    """On --resume from a checkpoint, the interrupted run's settings (`RESUMED`, and its crop) for the flags not given
    again: a resume continues the run as it was. A new --batch-size without --lr moves the run's rate by the
    square-root rule."""
    if not (config.resume and checkpoint_path.is_file()):
        return config
    run, crop = checkpoint.last_run(checkpoint_path)
    taken: dict = {"crop": crop} if crop and command_flag(config.command, "--crop") is None else {}
    for field, (flag, key, kind) in RESUMED.items():
        if command_flag(config.command, flag) is not None:
            continue
        value = run[key] if key in run else command_flag(run.get("command", ""), flag)
        if key == "decay_at" and key in run:
            taken[field] = value or 0  # recorded None: no drop
        elif value is not None:
            taken[field] = kind(value)
    if "lr" in taken and "batch_size" not in taken and run.get("batch_size") and config.batch_size:
        taken["lr"] = taken["lr"] * (config.batch_size / run["batch_size"]) ** 0.5
    if taken:
        flags = {field: spec[0] for field, spec in RESUMED.items()} | {"crop": "--crop"}
        log.info("--resume: continuing with the run's own %s", " ".join(f"{flags[field]} {value}" for field, value in taken.items()))
    return replace(config, **taken)


def adam(model: nn.Module, lr: float) -> torch.optim.Adam:
    """The paper's optimiser (beta1 0.9); fused into one kernel per step, which is faster on CPU and CUDA."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), fused=True)


@torch.no_grad()
def update_average(average: AveragedModel, model: nn.Module, decay: float) -> None:
    """One step of a started moving average, as `average.update_parameters(model)` with `get_ema_multi_avg_fn(decay)`
    computes it, without its two reads of the step counter, each of which waits for a GPU to finish the step."""
    pairs = list(zip(itertools.chain(average.module.parameters(), average.module.buffers()),
                     itertools.chain(model.parameters(), model.buffers()), strict=True))
    floats = [(mean, now) for mean, now in pairs if mean.is_floating_point()]
    torch._foreach_lerp_([mean for mean, _ in floats], [now for _, now in floats], 1 - decay)
    for mean, now in pairs:
        if not mean.is_floating_point():  # BatchNorm's batch counters, averaged as torch averages them
            mean.copy_(mean * decay + now * (1 - decay))
    average.n_averaged += 1


class Trainer:
    """One training run: models, optimisers, the step and the loop; checkpoints (`checkpoint`) and model cards
    (`provenance`) are written through their modules."""

    def __init__(self, config: TrainConfig) -> None:
        self.run_dir = config.run_dir or RUNS_DIR / config.method
        config = self.config = resumed(config, self.run_dir / "checkpoint.pt")
        self.method = config.method
        self.recipe = recipe_for(config.method, config.preset)
        base = schedule_for(config.method, config.preset)
        batch_size = config.batch_size or base.batch_size
        self.schedule = replace(
            base,
            iters=config.iters or base.iters,
            lr=config.lr or scaled_lr(base.lr, batch_size),
            decay_at=base.decay_at if config.decay_at is None else (config.decay_at or None),
            batch_size=batch_size,
            crop=config.crop or base.crop,
        )
        if self.schedule.crop % 16:
            raise SystemExit(f"error: --crop must be a multiple of 16 (an SRGAN's discriminator halves it 4 times; every method keeps "
                             f"that rule), got {self.schedule.crop}")
        if config.data_root is not None:  # a --data-root that is not there is named before anything is read from it
            require_data_root(config.data_root)
        self.out = config.out or SPECS[config.method].weights_file
        check_outputs(self.run_dir, self.out)
        self.world, self.rank = setup_distributed()
        self.device = pick_device(config.device) if self.world == 1 else distributed_device(self.rank)
        if self.schedule.batch_size % self.world:
            raise SystemExit(f"batch size {self.schedule.batch_size} does not split over {self.world} processes")
        self.local_batch = self.schedule.batch_size // self.world
        if self.recipe.adversarial and config.discriminator_batch == "separate" and self.local_batch < 2:
            raise SystemExit("error: --discriminator-batch separate normalises each batch on its own: BatchNorm needs a batch of 2 or more")
        self.amp_dtype = amp_dtype(self.device) if config.amp != "off" else None
        self.generator_amp = self.amp_dtype is not None and config.amp == "auto"
        self.adversarial_scale = adversarial_scale(config.adversarial_reduction) if self.recipe.adversarial else 0.0
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once

        torch.manual_seed(config.seed)
        self.generator = Generator().to(self.device, memory_format=torch.channels_last)
        self.discriminator = (
            Discriminator(self.schedule.crop).to(self.device, memory_format=torch.channels_last)
            if self.recipe.adversarial
            else None
        )
        self.vgg_loss = (
            losses.VGGLoss(VGGFeatures(self.recipe.vgg_layer, config.vgg_weights, data_root=config.data_root)).to(self.device)
            if self.recipe.content == "vgg"
            else None
        )
        if self.vgg_loss is None and config.vgg_weights:
            log.warning("--vgg-weights %s is not used: %s's content loss is MSE, with no VGG19", config.vgg_weights, self.method)
        if not 0 <= config.ema_decay < 1:
            raise SystemExit(f"--ema-decay must be in [0, 1), got {config.ema_decay}")
        self.ema = (
            AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
            if config.ema_decay
            else None
        )
        self.opt_g = adam(self.generator, self.schedule.lr)
        self.opt_d = adam(self.discriminator, self.schedule.lr) if self.discriminator else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.progress = Progress()
        self.sampler = torch.Generator(self.device).manual_seed(self.sampler_seed)  # crops are drawn on the training device

        # The modules the step runs: wrapped for gradient all-reduce when distributed, else the models themselves.
        self.generator_net: nn.Module = self.generator
        self.discriminator_net: nn.Module | None = self.discriminator
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.generator_net = DistributedDataParallel(self.generator, device_ids=ids)
            if self.discriminator is not None:
                self.discriminator_net = DistributedDataParallel(self.discriminator, device_ids=ids)

    # ----- state -----
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def parts(self) -> Parts:
        return Parts(self.generator, self.discriminator, self.opt_g, self.opt_d, self.scaler, self.sampler, self.device, self.ema)

    @property
    def exported(self) -> Generator:
        """The generator the run validates and exports: its moving average when --ema-decay is set."""
        return self.ema.module if self.ema is not None else self.generator

    @property
    def sampler_seed(self) -> int:
        return self.config.seed * 1_000_003 + self.rank + self.progress.iteration

    def initialise(self) -> None:
        """Resume (from the run's checkpoint, else from the shipped weights), or start from --init / the recipe's
        starting method."""
        shipped = self.out if self.out.is_file() else SPECS[self.method].weights_file  # --out, else the shipped weights
        self.log_existed = (self.run_dir / "log.csv").is_file()  # before this run wrote any: removed again if no step runs
        if not self.config.resume and (self.checkpoint_path.is_file() or (self.run_dir / "log.csv").is_file()):
            raise SystemExit(
                f"error: {self.run_dir} holds another run's checkpoint or log: pass --resume to continue it, or another "
                "--run-dir (or remove that folder) to start afresh"
            )
        if self.config.resume and self.config.init_weights and (self.checkpoint_path.is_file() or shipped.is_file()):
            log.warning("--init %s is not used: --resume continues the run's own weights", self.config.init_weights)
        continues_out = False  # whether the run continues the weights at --out (which it may then replace)
        if self.config.resume and self.checkpoint_path.is_file():
            self.progress, sampler_restored = checkpoint.load(self.checkpoint_path, self.parts, self.method, self.schedule.crop)
            continues_out = exported_to(self.method, self.progress.runs) == self.out.resolve()
            if self.rank == 0 and self.log_existed:
                dropped = cut_log(self.run_dir / "log.csv", self.progress.iteration)
                if dropped:
                    log.info("dropped %d log rows after the checkpoint's iteration %d (the run was stopped without one)", dropped, self.progress.iteration)
            previous = self.progress.runs[-1] if self.progress.runs else {}
            changed = [f"{name} {previous[key]:g} -> {now:g}" for key, name, now in (("batch_size", "batch size", self.schedule.batch_size), ("lr", "learning rate", self.schedule.lr))
                       if previous.get(key) is not None and previous[key] != now]
            if changed:
                log.warning("--resume with other settings than the run before, as given: %s", ", ".join(changed))
            if not sampler_restored:  # a checkpoint from another kind of device: its crop sampler cannot continue here
                log.info("the checkpoint's crop sampler is another device's: reseeding it for iteration %d", self.progress.iteration)
                self.sampler.manual_seed(self.sampler_seed)
            log.info("resumed from %s at iteration %d", self.checkpoint_path, self.progress.iteration)
        elif self.config.resume and shipped.is_file() and shipped.with_suffix(".json").is_file():
            self.progress, shipped_log = checkpoint.load_shipped(shipped, self.generator)
            continues_out = shipped == self.out
            self.sampler.manual_seed(self.sampler_seed)
            if self.rank == 0 and shipped_log:
                start_from_shipped_log(self.run_dir / "log.csv", REPO_ROOT / shipped_log, self.progress.iteration)
            log.info("no checkpoint: continuing the shipped weights %s from iteration %d with a fresh optimiser", shipped, self.progress.iteration)
        else:
            if self.config.resume:
                log.warning("--resume: no checkpoint in %s and no weights with a card at %s: starting %s afresh", self.run_dir, shipped, self.method)
            start = self.config.init_weights or (SPECS[self.recipe.init_method].weights_file if self.recipe.init_method else None)
            if start is not None:
                if not Path(start).is_file():
                    if self.config.init_weights is not None:
                        raise SystemExit(f"error: --init {start} does not exist")
                    raise SystemExit(f"error: {self.method} starts from {start}, which does not exist: train {self.recipe.init_method} first or pass --init PATH")
                try:
                    state = load_file(str(start))
                except (SafetensorError, OSError) as exc:  # damaged
                    raise SystemExit(f"error: {start} is not a readable generator ({str(exc).splitlines()[0]})") from None
                expected = set(self.generator.state_dict())
                if set(state) != expected:  # e.g. a discriminator's or another network's weights
                    raise SystemExit(f"error: {start} is not a readable generator (not its weights: {len(expected - set(state))} of its "
                                     f"{len(expected)} tensors missing, {len(set(state) - expected)} others)")
                try:
                    self.generator.load_state_dict(state)
                except RuntimeError as exc:  # the generator's names, other shapes
                    raise SystemExit(f"error: {start} is not a readable generator ({str(exc).splitlines()[-1].strip()})") from None
                self.progress.starting_weights = describe_init(Path(start))
                log.info("generator initialised from %s", start)
        if self.ema is not None and self.ema.n_averaged == 0:  # start the average at the weights the run starts from
            self.ema.update_parameters(self.generator)
        self.set_lr()
        if not (continues_out or self.config.overwrite):  # its inputs said first: nothing is written yet
            check_replacing(self.out, self.config.resume)

    def set_lr(self) -> None:
        decay = self.schedule.decay_at is not None and self.progress.iteration >= self.schedule.decay_at
        lr = self.schedule.lr * (0.1 if decay else 1.0)
        for opt in filter(None, (self.opt_g, self.opt_d)):
            for group in opt.param_groups:
                group["lr"] = lr

    def save_checkpoint(self) -> None:
        if self.rank == 0:
            checkpoint.save(self.checkpoint_path, self.parts, self.progress, self.method, self.schedule.crop)

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
        if self.config.discriminator_batch == "joint":
            return discriminate(self.discriminator_net, hr, sr, "joint")[1]
        return self.discriminator_net(sr)

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
            sr = self.generator_net(lr)

        if self.discriminator_net is not None:  # discriminator update on the current SR batch
            self.opt_d.zero_grad(set_to_none=True)
            with self.autocast():
                real_logits, fake_logits = discriminate(self.discriminator_net, hr, sr.detach(), self.config.discriminator_batch)
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
            if self.discriminator_net is not None:
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
        if self.ema is not None:
            update_average(self.ema, self.generator, self.config.ema_decay)
        stats.update(loss_g=loss_g.detach(), loss_content=content.detach())
        return stats

    # ----- the loop -----
    def run(self) -> None:
        for dataset in (BENCHMARKS if self.config.final_eval else ("Set5",) if self.config.eval_every else ()):
            benchmark_images(dataset, self.config.data_root)  # validation and the final evaluation need them: said now, not at the first check
        self.initialise()
        if self.world > 1:  # every process has looked at the run folder (a fresh run refuses a log) before rank 0 writes one
            dist.barrier()
        this_run = {
            "command": self.config.command, "hardware": hardware(self.device), "processes": self.world, "precision": self.precision,
            "batch_size": self.schedule.batch_size, "lr": self.schedule.lr, "decay_at": self.schedule.decay_at,
            "target_iterations": self.schedule.iters, "ema_decay": self.config.ema_decay, "amp": self.config.amp,
            "from_iteration": self.progress.iteration,
            "iterations": self.progress.iteration, "wall_seconds": 0.0,
        }
        if self.vgg_loss is not None:
            this_run["vgg19"] = describe_vgg(self.vgg_loss.features.source)
        self.progress.runs.append(this_run)
        images = TrainImages.load(train_folders(self.config.data_root), self.schedule.crop, self.device)
        log_path = self.run_dir / "log.csv"
        new_log = not self.log_existed
        logger = CsvLog(log_path) if self.rank == 0 else None
        stop = StopFlag()
        try:
            started = last_ckpt = time.monotonic()
            budget = self.config.time_budget
            window: list[dict[str, float]] = []
            window_start = time.monotonic()
            self.generator.train()
            bar = tqdm(total=self.schedule.iters, initial=self.progress.iteration, desc=self.method, disable=None if self.rank == 0 else True, dynamic_ncols=True)  # None: no bar when not on a terminal
            while self.progress.iteration < self.schedule.iters and not stop.requested:
                if budget is not None and time.monotonic() - started >= budget:
                    log.info("time budget of %.0f s spent at iteration %d", budget, self.progress.iteration)
                    break
                t0 = time.monotonic()
                window.append(self.step(images.batch(self.local_batch, self.schedule.crop, self.sampler)))
                self.progress.iteration += 1
                self.progress.samples_seen += self.schedule.batch_size
                self.progress.wall_seconds += time.monotonic() - t0
                this_run.update(iterations=self.progress.iteration, wall_seconds=round(time.monotonic() - started, 1))
                step_lr = self.opt_g.param_groups[0]["lr"]  # the rate this step ran at, before a drop at the next
                self.set_lr()
                bar.update(1)
                if self.progress.iteration % self.config.log_every == 0 and self.diverged(window[-1]["loss_g"]):
                    self.stop_diverged()
                validating = self.config.eval_every and self.progress.iteration % self.config.eval_every == 0
                if logger and (validating or self.progress.iteration % self.config.log_every == 0 or self.progress.iteration == self.schedule.iters):
                    row = log_row(window, window_start, self.progress.iteration, step_lr)
                    if validating:
                        row.update(self.validate())
                        bar.set_postfix({k.removeprefix("set5_"): f"{v:.2f}" for k, v in row.items() if k.startswith("set5_")})
                    logger.write(row)
                    window, window_start = [], time.monotonic()
                if self.rank == 0 and self.config.snapshot_every and self.progress.iteration % self.config.snapshot_every == 0:
                    self.save_snapshot()
                if time.monotonic() - last_ckpt > self.config.checkpoint_minutes * 60 and self.weights_finite():
                    self.save_checkpoint()
                    self.export()
                    last_ckpt = time.monotonic()
            bar.close()
            if logger and window and self.weights_finite():  # the steps since the last row (a stop by time budget or signal)
                logger.write(log_row(window, window_start, self.progress.iteration, step_lr))
            if self.progress.iteration == this_run["from_iteration"]:  # nothing trained: every file stays as it was
                reason = (f"the run is at iteration {self.progress.iteration} and --iters is {self.schedule.iters} (pass a larger --iters to go on)"
                          if self.progress.iteration >= self.schedule.iters else f"stopped at iteration {self.progress.iteration}")
                log.warning("no training step ran (%s): nothing checkpointed or exported", reason)
                if logger and new_log:
                    log_path.unlink()
            elif not self.weights_finite():
                self.stop_diverged()
            else:
                self.save_checkpoint()
            signalled = stop.requested  # a first signal during the export below changes nothing: it finishes
            if self.rank == 0 and self.progress.iteration > this_run["from_iteration"]:
                self.export(final_eval=self.config.final_eval and not signalled)
                log.info("stopped at iteration %d (%s)", self.progress.iteration, "signal" if signalled else "done")
                if signalled and self.config.final_eval:
                    log.info("the card has no benchmarks block: `python -m srgan_core.provenance --score %s` adds it", self.out.with_suffix(".json"))
        finally:  # a later run in this process (the GPU campaign's next stage) gets signals as before
            stop.restore()
            if logger:
                logger.close()
        if self.world > 1:
            dist.destroy_process_group()

    def diverged(self, loss: torch.Tensor) -> bool:
        """Whether a step's loss is NaN or infinite on any process (every process asks at the same iterations, and
        all of them stop together)."""
        bad = (~torch.isfinite(loss.detach().float())).float()
        if self.world > 1:
            dist.all_reduce(bad)
        return bool(bad.item())

    def weights_finite(self) -> bool:
        """Whether every weight and statistic of the generator (and of its moving average) is finite: what a checkpoint
        or an export may write. The processes hold the same weights, so each can ask on its own."""
        states = [self.generator.state_dict()] + ([self.ema.module.state_dict()] if self.ema is not None else [])
        return all(bool(torch.isfinite(t).all()) for state in states for t in state.values() if t.is_floating_point())

    def stop_diverged(self) -> None:
        """End a run whose loss became NaN or infinite without writing anything: checkpoint, weights and card keep
        the last good state."""
        log.error(
            "the generator's loss or weights are no longer finite at iteration %d: stopping without a checkpoint or export, so %s "
            "and %s keep the last good state; resume with a lower --lr", self.progress.iteration, self.checkpoint_path, self.out,
        )
        raise SystemExit(1)

    def validate(self) -> dict[str, float]:
        """Mean Set5 PSNR (Y, the paper's protocol), colour shift and sub-pixel grid (levels) and NIQE of the current
        generator; NIQE only where the data folder has its model (`niqe_available`)."""
        from srgan_core.evaluate import score_generator

        scores = score_generator(self.exported, "Set5", self.config.data_root, device=self.device, with_niqe=self.niqe_available)
        return {f"set5_{metric}": float(scores[metric].mean()) for metric in VALIDATION_METRICS if metric in scores}

    @functools.cached_property
    def niqe_available(self) -> bool:
        """Whether the data folder has the NIQE model; said once in the log if not (training goes on without it)."""
        path = niqe_model_path(require_data_root(self.config.data_root))
        if not path.is_file():
            log.warning("no NIQE model at %s: the log's set5_niqe column stays empty (`%s` fetches it)", path, NIQE_FETCH)
        return path.is_file()

    def save_weights(self, generator: nn.Module, path: Path) -> None:
        """A generator's weights as shipped: float32 on the CPU, safetensors with the method and iteration."""
        state = {k: v.detach().float().cpu().contiguous() for k, v in generator.state_dict().items()}
        save_file(state, str(path), metadata={"method": self.method, "iterations": str(self.progress.iteration)})
        path.chmod(0o644)  # as the card beside it (safetensors writes through a private temporary file, 0600)

    def save_snapshot(self) -> None:
        """The generator being trained (not its moving average), as RUN_DIR/snapshots/ITERATION.safetensors."""
        folder = self.run_dir / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        self.save_weights(self.generator, folder / f"{self.progress.iteration:07d}.safetensors")

    def export(self, final_eval: bool = False) -> None:
        """Weights (safetensors) + a JSON model card saying how they were made."""
        if self.rank != 0:
            return
        data = [f"train/{p.name}" for p in train_folders(self.config.data_root)]
        card = model_card(self.config, self.recipe, self.schedule, self.progress, self.device, self.world, data)
        if final_eval:  # scored before anything is written: weights and card change together or not at all
            from srgan_core.evaluate import card_benchmarks

            card["benchmarks"] = card_benchmarks(self.exported, self.config.data_root, self.device)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.save_weights(self.exported, self.out)
        write_card(self.out.with_suffix(".json"), card)
        if self.config.out is None and (self.run_dir / "log.csv").is_file():  # shipped weights ship their log
            TRAINING_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.run_dir / "log.csv", shipped_log(self.method))


def log_row(window: list[dict[str, torch.Tensor]], began: float, iteration: int, lr: float) -> dict[str, float]:
    """A log row: the steps' mean losses since the last row, the iteration, its rate and the steps per second."""
    row = {k: torch.stack([w[k] for w in window if k in w]).float().mean().item() for k in window[-1]}
    return row | {"iteration": iteration, "lr": lr, "it_per_s": len(window) / (time.monotonic() - began)}


def check_outputs(run_dir: Path, out: Path) -> None:
    """Refuse a --run-dir or --out that could not be written, before any training (SystemExit naming the flag)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SystemExit(f"error: --run-dir {run_dir} is a file, not a folder")
    if not writable_folder(run_dir):
        raise SystemExit(f"error: --run-dir {run_dir}: {nearest_existing(run_dir)} is not a writable folder")
    if out.is_dir() or out.suffix != ".safetensors":
        raise SystemExit(f"error: --out {out}: give a file name ending .safetensors (its card goes beside it as .json)")
    if not writable_folder(out.parent):
        raise SystemExit(f"error: --out {out}: {nearest_existing(out.parent)} cannot hold it (not a writable folder)")


def exported_to(method: str, runs: list[dict]) -> Path:
    """Where the last of a checkpoint's runs exported its weights: its command's --out, else the shipped weights."""
    command = runs[-1].get("command", "") if runs else ""
    return Path(command_flag(command, "--out") or SPECS[method].weights_file).resolve()


def check_replacing(out: Path, resumed: bool) -> None:
    """Refuse to start a run whose export would replace weights at --out that it does not continue (`resumed`: it
    resumed something else)."""
    if out.is_file():
        try:
            trained = json.loads(out.with_suffix(".json").read_text()).get("iterations")
        except (OSError, ValueError, AttributeError):  # no card, or not one
            trained = None
        what = f"weights trained for {trained:,} iterations" if isinstance(trained, int) else "weights"
        continuing = ("--resume continues them only from their card or from the checkpoint of the run that wrote them" if resumed
                      else "pass --resume to continue them")
        raise SystemExit(f"error: --out {out} holds {what} that this run does not continue: {continuing}; give another --out "
                         "for the new weights, or --overwrite to replace them")


def nearest_existing(path: Path) -> Path | None:
    """`path` or the nearest of its parents that exists (None: none does)."""
    return next((p for p in (path, *path.parents) if p.exists()), None)


def writable_folder(path: Path) -> bool:
    """Whether `path` is a folder this process can write in, or one it can make."""
    found = nearest_existing(path)
    return found is not None and found.is_dir() and os.access(found, os.W_OK)


class StopFlag:
    """Set by the first SIGINT/SIGTERM so the loop ends after the current step and saves everything; a second one acts
    as it would without the trainer (Ctrl-C twice: stop at once). `restore` puts the previous handlers back."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = {sig: signal.signal(sig, self.request) for sig in (signal.SIGINT, signal.SIGTERM)}

    def request(self, signum: int, frame: object) -> None:
        log.info("signal %d: finishing the current step, then checkpointing (the same signal again stops at once)", signum)
        self.requested = True
        self.restore()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = parse_args(argv)
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        Trainer(config).run()
    except (FileNotFoundError, checkpoint.CheckpointError, DeviceError) as exc:  # data, weights, checkpoint, --device
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
