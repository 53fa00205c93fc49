"""Upscale images x4: `python -m srgan_core.upscale IN... --method srresnet-mse -o OUT`.

IN may be files or folders (their images, not recursive). Any size works: large images go through
overlapping tiles. Output is lossless PNG named after the input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from srgan_core.data import IMAGE_SUFFIXES
from srgan_core.images import ImageError, load_image, save_png
from srgan_core.inference import PRECISIONS, cpu_has_native_bf16, pick_device
from srgan_core.methods import METHODS, MethodUnavailable, load_method


def collect_inputs(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SystemExit(f"{path}: no images in this folder")
            files += found
        else:
            files.append(path)
    return files


def output_path(src: Path, out: Path, many: bool, method: str) -> Path:
    if many or out.is_dir() or out.suffix == "":
        return out / f"{src.stem}_{method}_x4.png"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--method", default="srgan-vgg54", choices=METHODS, help="upscaling method (default: srgan-vgg54)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output PNG file (one input) or folder")
    p.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    p.add_argument(
        "--precision", choices=PRECISIONS, default="float32",
        help="learned methods only. float32: the network as trained, to rounding; bfloat16: about 2x faster on GPUs and "
        "on CPUs with AVX512-BF16/AMX, output within a few 8-bit levels (slower than float32 on other CPUs)",
    )
    args = p.parse_args(argv)

    if args.precision == "bfloat16" and pick_device(args.device).type == "cpu" and not cpu_has_native_bf16():
        print("warning: this CPU has no native bfloat16 (AVX512-BF16/AMX): --precision bfloat16 will be slower than float32", file=sys.stderr)
    try:
        upscaler = load_method(args.method, args.device, args.precision)
    except MethodUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = collect_inputs(args.inputs)
    many = len(files) > 1
    if many or args.output.suffix == "":
        args.output.mkdir(parents=True, exist_ok=True)
    failures = 0
    for src in tqdm(files, desc=args.method, disable=not many):
        try:
            image = load_image(src)
        except ImageError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failures += 1
            continue
        with tqdm(total=100, desc=src.name, leave=False, disable=many) as bar:
            sr = upscaler.upscale(image, progress=lambda f: bar.update(round(f * 100) - bar.n))
        dest = output_path(src, args.output, many, args.method)
        save_png(sr, dest)
        print(f"{src} ({image.shape[1]}x{image.shape[0]}) -> {dest} ({sr.shape[1]}x{sr.shape[0]})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
