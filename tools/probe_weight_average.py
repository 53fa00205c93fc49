"""Do an SRGAN's artefacts wander around a small value, so that averaging its recent weights removes them?

`python -m tools.probe_weight_average runs/srgan-vgg54/snapshots [--windows 4 8 16] [--out results/training/weight_average_srgan-vgg54.md]`

The snapshots are the generator weights a run keeps with `python -m srgan_core.train ... --snapshot-every N`. The
probe scores every snapshot on the benchmarks (PSNR, SSIM, colour shift, sub-pixel grid, NIQE), then the uniform
average of the last K snapshots for each K in --windows (every float tensor averaged, BatchNorm running statistics
included). The Set5 validation of the training log swings from one point to the next; if colour shift and grid are
oscillations around a small value, the averages score far below the single snapshots; if they are a bias the
generator holds, the averages score like the snapshots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from srgan_core.data import BENCHMARKS
from srgan_core.evaluate import METRIC_DIGITS, METRICS, dataset_means, fmt, generator_upscale
from srgan_core.markdown import markdown_table
from srgan_core.models import Generator
from srgan_core.provenance import hardware
from tools.reports import command_line, publish


def snapshot_files(folder: Path, up_to: int | None = None) -> dict[int, Path]:
    """{iteration: file} of a snapshot folder (files named by their iteration), up to an iteration if given."""
    if not folder.is_dir():
        raise SystemExit(f"error: {folder} is not a folder of snapshots (train --snapshot-every N writes RUN_DIR/snapshots)")
    files = {int(p.stem): p for p in folder.glob("*.safetensors") if p.stem.isdigit() and (up_to is None or int(p.stem) <= up_to)}
    if len(files) < 2:
        raise SystemExit(f"error: {folder} holds {len(files)} snapshot(s) named ITERATION.safetensors; averaging needs at least 2")
    return dict(sorted(files.items()))


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of generator state dicts; integer buffers (BatchNorm's batch counter) from the last."""
    return {
        key: torch.stack([s[key] for s in states]).mean(0) if value.is_floating_point() else states[-1][key]
        for key, value in states[-1].items()
    }


def scores(state: dict[str, torch.Tensor], datasets: list[str], data_root: Path | None) -> dict[str, float]:
    """Mean of each metric per dataset, keyed '<dataset> <metric>'."""
    generator = Generator()
    generator.load_state_dict(state)
    means = dataset_means(generator_upscale(generator, torch.device("cpu")), datasets, data_root, with_niqe=True)
    return {f"{dataset} {metric}": means[dataset][metric] for dataset in datasets for metric in METRICS}


def method_of(snapshot: Path) -> str:
    """The method a snapshot's metadata names (train writes it), or 'a generator'."""
    with safe_open(str(snapshot), "pt") as f:
        return (f.metadata() or {}).get("method", "a generator")


def report(rows: pd.DataFrame, datasets: list[str], method: str, command: str) -> str:
    """Markdown: one table per dataset (the snapshots, their mean and spread, the averages)."""
    singles = rows[rows["weights"].str.startswith("snapshot")]
    lines = [
        f"# Averaging the recent weights of {method}",
        "",
        f"Made by `{command}` on {hardware(torch.device('cpu'))}, torch {torch.__version__}. Colour shift and grid in 8-bit "
        "levels, NIQE on the MATLAB scale (lower = more natural); each cell is the mean over the dataset's images.",
    ]
    for dataset in datasets:
        columns = [f"{dataset} {metric}" for metric in METRICS]
        digits = [METRIC_DIGITS[c.split()[1]] for c in columns]
        table = [[row["weights"], *(fmt(row[c], d) for c, d in zip(columns, digits))] for _, row in rows.iterrows()]
        spread = [f"{fmt(singles[c].mean(), d)} ({fmt(singles[c].std(), d)})" for c, d in zip(columns, digits)]
        table.insert(len(singles), ["snapshots: mean (sd)", *spread])
        lines += ["", f"## {dataset}", "", markdown_table(["weights", *METRICS], table)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_weight_average", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snapshots", type=Path, help="a run's snapshot folder (RUN_DIR/snapshots)")
    p.add_argument("--to", dest="up_to", type=int, help="only the snapshots up to this iteration (e.g. before a learning-rate drop)")
    p.add_argument("--windows", type=int, nargs="+", default=[4, 8, 16], help="average the last K snapshots, for each K")
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14"], choices=BENCHMARKS)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--out", type=Path, help="write the report here (Markdown) as well as printing it")
    args = p.parse_args(argv)
    if min(args.windows) < 1:
        p.error("--windows: each K is a number of snapshots, 1 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    files = snapshot_files(args.snapshots, args.up_to)
    states = {iteration: load_file(str(path)) for iteration, path in files.items()}
    iterations = list(states)
    rows = [{"weights": f"snapshot {i}", **scores(states[i], args.datasets, args.data_root)} for i in iterations]
    for k in sorted({min(k, len(iterations)) for k in args.windows}):
        kept = iterations[-k:]
        rows.append({"weights": f"average of the last {k} ({kept[0]}-{kept[-1]})", **scores(average([states[i] for i in kept]), args.datasets, args.data_root)})
    command = command_line("tools.probe_weight_average", argv)
    publish(report(pd.DataFrame(rows), args.datasets, method_of(next(iter(files.values()))), command), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
