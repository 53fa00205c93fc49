"""Does the generator train as well under bfloat16 autocast on this CPU, and how much faster is a step?

`python -m tools.probe_generator_bf16 [--batches 3] [--rounds 4] [--out results/training/generator_bf16.md]`

Builds two SRGAN-VGG54 trainers from the shipped SRResNet-MSE with one discriminator: `--amp losses` (VGG19 and the
discriminator in bfloat16, the generator in float32) and `--amp auto` (the whole step in bfloat16 where the CPU
has native bfloat16). Quality: on the same batches, the cosine and relative error between the two generator
gradients, and the largest difference of the SR outputs in 8-bit levels. Speed: whole training steps of the
two, alternated round by round so that other load on the machine hits both alike; the best of each is reported.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from srgan_core import losses, train
from srgan_core.data import TrainImages, make_pair, train_folders
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import SPECS
from srgan_core.provenance import hardware
from tools.reports import command_line, publish

MODES = ("losses", "auto")


def trainers(batch: int) -> dict[str, train.Trainer]:
    start = str(SPECS["srresnet-mse"].weights_file)
    built = {mode: train.Trainer(train.parse_args(["--method", "srgan-vgg54", "--device", "cpu", "--amp", mode, "--init", start,
                                                   "--batch-size", str(batch)])) for mode in MODES}
    for trainer in built.values():
        trainer.initialise()
    built["auto"].discriminator.load_state_dict(built["losses"].discriminator.state_dict())
    return built


def generator_gradient(trainer: train.Trainer, hr_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's gradient of its SRGAN-VGG54 loss on one batch, and its SR output."""
    lr, hr = make_pair(hr_uint8)
    trainer.generator.zero_grad(set_to_none=True)
    with trainer.autocast(generator=True):
        sr = trainer.generator(lr)
    with trainer.autocast():
        adversarial = losses.generator_adversarial_loss(trainer.discriminate_sr(hr, sr).float())
        loss = trainer.content_loss(sr.float(), hr) + trainer.adversarial_scale * adversarial
    loss.backward()
    return torch.cat([p.grad.flatten() for p in trainer.generator.parameters()]), sr.detach().float()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_generator_bf16", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=train.positive(int), default=16)
    p.add_argument("--batches", type=train.positive(int), default=3, help="batches compared for the gradients")
    p.add_argument("--rounds", type=train.positive(int), default=4, help="timed steps of each mode, alternated")
    p.add_argument("--out", type=Path, help="write the report here (Markdown) as well as printing it")
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    built = trainers(args.batch)
    if built["auto"].precision == built["losses"].precision:
        raise SystemExit("this CPU has no native bfloat16: both modes are the same here")
    images = TrainImages.load(train_folders(), 96)
    sampler = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(args.batches):
        hr = images.batch(args.batch, 96, sampler)
        (g32, sr32), (g16, sr16) = (generator_gradient(built[mode], hr) for mode in MODES)
        rows.append((F.cosine_similarity(g32, g16, dim=0).item(), ((g16 - g32).norm() / g32.norm()).item(), ((sr16 - sr32).abs().max() * 127.5).item()))
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for mode in MODES:
        built[mode].step(images.batch(args.batch, 96, sampler))  # warm-up
    for _ in range(args.rounds):
        for mode in MODES:
            hr = images.batch(args.batch, 96, sampler)
            start = time.perf_counter()
            built[mode].step(hr)
            seconds[mode].append(time.perf_counter() - start)
    best = {mode: min(values) for mode, values in seconds.items()}
    lines = [
        "# The generator under bfloat16 autocast on the CPU",
        "",
        f"Made by `{command_line('tools.probe_generator_bf16', argv)}` on {hardware(torch.device('cpu'))}, "
        f"torch {torch.__version__}; SRGAN-VGG54 from the shipped SRResNet-MSE, batch {args.batch} of 96 px crops. Load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other processes on the machine slow both modes alike).",
        "",
        markdown_table(
            ["batch", "gradient cosine", "relative gradient error", "largest SR difference (levels)"],
            [[i + 1, f"{cos:.4f}", f"{err:.3f}", f"{diff:.2f}"] for i, (cos, err, diff) in enumerate(rows)],
        ),
        "",
        markdown_table(
            ["mode", "what runs in bfloat16", "step times (s)", "best (s)"],
            [[f"`--amp {mode}`", built[mode].precision, ", ".join(f"{s:.2f}" for s in seconds[mode]), f"{best[mode]:.2f}"] for mode in MODES],
        ),
        "",
        f"Best step: {best['losses'] / best['auto']:.2f}x faster with the generator in bfloat16 too.",
    ]
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
