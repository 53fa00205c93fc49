"""Which content loss holds colour and the sub-pixel grid in place: `python -m tools.probe_artefacts`.

The SRGANs trained here carry a colour cast (a per-channel offset of the mean) and a sub-pixel grid (a 4x4
periodic pattern, one offset per pixel-shuffle position). This probe asks each content loss which offset and
which pattern it would add to a shipped generator's outputs on training crops: a loss that pins colour wants the
generator's own offset removed (MSE does, exactly), a loss that cannot see it wants anything (its optimum wanders
from batch to batch), and a loss that rewards a grid wants one added. The perturbation is fitted by L-BFGS on
each batch alone, and reported in 8-bit levels beside the generator's own offset and pattern. Writes a Markdown
report (default `results/training/artefact_probe.md`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from srgan_core import losses
from srgan_core.data import TrainImages, make_pair, train_folders
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import LEARNED, SCALE, SPECS
from srgan_core.methods import load_generator
from srgan_core.models import Generator
from srgan_core.paths import DATA_ROOT_DEFAULT, TRAINING_DIR
from srgan_core.vgg import LAYERS, VGGFeatures
from tools.reports import command_line, publish, report_path

LEVEL = 2 / 255  # one 8-bit level in the [-1, 1] range the losses see
CONTENT_LOSSES = ("mse", *(f"vgg{layer}" for layer in LAYERS))
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (SR, HR) -> scalar


def own_artefacts(sr: torch.Tensor, hr: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The generator's mean RGB offset (3,) and zero-mean 4x4 sub-pixel pattern of the channel-mean error, in levels."""
    error = (sr - hr) / LEVEL
    offset = error.mean(dim=(0, 2, 3))
    b, _, h, w = error.shape
    pattern = error.mean(dim=1).reshape(b, h // SCALE, SCALE, w // SCALE, SCALE).mean(dim=(0, 1, 3))
    return offset.numpy(), (pattern - pattern.mean()).numpy()


def loss_optimal_perturbation(
    loss_fn: LossFn, sr: torch.Tensor, hr: torch.Tensor, iterations: int = 30
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The RGB offset and zero-mean 4x4 pattern (levels) that, added to SR, minimise loss_fn(SR + perturbation, HR);
    with the loss before and after."""
    offset = torch.zeros(1, 3, 1, 1, requires_grad=True)
    pattern = torch.zeros(SCALE, SCALE, requires_grad=True)
    reps = (sr.shape[-2] // SCALE, sr.shape[-1] // SCALE)
    optimiser = torch.optim.LBFGS(
        [offset, pattern], max_iter=iterations, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def perturbed_loss() -> torch.Tensor:
        tiled = (pattern - pattern.mean()).repeat(*reps)
        return loss_fn(sr + (offset + tiled) * LEVEL, hr)

    with torch.no_grad():
        before = perturbed_loss().item()

    def closure() -> torch.Tensor:  # relative to the unperturbed loss, so the stopping tolerances mean the same for every loss
        optimiser.zero_grad()
        loss = perturbed_loss() / before
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        after = perturbed_loss().item()
    fitted = (pattern - pattern.mean()).detach()
    return offset.detach().flatten().numpy(), fitted.numpy(), before, after


@dataclass
class Row:
    generator: str
    loss: str
    own_offset: np.ndarray  # (batches, 3)
    own_pattern: np.ndarray  # (batches, 4, 4)
    added_offset: np.ndarray
    added_pattern: np.ndarray
    reduction: np.ndarray  # relative loss reduction per batch


def probe(
    generator_name: str, generator: Generator, loss_name: str, loss_fn: LossFn, images: TrainImages, batches: int, batch: int,
    crop: int, seed: int,
) -> Row:
    """Own and loss-optimal offsets and patterns of one generator on `batches` training batches (the same for every loss)."""
    sampler = torch.Generator().manual_seed(seed)
    columns: list[list] = [[], [], [], [], []]
    for _ in range(batches):
        lr, hr = make_pair(images.batch(batch, crop, sampler))
        with torch.no_grad():
            sr = generator(lr)
        own = own_artefacts(sr, hr)
        added_offset, added_pattern, before, after = loss_optimal_perturbation(loss_fn, sr, hr)
        for column, value in zip(columns, (*own, added_offset, added_pattern, 1 - after / before)):
            column.append(value)
    return Row(generator_name, loss_name, *(np.stack(c) for c in columns))


def content_loss(name: str, vgg_weights: str | None) -> LossFn:
    if name == "mse":
        return losses.mse_loss
    return losses.VGGLoss(VGGFeatures(name.removeprefix("vgg"), vgg_weights))


def mean_ptp(patterns: np.ndarray) -> float:
    """Mean over batches of each 4x4 pattern's max - min."""
    return float(np.ptp(patterns, axis=(1, 2)).mean())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a.ravel() @ b.ravel() / norm) if norm else 0.0


def levels(values: np.ndarray) -> str:
    return " / ".join(f"{v:+.1f}" for v in values)


def report(command: str, args: argparse.Namespace, iterations: dict[str, int], rows: list[Row]) -> str:
    lines = [
        "# Which content loss holds colour and the sub-pixel grid", "", f"Made by `{command}`.", "",
        f"{args.batches} batches of {args.batch} training crops ({args.crop} px, seed {args.seed}), the same for every row."
        " For each shipped generator ("
        + ("training mode: BatchNorm on batch statistics" if args.batch_statistics else "eval mode, as shipped")
        + "; iterations: "
        + ", ".join(f"{name} {n}" for name, n in iterations.items())
        + ") and each content loss, L-BFGS fits on each batch the RGB offset and the zero-mean 4x4 pattern (tiled on the"
        " pixel-shuffle grid) that, added to SR, minimise that loss alone. All values in 8-bit levels.", "",
        "- **own offset**: mean SR - HR per channel (R / G / B); **loss wants added**: the fitted offset, batch mean;"
        " **spread**: its standard deviation over batches (largest channel). A loss that pins colour wants the own"
        " offset removed (added = -own, small spread).",
        "- **own grid**: max - min of the generator's 4x4 pattern; **added grid**: the same of the fitted pattern"
        " (both per batch, then averaged); **cos**: cosine between the own pattern and the fitted one, both batch means"
        " (-1: the loss wants the generator's grid removed, +1: it wants it stronger).",
        "- **loss drop**: how much the fitted perturbation lowers the loss, batch mean.", "",
    ]
    table = [[
        r.generator, r.loss, levels(r.own_offset.mean(axis=0)), levels(r.added_offset.mean(axis=0)),
        f"{r.added_offset.std(axis=0).max():.1f}", f"{mean_ptp(r.own_pattern):.2f}", f"{mean_ptp(r.added_pattern):.2f}",
        f"{cosine(r.own_pattern.mean(axis=0), r.added_pattern.mean(axis=0)):+.2f}", f"{100 * r.reduction.mean():.2f} %",
    ] for r in rows]
    headers = ["generator", "content loss", "own offset", "loss wants added", "spread", "own grid", "added grid", "cos", "loss drop"]
    return "\n".join([*lines, markdown_table(headers, table)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_artefacts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generators", nargs="+", choices=LEARNED, help="shipped generators to probe (default: every one with weights)")
    p.add_argument("--losses", nargs="+", choices=CONTENT_LOSSES, default=list(CONTENT_LOSSES), help="content losses to ask")
    p.add_argument("--batches", type=int, default=4, help="training batches per generator")
    p.add_argument("--batch", type=int, default=16, help="crops per batch")
    p.add_argument("--crop", type=int, default=96, help="HR crop side (a multiple of 4)")
    p.add_argument("--data-root", help=f"data folder with train/ (default: {DATA_ROOT_DEFAULT})")
    p.add_argument("--vgg-weights", help="VGG19 features safetensors (default: SRGAN_VGG19_WEIGHTS or the shared copy)")
    p.add_argument("--batch-statistics", action="store_true",
                   help="run the generators in training mode (BatchNorm on batch statistics), as the losses see them in a step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="Markdown report to write (default: results/training/artefact_probe.md, for the shipped settings only)")
    args = p.parse_args(argv)
    if args.crop % SCALE:
        p.error(f"--crop must be a multiple of {SCALE}, got {args.crop}")
    names = args.generators or [name for name in LEARNED if SPECS[name].weights_file.is_file()]
    if not names:
        p.error("no shipped generator weights in results/models; train one first or pass --generators")
    args.out = report_path(p, args, TRAINING_DIR / "artefact_probe.md")

    images = TrainImages.load(train_folders(args.data_root), args.crop)
    # Loaded once, as a running training may re-export them. Shipped models run in eval mode.
    generators = {name: load_generator(name).train(args.batch_statistics) for name in names}
    iterations = {name: json.loads(SPECS[name].weights_file.with_suffix(".json").read_text())["iterations"] for name in names}
    rows = []
    for loss_name in args.losses:
        loss_fn = content_loss(loss_name, args.vgg_weights)
        for name, generator in generators.items():
            rows.append(probe(name, generator, loss_name, loss_fn, images, args.batches, args.batch, args.crop, args.seed))
            print(f"{name} / {loss_name}: done", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (names.index(r.generator), args.losses.index(r.loss)))
    publish(report(command_line("tools.probe_artefacts", argv), args, iterations, rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
