"""Upscale images x4: `python -m srgan_core.upscale IN... --method srresnet-mse -o OUT`.

IN may be files or folders (their images, not recursive). Large images go through overlapping tiles; an image
whose 4x output would not fit in the free memory (about 20 bytes per output pixel for a network, 33 for an
interpolation) is skipped with a message. Output is lossless PNG named after the input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psutil
from tqdm import tqdm

from srgan_core.colour_fix import ColourFixedUpscaler
from srgan_core.data import IMAGE_SUFFIXES
from srgan_core.device import PRECISIONS, cpu_has_native_bf16, default_precision, pick_device
from srgan_core.images import ImageError, input_notes, load_image, save_png
from srgan_core.method_specs import METHODS
from srgan_core.methods import MethodUnavailable, load_method, upscaler_from_file


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """The files given and the images of the folders given (by suffix; the other files of a folder are named on
    stderr, as a file given by name is read whatever its suffix)."""
    files: list[Path] = []
    for path in inputs:
        if not path.is_dir():
            files.append(path)
            continue
        entries = sorted(p for p in path.iterdir() if p.is_file())
        found = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        others = ", ".join(p.name for p in entries if p not in found)
        if not found:
            raise SystemExit(f"error: {path}: no images in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
                             + (f"; give other files by name: {others})" if others else ")"))
        if others:
            print(f"note: {path}: left out, not {'/'.join(sorted(IMAGE_SUFFIXES))} (give them by name to upscale them): {others}",
                  file=sys.stderr)
        files += found
    return files


def output_path(src: Path, out: Path, many: bool, method: str) -> Path:
    if many or out.is_dir() or out.suffix == "":
        return out / f"{src.stem}_{method}_x4.png"
    return out


def check_output(out: Path, count: int) -> None:
    """Refuse an -o that cannot hold what is written: for one input a file name not ending .png, for several a .png
    file name (any other -o is the folder they go into)."""
    if out.is_dir() or out.suffix == "":
        return
    if count == 1 and out.suffix.lower() != ".png":
        raise SystemExit(f"error: -o {out}: upscale writes lossless PNG only; name the output .png, or give an existing folder")
    if count > 1 and out.suffix.lower() == ".png":
        raise SystemExit(f"error: -o {out}: {count} inputs need a folder to write into, not one file name")


def clashing_outputs(files: list[Path], out: Path, many: bool, method: str) -> list[str]:
    """Inputs whose output would overwrite an input (itself or another: an earlier run's output read back from the
    folder), or the output of another input, one line each."""
    problems, claimed = [], {}
    inputs = {src.resolve(): src for src in files}
    for src in files:
        dest = output_path(src, out, many, method).resolve()
        if dest == src.resolve():
            problems.append(f"{src}: its output {dest} is the input itself")
        elif dest in inputs:
            problems.append(f"{src}: its output would overwrite the input {inputs[dest]}")
        elif dest in claimed:
            problems.append(f"{src} and {claimed[dest]} would both be written to {dest}")
        claimed.setdefault(dest, src)
    return problems


def size(count: int) -> str:
    """Bytes for a message: GiB with one decimal, or MiB below 1 GiB."""
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m srgan_core.upscale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--method", default="srgan-vgg54", choices=METHODS, help="upscaling method (default: srgan-vgg54)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output PNG file (one input) or folder")
    p.add_argument(
        "--weights", type=Path, metavar="FILE",
        help="a generator's weights of your own (e.g. from `srgan_core.train --out FILE`) instead of --method; outputs are "
        "named after the file",
    )
    p.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    p.add_argument(
        "--precision", choices=PRECISIONS, default=None,
        help="learned methods only (default: bfloat16 on GPUs and on CPUs with AVX512-BF16/AMX, float32 elsewhere). "
        "float32: the network as trained, to rounding; bfloat16: about 2x faster where native, output within a few "
        "8-bit levels (slower than float32 on other CPUs). `--precision float32` forces float32",
    )
    p.add_argument(
        "--colour-fix", action="store_true",
        help="take the output's coarse colour from the input's bicubic upscale (not in the paper: removes the colour "
        "cast of briefly trained SRGANs, keeps the network's detail; see results/colour_fix.md)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return upscale_all(args)
    except KeyboardInterrupt:
        print("interrupted: the outputs written before are kept; the one being written was dropped, and a file it would replace is as it was",
              file=sys.stderr)
        return 130


def upscale_all(args: argparse.Namespace) -> int:
    """Upscale every input as the command line asks; the exit status."""
    try:
        device = pick_device(args.device)
    except RuntimeError as exc:
        print(f"error: --device {exc}", file=sys.stderr)
        return 2
    precision = args.precision or default_precision(device)
    if precision == "bfloat16" and device.type == "cpu" and not cpu_has_native_bf16():
        print("warning: this CPU has no native bfloat16 (AVX512-BF16/AMX): --precision bfloat16 will be slower than float32", file=sys.stderr)
    try:
        upscaler = upscaler_from_file(args.weights, device, precision) if args.weights else load_method(args.method, device, precision)
        if args.colour_fix:
            upscaler = ColourFixedUpscaler(upscaler)
        files = collect_inputs(args.inputs)
        many = len(files) > 1
        check_output(args.output, len(files))
        clashes = clashing_outputs(files, args.output, many, upscaler.name)
        if clashes:
            raise SystemExit("error: nothing written, as outputs would overwrite each other or an input (upscale these "
                             "into different -o folders):\n" + "\n".join(clashes))
        folder = args.output if many or args.output.suffix == "" else args.output.parent
        folder.mkdir(parents=True, exist_ok=True)
    except MethodUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write to {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    failures = 0
    for src in tqdm(files, desc=upscaler.name, disable=not many):
        try:
            image = load_image(src)
        except ImageError as exc:
            tqdm.write(f"skipped: {exc}", file=sys.stderr)
            failures += 1
            continue
        needed, free = upscaler.memory_needed(*image.shape[:2]), psutil.virtual_memory().available
        if needed > free:
            tqdm.write(f"skipped: {src} ({image.shape[1]}x{image.shape[0]}): its 4x output with {upscaler.name} needs about "
                       f"{size(needed)} of memory and {size(free)} is free; crop it, or split it into parts", file=sys.stderr)
            failures += 1
            continue
        for note in input_notes(src):
            tqdm.write(f"note: {src} {note}", file=sys.stderr)
        with tqdm(total=100, desc=src.name, leave=False, disable=many) as bar:
            sr = upscaler.upscale(image, progress=lambda f: bar.update(round(f * 100) - bar.n))
        dest = output_path(src, args.output, many, upscaler.name)
        try:
            save_png(sr, dest)
        except OSError as exc:
            print(f"error: cannot write {dest}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        tqdm.write(f"{src} ({image.shape[1]}x{image.shape[0]}) -> {dest} ({sr.shape[1]}x{sr.shape[0]}, {upscaler.precision})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
