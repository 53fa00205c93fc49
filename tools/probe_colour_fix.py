"""What does the low-frequency colour fix (`srgan_core.colour_fix`, not in the paper) do to each method's scores?

`python -m tools.probe_colour_fix [--methods srgan-vgg54 srgan-vgg22] [--sigmas 4 8 16] [--out results/colour_fix.md]`

Scores every method as trained, then with the fix at each Gaussian width (sigma in SR pixels), on the benchmarks:
PSNR, SSIM, colour shift, sub-pixel grid and NIQE, each the mean over the dataset's images. The fix should take the
colour shift to about bicubic's and leave the network's fine detail (NIQE, grid) as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pandas as pd
import torch

from srgan_core.colour_fix import SIGMA, ColourFixedUpscaler
from srgan_core.data import BENCHMARKS
from srgan_core.evaluate import METRIC_DIGITS, METRICS, dataset_means, fmt
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import METHODS
from srgan_core.methods import MethodUnavailable, ProgressFn, Upscaler, load_method
from srgan_core.provenance import hardware
from tools.reports import command_line, publish


class Remembered(Upscaler):
    """An upscaler that runs each input once: the variants share one network pass per image."""

    def __init__(self, upscaler: Upscaler) -> None:
        self.upscaler, self.name, self.precision = upscaler, upscaler.name, upscaler.precision
        self.bytes_per_output_pixel = upscaler.bytes_per_output_pixel
        self.outputs: dict[bytes, torch.Tensor] = {}

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        key = hashlib.sha256(lr.numpy().tobytes()).digest() + str(tuple(lr.shape)).encode()
        if key not in self.outputs:
            self.outputs[key] = self.upscaler.upscale_tensor(lr, progress)
        return self.outputs[key]


def variants(method: str, sigmas: list[float]) -> dict[str, Upscaler]:
    """{label: upscaler}: the method as trained, then with the fix at each sigma."""
    plain = Remembered(load_method(method, torch.device("cpu")))
    return {"as trained": plain} | {f"colour fix, sigma {s:g}": ColourFixedUpscaler(plain, s) for s in sigmas}


def mean_scores(upscaler: Upscaler, datasets: list[str], data_root: Path | None) -> dict[str, float]:
    """Mean of each metric per dataset, keyed '<dataset> <metric>'."""
    means = dataset_means(upscaler.upscale, datasets, data_root, with_niqe=True)
    return {f"{dataset} {metric}": means[dataset][metric] for dataset in datasets for metric in METRICS}


def report(rows: pd.DataFrame, datasets: list[str], command: str) -> str:
    """Markdown: one table per dataset, a row per method and variant."""
    lines = [
        "# The low-frequency colour fix (not in the paper)",
        "",
        f"Made by `{command}` on {hardware(torch.device('cpu'))}, torch {torch.__version__}. The fix replaces an SR "
        "image's Gaussian low-pass (sigma in SR pixels) with that of the MATLAB-bicubic upscale of its input "
        "(`srgan_core.colour_fix`). Colour shift and grid in 8-bit levels, NIQE on the MATLAB scale (lower = more "
        "natural); each cell is the mean over the dataset's images.",
    ]
    for dataset in datasets:
        columns = [f"{dataset} {metric}" for metric in METRICS]
        table = [
            [row["method"], row["variant"], *(fmt(row[c], METRIC_DIGITS[c.split()[1]]) for c in columns)]
            for _, row in rows.iterrows()
        ]
        lines += ["", f"## {dataset}", "", markdown_table(["method", "variant", *METRICS], table)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_colour_fix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["srgan-vgg54", "srgan-vgg22"], choices=METHODS, metavar="METHOD")
    p.add_argument("--sigmas", type=float, nargs="+", default=[4.0, SIGMA, 16.0], help="Gaussian widths in SR pixels")
    p.add_argument("--datasets", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--out", type=Path, help="write the report here (Markdown) as well as printing it")
    args = p.parse_args(argv)
    if any(s <= 0 for s in args.sigmas):
        raise SystemExit("error: --sigmas must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for method in args.methods:
        try:
            upscalers = variants(method, args.sigmas)
        except MethodUnavailable as exc:
            raise SystemExit(f"error: {exc}") from None
        for label, upscaler in upscalers.items():
            rows.append({"method": method, "variant": label, **mean_scores(upscaler, args.datasets, args.data_root)})
    publish(report(pd.DataFrame(rows), args.datasets, command_line("tools.probe_colour_fix", argv)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
