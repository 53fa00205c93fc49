"""What a fresh discriminator keys on: `python -m tools.probe_discriminator [--steps 200]`.

SRGAN starts a new discriminator against a generator pre-trained on MSE, and D(G(z)) then drops towards 0
within a few hundred iterations. This probe asks why: it trains the paper's discriminator from scratch on
HR crops vs the SRResNet-MSE generator's outputs (the first iterations of SRGAN, generator frozen), then
shows it images that each isolate one cue (blur, the crop border, 8-bit quantisation, noise) and reports
its mean verdict D(x), plus how strongly the generator would hear it: the norms of the two gradients an
SRGAN-VGG54 step sends to the SR pixels. Writes a Markdown report (default
`results/training/discriminator_probe.md`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from srgan_core import losses
from srgan_core.data import TrainImages, make_pair, train_folders
from srgan_core.imresize import imresize
from srgan_core.losses import DISCRIMINATOR_BATCHES, adversarial_scale, discriminate
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import SCALE, SPECS
from srgan_core.methods import load_generator
from srgan_core.models import Discriminator, Generator, signed_to_unit, unit_to_signed
from srgan_core.paths import DATA_ROOT_DEFAULT, TRAINING_DIR
from srgan_core.vgg import VGGFeatures
from tools.reports import command_line, publish, report_path

BORDER = 8  # HR pixels: the band where the generator's zero padding shows


def cue_variants(hr: torch.Tensor, sr: torch.Tensor, lr: torch.Tensor) -> dict[str, torch.Tensor]:
    """Batches in [-1, 1] that differ from HR or SR in one respect each."""
    inside = (..., slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    sr_in_hr_border, hr_in_sr_border = hr.clone(), sr.clone()
    sr_in_hr_border[inside], hr_in_sr_border[inside] = sr[inside], hr[inside]
    return {
        "HR (real)": hr,
        "SRResNet-MSE output (fake)": sr,
        "bicubic upscale of the LR": unit_to_signed(imresize(lr.double(), SCALE).float().clamp(0, 1)),
        "HR blurred (3x3 box)": F.avg_pool2d(F.pad(hr, (1, 1, 1, 1), mode="replicate"), 3, stride=1),
        "HR + Gaussian noise (1 level)": hr + torch.randn_like(hr) * 2 / 255,
        "SR rounded to 8 bit": unit_to_signed((signed_to_unit(sr) * 255).round() / 255),
        f"SR inside, HR {BORDER}px border": sr_in_hr_border,
        f"HR inside, SR {BORDER}px border": hr_in_sr_border,
    }


def train_discriminator(
    generator: Generator, images: TrainImages, steps: int, batch: int, crop: int, seed: int, d_batch: str = "joint",
    progress: Callable[[int, float, float], None] | None = None,
) -> Discriminator:
    """The paper's discriminator, Adam 1e-4, trained on HR vs the frozen generator's SR for `steps` batches,
    HR and SR passing it as one batch or one after the other (`d_batch`, as train.py's --discriminator-batch)."""
    torch.manual_seed(seed)
    discriminator = Discriminator(crop)
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    sampler = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        lr, hr = make_pair(images.batch(batch, crop, sampler))
        with torch.no_grad():
            sr = generator(lr)
        real, fake = discriminate(discriminator, hr, sr, d_batch)
        loss = losses.discriminator_loss(real, fake)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if progress:
            progress(step, torch.sigmoid(real).mean().item(), torch.sigmoid(fake).mean().item())
    return discriminator


@torch.no_grad()
def verdicts(
    discriminator: Discriminator, generator: Generator, images: TrainImages, batches: int, batch: int, crop: int, seed: int,
    d_batch: str = "joint",
) -> dict[str, float]:
    """Mean D(x) per variant over held-out batches; D stays in training mode, seeing each variant as it sees SR
    in an SRGAN step: beside an HR batch ("joint") or alone ("separate")."""
    sampler = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed + 1)
    sums: dict[str, float] = {}
    for _ in range(batches):
        lr, hr = make_pair(images.batch(batch, crop, sampler))
        variants = cue_variants(hr, generator(lr), lr)
        for name, x in variants.items():
            logits = discriminate(discriminator, hr, x.contiguous(), d_batch)[1]
            sums[name] = sums.get(name, 0.0) + torch.sigmoid(logits).mean().item()
    return {name: total / batches for name, total in sums.items()}


