"""Where does an SR method's colour cast come from? Its error by brightness, per image, and after a global correction.

`python -m tools.probe_tone [--methods srresnet-mse srgan-vgg22 srgan-vgg54] [--calibration-crops 160] [--out results/training/tone_probe.md]`

1. **By brightness.** On every benchmark image, the mean of SR - HR per RGB channel within bands of the brightness
   (mean of R, G, B) of the input's bicubic upscale, a function of the input only. A method that is right on average
   given its input is near 0 in every band: SRResNet-MSE (trained for the conditional mean) should be, and so should a
   GAN that samples the right images; bicubic, a blur, is not. One that flattens contrast is too bright in the dark
   bands and too dark in the bright ones. (Banding on HR's own brightness would show a regression to the mean even
   for SRResNet-MSE.)
2. **Per image.** The signed per-channel mean error of each image: its mean over the dataset and its spread. A cast
   that one constant could remove has a small spread.
3. **A global correction.** A per-channel gain and offset, fitted by least squares on 16x16-pixel block means of SR
   and HR over random training crops (not the benchmarks), applied to every benchmark output: the colour shift and
   PSNR it leaves. If they stay far from 0 and from SRResNet-MSE's, the cast depends on the image and only a
   per-image correction (`srgan_core.colour_fix`) or the training itself can remove it.
"""

from __future__ import annotations

import argparse
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from srgan_core.data import BENCHMARKS, TrainImages, benchmark_images, train_folders
from srgan_core.images import downscale_x4, load_image, modcrop
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import METHODS
from srgan_core.methods import MethodUnavailable, Upscaler, load_method
from srgan_core.metrics import channel_error, colour_shift, psnr_y
from srgan_core.provenance import hardware
from tools.reports import command_line, publish

BAND_EDGES = (0, 32, 96, 160, 224, 256)  # brightness bands of the bicubic upscale, in 8-bit levels
BLOCK = 16  # SR pixels per side of the block means the correction is fitted on: low frequencies only
CROP = 256  # HR side of a training crop
BORDER = 4  # as the metrics


