"""Which term of the SRGAN loss pulls an SR image's tone which way.

`python -m tools.probe_tone_pull [--methods srresnet-mse srgan-vgg22 srgan-vgg54] [--batches 12]
[--discriminator-steps 150] [--out results/training/tone_pull.md]`

`tools.probe_tone` found that both SRGANs flatten contrast (lifted shadows, dimmed highlights) while SRResNet-MSE does
not. This probe asks which term of the training loss drives that. On random training crops, as a training step sees
them (96 px, LR made by MATLAB bicubic, the generator in training mode), it writes the SR batch as
SR' = m + a (SR - m) + b per RGB channel, m each crop's channel mean, and takes the derivative of each loss term at
a = 1, b = 0. A gradient step moves a by -dL/da (its *pull* on contrast; > 0 raises it) and b by -dL/db (its pull on
brightness). The terms:
- the VGG22 and VGG54 content losses, scaled as training scales them (`srgan_core.vgg.RESCALE`), in float32 and under
  the bfloat16 autocast the CPU runs train in;
- the adversarial term, 1e-3 x -log D(G(LR)) summed over the paper's batch of 16 (`losses.adversarial_scale("sum")`),
  of the paper's discriminator trained from scratch against this generator's outputs (`tools.probe_discriminator`);
- the pixel MSE (SRResNet-MSE's loss, not the SRGANs'), for reference;
- their sums as an SRGAN step applies them: SRGAN-VGG22's and SRGAN-VGG54's whole generator loss.
Beside them, what HR asks for: the least-squares a - 1 and b (in 8-bit levels) that map each batch's SR onto its HR.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from srgan_core import losses
from srgan_core.data import TrainImages, make_pair, train_folders
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import SPECS
from srgan_core.methods import load_generator
from srgan_core.models import Generator
from srgan_core.paths import DATA_ROOT_DEFAULT, TRAINING_DIR
from srgan_core.provenance import hardware
from srgan_core.vgg import VGGFeatures
from tools.probe_discriminator import train_discriminator
from tools.reports import command_line, publish, report_path

CROP = 96  # the training crop
BATCH = 16  # the paper's batch
LEVELS = 127.5  # 8-bit levels per unit of the [-1, 1] range
SCALE = 1e3  # pulls are reported x 1e3
GENERATORS = ("srresnet-mse", "srgan-vgg22", "srgan-vgg54")
ADVERSARIAL = f"adversarial (x {losses.adversarial_scale('sum'):g})"  # the row of the term as training weighs it

Loss = Callable[[torch.Tensor], torch.Tensor]


def tone_pull(loss: Loss, sr: torch.Tensor, autocast: torch.dtype | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-dL/da and -dL/db per RGB channel at a = 1, b = 0, for SR' = m + a (SR - m) + b, m = each image's channel mean."""
    sr = sr.detach().float()
    mean = sr.mean(dim=(2, 3), keepdim=True)
    a = torch.ones(1, 3, 1, 1, requires_grad=True)
    b = torch.zeros(1, 3, 1, 1, requires_grad=True)
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        value = loss(mean + a * (sr - mean) + b)
    grad_a, grad_b = torch.autograd.grad(value.float(), [a, b])
    return -grad_a.flatten().numpy().astype(np.float64), -grad_b.flatten().numpy().astype(np.float64)


