"""Figures for results/: training curves and a side-by-side comparison of every method.

    python -m tools.figures curves runs/srresnet-mse/log.csv -o results/training/srresnet-mse.png
    python -m tools.figures compare --image astronaut --box 140 40 96 -o results/figures/comparison.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.ticker import MaxNLocator, StrMethodFormatter  # noqa: E402
from skimage import data as skdata  # noqa: E402

from srgan_core.colour_fix import ColourFixedUpscaler  # noqa: E402
from srgan_core.images import downscale_x4, modcrop  # noqa: E402
from srgan_core.method_specs import METHODS, SPECS  # noqa: E402
from srgan_core.methods import MethodUnavailable, load_method  # noqa: E402
from srgan_core.metrics import psnr_y  # noqa: E402
from srgan_core.niqe import niqe  # noqa: E402
from srgan_core.paths import replacing
from srgan_core.training_log import read_log  # noqa: E402

BICUBIC_SET5_PSNR = 28.43  # measured with srgan_core (tests/test_imresize.py)
SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
PANELS_PER_ROW = 4  # the comparison wraps to a new row after this many crops


def method_of_log(log_csv: Path) -> str:
    """`results/training/<method>_log.csv` or `runs/<method>/log.csv` -> <method>."""
    return log_csv.stem.removesuffix("_log") if log_csv.stem.endswith("_log") else log_csv.parent.name


def plot_curves(log_csv: Path, out: Path, title: str | None = None) -> None:
    """Content/generator loss, Set5 PSNR and (for SRGAN) D(x) / D(G(z)) against iteration."""
    log = read_log(log_csv, {"iteration", "lr", "loss_content", "loss_g", "d_real", "d_fake", "set5_psnr"})
    if log.empty:
        raise SystemExit(f"{log_csv} has no rows yet")
    gan = log["d_fake"].notna().any()
    fig, axes = plt.subplots(1, 3 if gan else 2, figsize=(15 if gan else 10, 4))
    axes[0].plot(log["iteration"], log["loss_content"], lw=0.8, label="content loss")
    if gan:
        axes[0].plot(log["iteration"], log["loss_g"], lw=0.8, label="generator loss")
    axes[0].set(xlabel="iteration", ylabel="loss", yscale="log", title="losses (mean per log row)")
    axes[0].legend()
    psnr = log.dropna(subset=["set5_psnr"])
    axes[1].plot(psnr["iteration"], psnr["set5_psnr"], marker="o", ms=3, label="Set5 PSNR (Y)")
    axes[1].axhline(BICUBIC_SET5_PSNR, color="grey", ls="--", label=f"bicubic {BICUBIC_SET5_PSNR} dB")
    for i, (_, row) in enumerate(log[log["lr"].diff().fillna(0) != 0].iterrows()):  # one legend entry, each new rate at the top
        axes[1].axvline(row["iteration"], color="tab:red", ls=":", lw=1, label="learning-rate change" if i == 0 else None)
        axes[1].text(row["iteration"], 0.99, f"{row['lr']:g}", transform=axes[1].get_xaxis_transform(), rotation=90,
                     ha="right", va="top", fontsize=6, color="tab:red")
    axes[1].set(xlabel="iteration", ylabel="dB", title="Set5 PSNR")
    legend_axes = axes[1]
    artefacts = {"set5_colour_shift": ("Set5 colour shift", "tab:orange"), "set5_grid": ("Set5 sub-pixel grid", "tab:purple")}
    logged = {column: log.dropna(subset=[column]) for column in artefacts if column in log and log[column].notna().any()}
    if logged:  # logs from before these columns have none
        levels = axes[1].twinx()
        for column, rows in logged.items():
            label, colour = artefacts[column]
            levels.plot(rows["iteration"], rows[column], color=colour, marker="s", ms=3, lw=0.8, label=label)
        top = max(rows[column].max() for column, rows in logged.items())
        levels.set(ylabel="artefacts (levels)", ylim=(0, max(4.0, 1.2 * top)))
        axes[1].set_title("Set5 PSNR and artefacts")
        legend_axes = levels  # the twin axes are drawn on top: one legend there stays readable
    handles = [h for ax in dict.fromkeys((axes[1], legend_axes)) for h in ax.get_legend_handles_labels()[0]]
    legend_axes.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    if gan:
        axes[2].plot(log["iteration"], log["d_real"], lw=0.8, label="D(x)")
        axes[2].plot(log["iteration"], log["d_fake"], lw=0.8, label="D(G(z))")
        axes[2].set(xlabel="iteration", ylim=(0, 1), title="discriminator outputs")
        axes[2].legend()
    for ax in axes:  # at most 6 iteration ticks with thousands separators, so 5-digit labels do not run together
        ax.xaxis.set_major_locator(MaxNLocator(6, integer=True))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    fig.suptitle(title or method_of_log(log_csv))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as partial:
        fig.savefig(partial, format=out.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)


def plot_comparison(image: str, box: tuple[int, int, int], out: Path, methods: list[str], colour_fix: bool = False) -> list[str]:
    """Every available method on one HR crop of a scikit-image sample, labelled with PSNR and NIQE of the
    whole image (with `colour_fix`, each learned one also through `srgan_core.colour_fix`); returns the methods
    skipped."""
    if image not in SAMPLE_IMAGES:
        raise SystemExit(f"error: --image must be one of {', '.join(SAMPLE_IMAGES)}, got {image!r}")
    hr = modcrop(getattr(skdata, image)())
    if hr.ndim == 2:
        hr = np.repeat(hr[:, :, None], 3, axis=2)
    lr = downscale_x4(hr)
    left, top, size = box
    if left + size > hr.shape[1] or top + size > hr.shape[0]:
        raise SystemExit(f"--box {box} falls outside the {hr.shape[1]}x{hr.shape[0]} image")
    panels, skipped = [], []
    for name in methods:
        try:
            upscaler = load_method(name)
        except MethodUnavailable as exc:
            skipped.append(str(exc))
            continue
        shown = [(name, upscaler)]
        if colour_fix and SPECS[name].learned:
            shown.append((f"{name} + colour fix", ColourFixedUpscaler(upscaler)))
        for label, method in shown:
            sr = method.upscale(lr)
            panels.append((f"{label}\n{psnr_y(sr, hr):.2f} dB, NIQE {niqe(sr):.2f}", sr))
    panels.append((f"original (HR)\nNIQE {niqe(hr):.2f}", hr))
    columns = min(len(panels), PANELS_PER_ROW)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, img) in zip(axes.flat, panels):
        ax.imshow(img[top : top + size, left : left + size], interpolation="nearest")
        ax.set_title(label, fontsize=9)
    fig.suptitle(f"4x, skimage.data.{image}(), crop x={left} y={top} {size}px (PSNR / NIQE of the whole image; NIQE: lower = more natural)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as partial:
        fig.savefig(partial, format=out.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return skipped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.figures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("curves", help="training curves from a train log CSV")
    c.add_argument("log", type=Path, help="runs/<method>/log.csv or results/training/<method>_log.csv")
    c.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    m = sub.add_parser("compare", help="all methods on a crop of a scikit-image sample photo")
    m.add_argument("--image", default="astronaut", help=f"one of {', '.join(SAMPLE_IMAGES)}")
    m.add_argument("--box", type=int, nargs=3, default=(140, 40, 96), metavar=("LEFT", "TOP", "SIZE"), help="HR crop to show")
    m.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD", help="methods to show (default: all available)")
    m.add_argument("--colour-fix", action="store_true", help="also show each learned method through the low-frequency colour fix (not in the paper)")
    m.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args(argv)
    formats = FigureCanvasBase.get_supported_filetypes()
    if args.out.suffix.lower().lstrip(".") not in formats:
        p.error(f"-o {args.out}: end the name in one of .{', .'.join(sorted(formats))}")
    if args.command == "compare" and (args.box[2] <= 0 or min(args.box[:2]) < 0):
        p.error(f"--box {' '.join(map(str, args.box))}: LEFT and TOP are 0 or more, SIZE above 0")
    try:  # refuse an unwritable output before drawing
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"error: cannot write to {args.out.parent}: {exc.strerror or exc}") from None
    if args.command == "curves":
        plot_curves(args.log, args.out)
    else:
        for reason in plot_comparison(args.image, tuple(args.box), args.out, args.methods, args.colour_fix):
            print(f"skipped: {reason}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
