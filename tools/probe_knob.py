"""Does the perception-distortion knob trade distortion for perception smoothly?

`python -m tools.probe_knob [--alphas 0 0.25 0.5 0.75 1] [--datasets Set5 Set14] [--out results/knob.md]`

Network interpolation, (1 - alpha) x A + alpha x SRGAN-VGG54, scored on the benchmarks at each alpha for two choices
of A: the weights SRGAN-VGG54 was fine-tuned from (what the app's knob blends, `srgan_core.methods.knob_start`) and
the shipped SRResNet-MSE, when that has trained on past the start. Blending only makes sense between networks that
share a start; the second series shows what happens otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from srgan_core.data import BENCHMARKS
from srgan_core.evaluate import (
    METRIC_DIGITS,
    METRICS,
    dataset_means,
    fmt,
    generator_upscale,
)
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import KNOB_ENDS, SPECS
from srgan_core.methods import (
    MethodUnavailable,
    generator_from_file,
    interpolate_generators,
    knob_start,
    load_generator,
)
from srgan_core.models import Generator
from srgan_core.paths import shown_path
from srgan_core.provenance import hardware
from tools.reports import command_line, publish

START = "its start"  # the label of the series the app's knob draws
SHIPPED = "shipped"


def alpha_zero_ends() -> dict[str, Path]:
    """{label: weights} of the alpha-0 ends: the tuned end's start, and the shipped base when it differs from it."""
    start, shipped = knob_start().path, SPECS[KNOB_ENDS[0]].weights_file
    ends = {START: start}
    if start != shipped and shipped.is_file():  # knob_start takes the shipped file whenever it is the start
        ends[SHIPPED] = shipped
    return ends


def scores(end: Generator, tuned: Generator, alpha: float, datasets: list[str], data_root: Path | None) -> dict[str, float]:
    """Mean of each metric per dataset of the blend at `alpha`, keyed '<dataset> <metric>'."""
    means = dataset_means(generator_upscale(interpolate_generators(end, tuned, alpha)), datasets, data_root, with_niqe=True)
    return {f"{dataset} {metric}": means[dataset][metric] for dataset in datasets for metric in METRICS}


def below_both_ends(rows: pd.DataFrame, dataset: str) -> list[str]:
    """One line per series whose PSNR inside (0, 1) drops below its PSNR at both alpha 0 and alpha 1."""
    lines = []
    for end, series in rows.groupby("end", sort=False):
        psnr = series.set_index("alpha")[f"{dataset} psnr"]
        inside = psnr[(psnr.index > 0) & (psnr.index < 1)]
        if 0.0 in psnr.index and 1.0 in psnr.index and len(inside) and inside.min() < min(psnr[0.0], psnr[1.0]):
            lines.append(
                f"- {dataset}, A = {end}: PSNR {inside.min():.2f} dB at alpha {inside.idxmin():g}, below both ends "
                f"({psnr[0.0]:.2f} at 0, {psnr[1.0]:.2f} at 1)."
            )
    return lines


def report(rows: pd.DataFrame, ends: dict[str, Path], datasets: list[str], command: str) -> str:
    """Markdown: what each series is, one table per dataset (a row per series and alpha), and where a blend is worse
    than both of its ends."""
    tuned = KNOB_ENDS[1]
    lines = [
        "# The perception-distortion knob: which weights to blend",
        "",
        (
            f"Made by `{command}` on {hardware(torch.device('cpu'))}, torch {torch.__version__}. Every weight and "
            f"batch-norm statistic is (1 - alpha) x A + alpha x {tuned}, float32. Colour shift and grid in 8-bit "
            "levels, NIQE on the MATLAB scale (lower = more natural); each cell is the mean over the dataset's images."
        ),
        "",
        *(f"- A = {label}: `{shown_path(path)}`" for label, path in ends.items()),
    ]
    if SHIPPED not in ends:
        lines.append(f"- The shipped {KNOB_ENDS[0]} is {tuned}'s start, so there is one series.")
    for dataset in datasets:
        columns = [f"{dataset} {metric}" for metric in METRICS]
        table = [
            [row["end"], f"{row['alpha']:.2f}", *(fmt(row[c], METRIC_DIGITS[c.split()[1]]) for c in columns)]
            for _, row in rows.iterrows()
        ]
        lines += ["", f"## {dataset}", "", markdown_table(["A", "alpha", *METRICS], table)]
    worse = [line for dataset in datasets for line in below_both_ends(rows, dataset)]
    judged = {0.0, 1.0} <= set(rows["alpha"])
    lines += ["", "## Blends worse than both ends (PSNR)", "", *(worse or ["- None." if judged else "- Not judged: it needs alpha 0 and 1 scored."])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_knob", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14"], choices=BENCHMARKS)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--out", type=Path, help="write the report here (Markdown) as well as printing it")
    args = p.parse_args(argv)
    if any(not 0.0 <= a <= 1.0 for a in args.alphas):
        raise SystemExit("error: --alphas must lie in [0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        ends = alpha_zero_ends()
        tuned = load_generator(KNOB_ENDS[1])
    except MethodUnavailable as exc:
        raise SystemExit(f"error: {exc}") from None
    rows = []
    for label, path in ends.items():
        end = generator_from_file(path)
        for alpha in sorted(set(args.alphas)):
            rows.append({"end": label, "alpha": alpha, **scores(end, tuned, alpha, args.datasets, args.data_root)})
    publish(report(pd.DataFrame(rows), ends, args.datasets, command_line("tools.probe_knob", argv)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