def band_sums(sr: np.ndarray, hr: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per brightness band of `reference`: the sum of SR - HR per channel (bands x 3) and the pixel count (bands)."""
    crop = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    error = (sr[crop].astype(np.float64) - hr[crop]).reshape(-1, 3)
    band = np.digitize(reference[crop].astype(np.float64).mean(axis=-1).ravel(), BAND_EDGES[1:-1])
    sums = np.stack([np.bincount(band, weights=error[:, c], minlength=len(BAND_EDGES) - 1) for c in range(3)], axis=1)
    return sums, np.bincount(band, minlength=len(BAND_EDGES) - 1)


def block_means(img: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """HxWx3 -> (H/block * W/block) x 3 block means (partial blocks at the edges dropped)."""
    h, w = img.shape[0] // block * block, img.shape[1] // block * block
    return img[:h, :w].astype(np.float64).reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3)).reshape(-1, 3)


def fit_gain_offset(sr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the gain and offset minimising |gain * sr + offset - hr|^2 over rows of (N x 3) samples."""
    fits = [np.linalg.lstsq(np.stack([sr[:, c], np.ones(len(sr))], axis=1), hr[:, c], rcond=None)[0] for c in range(3)]
    gain, offset = np.array(fits).T
    return gain, offset


def corrected(sr: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return np.clip(np.round(sr * gain + offset), 0, 255).astype(np.uint8)


def training_crops(crops: int, data_root: Path | None, seed: int = 0) -> np.ndarray:
    """`crops` random HR crops (N x CROP x CROP x 3, uint8) of the training images, drawn once for every method."""
    images = TrainImages.load(train_folders(data_root), CROP)
    return images.batch(crops, CROP, torch.Generator().manual_seed(seed)).permute(0, 2, 3, 1).numpy()


def fit_on_crops(upscaler: Upscaler, hrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel gain and offset that best map the method's SR block means to HR's on these crops."""
    inner = (slice(2 * BORDER, -2 * BORDER), slice(2 * BORDER, -2 * BORDER))
    pairs = [(block_means(upscaler.upscale(downscale_x4(hr))[inner]), block_means(hr[inner])) for hr in hrs]
    return fit_gain_offset(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))


def probe(methods: list[str], datasets: list[str], crops: int, data_root: Path | None) -> list[dict]:
    """Every number of the report, a dict per method; each benchmark image and its bicubic upscale are made once."""
    upscalers = {m: load_method(m, torch.device("cpu")) for m in methods}
    hrs = training_crops(crops, data_root) if crops else None
    found = []
    for method, upscaler in upscalers.items():
        gain, offset = fit_on_crops(upscaler, hrs) if crops else (np.ones(3), np.zeros(3))
        found.append({"method": method, "gain": gain, "offset": offset, "datasets": {}})
    bicubic = load_method("bicubic")
    for dataset in datasets:
        sums, counts = np.zeros((len(methods), len(BAND_EDGES) - 1, 3)), np.zeros(len(BAND_EDGES) - 1)
        errors, scores = [[] for _ in methods], [[] for _ in methods]
        for path in benchmark_images(dataset, data_root):
            hr = modcrop(load_image(path))
            lr = downscale_x4(hr)
            reference = bicubic.upscale(lr)
            for i, upscaler in enumerate(upscalers.values()):
                sr = upscaler.upscale(lr)
                band_sum, band_count = band_sums(sr, hr, reference)
                sums[i] += band_sum
                errors[i].append(channel_error(sr, hr))
                fixed = corrected(sr, found[i]["gain"], found[i]["offset"])
                scores[i].append([colour_shift(fixed, hr), psnr_y(sr, hr), psnr_y(fixed, hr)])
            counts += band_count
        for i, f in enumerate(found):
            f["datasets"][dataset] = {
                "band_error": sums[i] / np.maximum(counts, 1)[:, None],
                "band_share": counts / counts.sum(),
                "colour_shift": np.abs(errors[i]).max(axis=1).mean(),
                "image_errors": np.array(errors[i]),
                "corrected": np.mean(scores[i], axis=0),  # colour shift after, PSNR before, PSNR after
            }
    return found


def rgb(values: np.ndarray, digits: int = 1) -> str:
    return " / ".join(f"{v:+.{digits}f}" for v in values)


def report(found: list[dict], datasets: list[str], crops: int, command: str) -> str:
    bands = [f"{lo}-{hi - 1}" for lo, hi in pairwise(BAND_EDGES)]
    lines = [
        "# Where the colour cast comes from: error by brightness, per image, and after a global correction",
        "",
        (f"Made by `{command}` on {hardware(torch.device('cpu'))}, torch {torch.__version__}. Errors are SR - HR in "
        "8-bit levels, R / G / B, 4 border pixels removed (+ = SR brighter). Not in the paper."),
        "",
        "## 1. Error by brightness",
        "",
        ("Mean SR - HR per channel over the pixels whose bicubic upscale has a brightness (mean of R, G, B) in the band. "
        "A method that is right on average given its input is near 0 in every band (SRResNet-MSE, trained for the "
        "conditional mean, should be; bicubic, a blur, is not); a flattened contrast shows as + in the dark bands and - "
        "in the bright ones."),
    ]
    for dataset in datasets:
        share = found[0]["datasets"][dataset]["band_share"]
        rows = [["share of pixels", *(f"{s:.0%}" for s in share)]]
        rows += [[f["method"], *(rgb(e) for e in f["datasets"][dataset]["band_error"])] for f in found]
        lines += ["", f"### {dataset}", "", markdown_table(["method", *bands], rows)]
    lines += [
        "",
        "## 2. Per image",
        "",
        ("The signed per-channel mean error of each image: its mean over the images and its standard deviation across "
        "them, and the colour shift (the mean over images of the largest absolute channel error, as in the benchmarks)."),
        "",
    ]
    rows = []
    for f in found:
        for dataset in datasets:
            scores = f["datasets"][dataset]
            errors = scores["image_errors"]
            rows.append([f["method"], dataset, rgb(errors.mean(axis=0), 2), rgb(errors.std(axis=0), 2).replace("+", ""), f"{scores['colour_shift']:.2f}"])
    lines.append(markdown_table(["method", "dataset", "mean error", "spread (std)", "colour shift"], rows))
    if not crops:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## 3. A global correction fitted on training crops",
        "",
        (f"Per channel, the gain and offset that best map SR to HR on {BLOCK}x{BLOCK}-pixel block means of {crops} random "
        f"{CROP}x{CROP} training crops (seed 0), applied to every benchmark output (rounded to 8 bits): colour shift and "
        "PSNR (dB, Y) as trained -> corrected."),
        "",
    ]
    rows = []
    for f in found:
        cells = [
            f"{s['colour_shift']:.2f} -> {s['corrected'][0]:.2f}, {s['corrected'][1]:.2f} -> {s['corrected'][2]:.2f}"
            for s in (f["datasets"][d] for d in datasets)
        ]
        rows.append([f["method"], rgb(f["gain"], 3).replace("+", ""), rgb(f["offset"], 2), *cells])
    lines.append(markdown_table(["method", "gain", "offset", *datasets], rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.probe_tone", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["srresnet-mse", "srgan-vgg22", "srgan-vgg54"], choices=METHODS, metavar="METHOD")
    p.add_argument("--datasets", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    p.add_argument("--calibration-crops", type=int, default=160, help="training crops the global correction is fitted on (0 = none)")
    p.add_argument("--data-root", type=Path)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--out", type=Path, help="write the report here (Markdown) as well as printing it")
    args = p.parse_args(argv)
    if args.calibration_crops < 0:
        raise SystemExit("error: --calibration-crops must be 0 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        found = probe(args.methods, args.datasets, args.calibration_crops, args.data_root)
    except MethodUnavailable as exc:
        raise SystemExit(f"error: {exc}") from None
    publish(report(found, args.datasets, args.calibration_crops, command_line("tools.probe_tone", argv)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
