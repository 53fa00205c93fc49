"""Benchmark methods the paper's way: `python -m srgan_core.evaluate --methods ... --datasets Set5 Set14 BSD100`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from srgan_core.data import BENCHMARKS, benchmark_images
from srgan_core.images import downscale_x4, load_image, modcrop, save_png, to_tensor, to_uint8
from srgan_core.inference import generate_tiled, pick_device, prepare_generator
from srgan_core.methods import METHODS, MethodUnavailable, Upscaler, load_method
from srgan_core.metrics import psnr_y, ssim_y
from srgan_core.models import Generator
from srgan_core.paper import published
from srgan_core.paths import REPO_ROOT


def score_upscale(
    upscale, dataset: str, data_root: Path | str | None = None, images: list[str] | None = None, save_dir: Path | None = None
) -> pd.DataFrame:
    """PSNR/SSIM of `upscale(lr_uint8) -> sr_uint8` on every (or the named) image of a benchmark."""
    rows = []
    paths = benchmark_images(dataset, data_root)
    if images is not None:
        wanted = set(images)
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise FileNotFoundError(f"{dataset} has no image(s) {sorted(missing)}")
    for path in paths:
        hr = modcrop(load_image(path))
        sr = upscale(downscale_x4(hr))
        rows.append({"dataset": dataset, "image": path.stem, "psnr": psnr_y(sr, hr), "ssim": ssim_y(sr, hr)})
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            save_png(sr, save_dir / f"{path.stem}.png")
    return pd.DataFrame(rows, columns=["dataset", "image", "psnr", "ssim"])


def score_generator(
    generator: Generator, dataset: str, data_root: Path | str | None = None, device: torch.device | None = None
) -> pd.DataFrame:
    """Scores of a generator being trained, through the same inference path the methods use."""
    model = prepare_generator(generator, pick_device(device))
    return score_upscale(lambda lr: to_uint8(generate_tiled(model, to_tensor(lr))), dataset, data_root)


def score_images(
    methods: list[str], dataset: str, data_root: Path | str | None = None, images: list[str] | None = None
) -> pd.DataFrame:
    """Per-image PSNR/SSIM: columns dataset, image, method, psnr, ssim."""
    frames = []
    for name in methods:
        upscaler: Upscaler = load_method(name)
        frame = score_upscale(upscaler.upscale, dataset, data_root, images)
        frames.append(frame.assign(method=name))
    columns = ["dataset", "image", "method", "psnr", "ssim"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def paper_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR/SSIM per dataset and method, with the paper's published values beside them."""
    table = scores.groupby(["dataset", "method"], sort=False)[["psnr", "ssim"]].mean().reset_index()
    table["paper_psnr"] = [published(d, m, "psnr") for d, m in zip(table["dataset"], table["method"])]
    table["paper_ssim"] = [published(d, m, "ssim") for d, m in zip(table["dataset"], table["method"])]
    return table


def to_markdown(table: pd.DataFrame) -> str:
    def fmt(value: float | None, digits: int) -> str:
        return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"

    lines = []
    for dataset, group in table.groupby("dataset", sort=False):
        lines += [f"### {dataset}", "", "| method | PSNR (dB) | SSIM | paper PSNR | paper SSIM |", "|---|---|---|---|---|"]
        for row in group.itertuples():
            lines.append(
                f"| {row.method} | {fmt(row.psnr, 2)} | {fmt(row.ssim, 4)} | {fmt(row.paper_psnr, 2)} | {fmt(row.paper_ssim, 4)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD", help=f"methods to score: {', '.join(METHODS)}")
    p.add_argument("--datasets", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS, help="benchmarks to score on")
    p.add_argument("--data-root", type=Path, help="folder with benchmarks/<name>/*.png (default: SRGAN_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "evaluation", help="folder for table.md, table.csv and per_image.csv")
    p.add_argument("--save-images", type=Path, help="also write every SR image to DIR/<method>/<dataset>/<image>.png")
    args = p.parse_args(argv)

    frames, skipped = [], []
    for name in tqdm(args.methods, desc="methods"):
        try:
            upscaler = load_method(name)
        except MethodUnavailable as exc:
            skipped.append(str(exc))
            continue
        for dataset in args.datasets:
            save = args.save_images / name / dataset if args.save_images else None
            frames.append(score_upscale(upscaler.upscale, dataset, args.data_root, save_dir=save).assign(method=name))
    if not frames:
        raise SystemExit("nothing to evaluate: " + "; ".join(skipped))
    scores = pd.concat(frames, ignore_index=True)
    table = paper_table(scores)
    args.out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(args.out / "per_image.csv", index=False, float_format="%.4f")
    table.to_csv(args.out / "table.csv", index=False, float_format="%.4f")
    note = "".join(f"\nSkipped: {s}\n" for s in skipped)
    (args.out / "table.md").write_text(to_markdown(table) + note)
    print(to_markdown(table) + note)


if __name__ == "__main__":
    main()