def gradient_norms(
    discriminator: Discriminator, generator: Generator, vgg: VGGFeatures, images: TrainImages, batch: int, crop: int, seed: int,
    d_batch: str = "joint",
) -> dict[str, float]:
    """Norms of the gradients w.r.t. the SR pixels of an SRGAN-VGG54 generator loss's two terms."""
    sampler = torch.Generator().manual_seed(seed + 2)
    lr, hr = make_pair(images.batch(batch, crop, sampler))
    with torch.no_grad():
        sr = generator(lr)
    sr.requires_grad_(True)
    (content,) = torch.autograd.grad(losses.VGGLoss(vgg)(sr, hr), sr)
    (adversarial,) = torch.autograd.grad(losses.generator_adversarial_loss(discriminate(discriminator, hr, sr, d_batch)[1]), sr)
    norms = {"content (VGG54)": content.norm().item()}
    for reduction in ("sum", "mean"):
        norms[f"adversarial, batch {reduction} (x {adversarial_scale(reduction):g})"] = adversarial_scale(reduction) * adversarial.norm().item()
    return norms


def report(command: str, args: argparse.Namespace, iterations: int, curve: list[tuple[int, float, float]], scores: dict[str, float], grads: dict[str, float]) -> str:
    lines = [
        "# What a fresh discriminator keys on", "", f"Made by `{command}`.", "",
        f"The paper's discriminator, trained from scratch for {args.steps} steps (batch {args.batch}, {args.crop} px, Adam 1e-4,"
        f" HR and SR {'as one batch' if args.discriminator_batch == 'joint' else 'in separate batches'})"
        f" on HR crops vs the outputs of the shipped SRResNet-MSE ({iterations} iterations) on their LR (generator frozen:"
        " the first iterations of an SRGAN run),"
        f" then shown {args.eval_batches} held-out batches of each variant.", "",
        "## During training", "",
        markdown_table(["step", "D(HR)", "D(SR)"], [[step, f"{real:.3f}", f"{fake:.3f}"] for step, real, fake in curve]), "",
        "## Mean D(x) per variant (1 = judged real)", "",
        markdown_table(["images", "D(x)"], [[name, f"{value:.3f}"] for name, value in scores.items()]), "",
        "## Gradients an SRGAN-VGG54 generator step sends to the SR pixels", "",
        markdown_table(["term", "norm"], [[name, f"{value:.3g}"] for name, value in grads.items()]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_discriminator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="discriminator updates (the shipped report: 200)")
    p.add_argument("--batch", type=int, default=16, help="crops per batch")
    p.add_argument("--crop", type=int, default=96, help="HR crop side (a multiple of 16)")
    p.add_argument("--eval-batches", type=int, default=4, help="held-out batches per variant")
    p.add_argument("--data-root", type=Path, help=f"data folder with train/ (default: {DATA_ROOT_DEFAULT})")
    p.add_argument("--vgg-weights", type=Path, help="VGG19 features safetensors (default: SRGAN_VGG19_WEIGHTS or the shared copy)")
    p.add_argument("--discriminator-batch", choices=DISCRIMINATOR_BATCHES, default="joint", help="how HR and SR reach D, as in train.py")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10, help="steps between rows of the training table")
    p.add_argument("--out", type=Path, help="Markdown report to write (default: results/training/discriminator_probe.md, for the shipped settings only)")
    args = p.parse_args(argv)
    args.out = report_path(p, args, TRAINING_DIR / "discriminator_probe.md")

    generator = load_generator("srresnet-mse")  # eval mode: BN running statistics, as the shipped model runs
    iterations = json.loads(SPECS["srresnet-mse"].weights_file.with_suffix(".json").read_text())["iterations"]
    images = TrainImages.load(train_folders(args.data_root), args.crop)
    curve: list[tuple[int, float, float]] = []

    def progress(step: int, real: float, fake: float) -> None:
        if step % args.log_every == 0 or step == args.steps:
            curve.append((step, real, fake))
            print(f"step {step}: D(HR) {real:.3f}  D(SR) {fake:.3f}", file=sys.stderr, flush=True)

    discriminator = train_discriminator(generator, images, args.steps, args.batch, args.crop, args.seed, args.discriminator_batch, progress)
    scores = verdicts(discriminator, generator, images, args.eval_batches, args.batch, args.crop, args.seed, args.discriminator_batch)
    grads = gradient_norms(
        discriminator, generator, VGGFeatures("54", args.vgg_weights), images, args.batch, args.crop, args.seed, args.discriminator_batch
    )
    publish(report(command_line("tools.probe_discriminator", argv), args, iterations, curve, scores, grads), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
