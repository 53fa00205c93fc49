"""Held-out check: every method on images outside Set5/Set14/BSD100 and the training set.

`python -m tools.heldout [--methods ...] [--images-to runs/heldout] [--out results/heldout]`

Writes scikit-image's sample images as PNG into IMAGES_TO/photos (colour photos) and IMAGES_TO/textures (grey
gravel, brick and grass, where a sub-pixel lattice shows first), then scores them as `srgan_core.evaluate --folders`
does into OUT/benchmarks.md (+ CSVs), headed by this command and the evaluate line it ran.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import skimage
from skimage import data as samples

from srgan_core import evaluate
from srgan_core.images import load_image, save_png
from srgan_core.method_specs import METHODS
from srgan_core.paths import DATA_ROOT_DEFAULT, REPO_ROOT
from tools.reports import command_line, report_path

HELD_OUT = {
    "photos": ("astronaut", "coffee", "chelsea", "rocket"),
    "textures": ("gravel", "brick", "grass"),
}


def write_images(folder: Path) -> list[Path]:
    """Write each held-out set as PNG into folder/<set>/<image>.png (grey ones as RGB); returns the set folders."""
    folders = []
    for name, images in HELD_OUT.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        others = sorted(p.name for p in (folder / name).iterdir() if p.stem not in images)
        if others:  # evaluate --folders scores every image in the folder
            raise SystemExit(f"error: {folder / name} holds other files too ({', '.join(others[:3])}): they would be scored "
                             "as held-out images; give --images-to an empty or earlier heldout folder")
        for image in images:
            save_png(load_image(getattr(samples, image)()), folder / name / f"{image}.png")
        folders.append(folder / name)
    return folders


def shown(path: Path) -> str:
    """A path as the report's command line gives it: relative to the working folder where it lies below it."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else Path(relative).as_posix()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.heldout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD", help=f"methods to score (default: all): {', '.join(METHODS)}")
    p.add_argument("--images-to", type=Path, default=REPO_ROOT / "runs" / "heldout", help="where the images are written (default: runs/heldout)")
    p.add_argument("--out", type=Path, help="folder for the report and CSVs (default: results/heldout, for the shipped settings only)")
    p.add_argument("--data-root", type=Path, help=f"data folder holding the NIQE model (default: {DATA_ROOT_DEFAULT})")
    p.add_argument("--no-niqe", action="store_true", help="skip the NIQE column")
    args = p.parse_args(argv)
    args.out = report_path(p, args, REPO_ROOT / "results" / "heldout")
    folders = write_images(args.images_to)
    evaluate_args = ["--methods", *args.methods, "--folders", *map(shown, folders), "--out", shown(args.out)]
    evaluate_args += ["--data-root", shown(args.data_root)] if args.data_root else []
    evaluate_args += ["--no-niqe"] if args.no_niqe else []
    evaluate.main(evaluate_args)
    report = args.out / "benchmarks.md"
    images = "; ".join(f"{name}: {', '.join(images)}" for name, images in HELD_OUT.items())
    intro = (
        f"# Held-out images (4x)\n\nImages in neither the benchmarks nor the training set: scikit-image "
        f"{skimage.__version__}'s sample images ({images}; the textures are grey). "
        f"`{command_line('tools.heldout', argv)}` wrote them as PNG and ran the evaluate line below.\n"
    )
    report.write_text(intro + report.read_text().split("\n", 1)[1])  # in place of evaluate's title


if __name__ == "__main__":
    main()