def hr_asks(sr: torch.Tensor, hr: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the least-squares a - 1 and b (in [-1, 1] units) with m + a (SR - m) + b closest to HR."""
    sr, hr = sr.detach().double(), hr.double()
    mean = sr.mean(dim=(2, 3), keepdim=True)
    x, y = (sr - mean).transpose(0, 1).reshape(3, -1), (hr - mean).transpose(0, 1).reshape(3, -1)
    fits = [torch.linalg.lstsq(torch.stack([x[c], torch.ones_like(x[c])], 1), y[c, :, None]).solution[:, 0] for c in range(3)]
    a, b = torch.stack(fits).T
    return (a - 1).numpy(), b.numpy()


def loss_terms(hr: torch.Tensor, vgg: dict[str, losses.VGGLoss], discriminator: torch.nn.Module) -> dict[str, tuple[Loss, torch.dtype | None]]:
    """Each term of the probe as a function of the SR batch, with the autocast it runs under."""
    scale = losses.adversarial_scale("sum")
    terms: dict[str, tuple[Loss, torch.dtype | None]] = {}
    for layer, loss in vgg.items():
        terms[f"VGG{layer} content"] = (lambda s, loss=loss: loss(s, hr), None)
        terms[f"VGG{layer} content, bfloat16"] = (lambda s, loss=loss: loss(s, hr), torch.bfloat16)
    terms[ADVERSARIAL] = (lambda s: scale * losses.generator_adversarial_loss(losses.discriminate(discriminator, hr, s, "joint")[1].float()), None)
    terms["pixel MSE (reference)"] = (lambda s: losses.mse_loss(s, hr), None)
    return terms


def probe_generator(
    generator: Generator, images: TrainImages, vgg: dict[str, losses.VGGLoss], discriminator: torch.nn.Module, batches: int, seed: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per term (and "HR asks for"): the contrast and brightness pulls of each batch, as (batches x 3, batches x 3)."""
    sampler = torch.Generator().manual_seed(seed)
    rows: dict[str, tuple[list, list]] = {}
    for _ in range(batches):
        lr, hr = make_pair(images.batch(BATCH, CROP, sampler))
        with torch.no_grad():
            sr = generator(lr)
        results = {name: tone_pull(loss, sr, autocast) for name, (loss, autocast) in loss_terms(hr, vgg, discriminator).items()}
        adversarial = results[ADVERSARIAL]
        for layer in vgg:  # what an SRGAN step applies: its content loss plus the adversarial term
            content = results[f"VGG{layer} content"]
            results[f"SRGAN-VGG{layer} loss (VGG{layer} + adversarial)"] = (content[0] + adversarial[0], content[1] + adversarial[1])
        results["HR asks for"] = hr_asks(sr, hr)
        for name, (contrast, brightness) in results.items():
            rows.setdefault(name, ([], []))
            rows[name][0].append(contrast)
            rows[name][1].append(brightness)
    return {name: (np.array(c), np.array(b)) for name, (c, b) in rows.items()}


def mean_and_error(values: np.ndarray, scale: float) -> str:
    """R / G / B means over batches, each with its standard error when there are several batches."""
    mean = values.mean(axis=0) * scale
    if len(values) < 2:
        return " / ".join(f"{m:+.2f}" for m in mean)
    error = values.std(axis=0, ddof=1) / np.sqrt(len(values)) * scale
    return " / ".join(f"{m:+.2f} ± {e:.2f}" for m, e in zip(mean, error))


def method_table(pulls: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    rows = []
    for name, (contrast, brightness) in pulls.items():
        if name == "HR asks for":
            rows.append([f"**{name}** (a - 1 x 100; b in levels)", mean_and_error(contrast, 100), mean_and_error(brightness, LEVELS)])
        else:
            rows.append([name, mean_and_error(contrast, SCALE), mean_and_error(brightness, SCALE)])
    return markdown_table(["term", "contrast pull R / G / B (x 1e3)", "brightness pull R / G / B (x 1e3)"], rows)


def report(command: str, args: argparse.Namespace, sections: list[tuple[str, int, dict[str, float], str]]) -> str:
    lines = [
        "# Which loss term pulls the tone which way", "",
        f"Made by `{command}` on {hardware(torch.device('cpu'))}, torch {torch.__version__}.", "",
        (f"On {args.batches} batches of {BATCH} random {CROP} px training crops (seed {args.seed}), each shipped generator in training mode"
        " (batch statistics, as a training step runs it) makes SR; each loss term's derivative is taken with respect to a"
        " per-channel contrast a and brightness b, SR' = m + a (SR - m) + b (m: each crop's channel mean), at a = 1, b = 0."
        " The *pull* is the step gradient descent takes, -dL/da and -dL/db (x 1e3; > 0 raises the contrast or the"
        " brightness), mean ± standard error over the batches. The content losses are scaled as training scales them; the"
        f" adversarial term is that of the paper's discriminator trained from scratch for {args.discriminator_steps} steps"
        " against this generator's outputs (HR and SR as one batch; Adam 1e-4; `tools.probe_discriminator`). **HR asks for**:"
        " the least-squares a - 1 (x 100, so +5 = 5 % more contrast) and b (8-bit levels) that map SR onto HR, per batch."
        " Where a term's pull and HR's ask differ in sign, that term moves the tone away from HR."), "",
    ]
    for method, iterations, verdict, table in sections:
        lines += [
            f"## {method} ({iterations} iterations)", "",
            f"Discriminator after {args.discriminator_steps} steps: D(HR) {verdict['real']:.2f}, D(SR) {verdict['fake']:.2f}.", "",
            table, "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_tone_pull", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", choices=GENERATORS, default=list(GENERATORS), help="shipped generators to probe")
    p.add_argument("--batches", type=int, default=12, help=f"batches of {BATCH} crops per generator")
    p.add_argument("--discriminator-steps", type=int, default=150, help="steps of the fresh discriminator against each generator")
    p.add_argument("--data-root", type=Path, help=f"data folder with train/ (default: {DATA_ROOT_DEFAULT})")
    p.add_argument("--vgg-weights", type=Path, help="VGG19 features safetensors (default: SRGAN_VGG19_WEIGHTS or the shared copy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="Markdown report to write (default: results/training/tone_pull.md, for the shipped settings only)")
    args = p.parse_args(argv)
    if args.batches < 1 or args.discriminator_steps < 1:
        raise SystemExit("--batches and --discriminator-steps must be at least 1")
    args.out = report_path(p, args, TRAINING_DIR / "tone_pull.md")

    images = TrainImages.load(train_folders(args.data_root), CROP)
    vgg = {layer: losses.VGGLoss(VGGFeatures(layer, args.vgg_weights, data_root=args.data_root)) for layer in ("22", "54")}
    sections = []
    for method in args.methods:
        generator = load_generator(method).train()
        iterations = json.loads(SPECS[method].weights_file.with_suffix(".json").read_text())["iterations"]
        verdict: dict[str, float] = {}  # D's mean outputs on its last training batch
        discriminator = train_discriminator(
            generator, images, args.discriminator_steps, BATCH, CROP, args.seed, "joint", lambda step, real, fake, verdict=verdict: verdict.update(real=real, fake=fake),
        )
        print(f"{method}: discriminator trained, D(HR) {verdict['real']:.2f}, D(SR) {verdict['fake']:.2f}", file=sys.stderr, flush=True)
        pulls = probe_generator(generator, images, vgg, discriminator, args.batches, args.seed + 1)
        sections.append((method, iterations, verdict, method_table(pulls)))
    publish(report(command_line("tools.probe_tone_pull", argv), args, sections), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
