"""Benchmark images and the HR training set (random crops, LR made on the fly)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from srgan_core.images import ImageError, load_image
from srgan_core.imresize import imresize
from srgan_core.method_specs import SCALE
from srgan_core.models import unit_to_signed
from srgan_core.paths import GET_DATA, default_data_root

BENCHMARKS = ("Set5", "Set14", "BSD100")
TRAIN_FOLDERS = ("BSDS500_train", "BSDS500_test", "T91")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
log = logging.getLogger(__name__)


def require_data_root(data_root: Path | str | None) -> Path:
    root = Path(data_root) if data_root is not None else default_data_root()
    if root is None or not root.is_dir():
        where = f"no data folder at {root}" if root else "no data folder (data/ in this clone or ../shared/data)"
        raise FileNotFoundError(f"{where}: fetch it with `{GET_DATA}`, or pass --data-root DIR / set SRGAN_DATA")
    return root


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def benchmark_images(dataset: str, data_root: Path | str | None = None) -> list[Path]:
    """The HR images of Set5 / Set14 / BSD100, sorted by name."""
    if dataset not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {dataset!r}; choose from {', '.join(BENCHMARKS)}")
    root = require_data_root(data_root)
    folder = root / "benchmarks" / dataset
    images = list_images(folder) if folder.is_dir() else []
    if not images:
        raise FileNotFoundError(f"no {dataset} images in {folder}: fetch them with `{GET_DATA} --only benchmarks --to {root}`")
    return images


def folder_images(folder: Path) -> list[Path]:
    """The images of a folder of one's own HR images (scored like a benchmark), sorted by name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is a file, not a folder of images" if folder.exists() else f"{folder}: no such folder")
    images = list_images(folder)
    if not images:
        raise FileNotFoundError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def train_folders(data_root: Path | str | None = None) -> list[Path]:
    """The training image folders (`TRAIN_FOLDERS`) that the data folder holds; FileNotFoundError when it holds none."""
    data = require_data_root(data_root)
    folders = [data / "train" / name for name in TRAIN_FOLDERS if (data / "train" / name).is_dir()]
    if not folders:
        raise FileNotFoundError(f"no training images in {data / 'train'} (none of {', '.join(TRAIN_FOLDERS)}): fetch them with "
                                f"`{GET_DATA} --only train --to {data}`")
    return folders


@dataclass
class TrainImages:
    """All training images decoded once into one padded uint8 tensor on the training device, so a batch of
    random crops is a single gather there (on a GPU: no host work and no host-to-device copy per step).

    Portrait images are stored turned landscape, which keeps the padding small; the random transform of
    every crop is uniform over the 8 flips and 90-degree rotations, so the stored orientation is invisible."""

    pixels: torch.Tensor  # N x 3 x H x W uint8, image i in pixels[i, :, :h_i, :w_i]
    sizes: torch.Tensor  # N x 2 (h_i, w_i), on the same device
    skipped: int

    @classmethod
    def from_tensors(cls, images: list[torch.Tensor], skipped: int = 0, device: torch.device | str = "cpu") -> "TrainImages":
        """From 3xHxW uint8 tensors."""
        images = [img.transpose(1, 2) if img.shape[1] > img.shape[2] else img for img in images]
        height, width = max(img.shape[1] for img in images), max(img.shape[2] for img in images)
        pixels = torch.zeros(len(images), 3, height, width, dtype=torch.uint8)
        for i, img in enumerate(images):
            pixels[i, :, : img.shape[1], : img.shape[2]] = img
        sizes = torch.tensor([img.shape[1:] for img in images], dtype=torch.int64)
        return cls(pixels.to(device), sizes.to(device), skipped)

    @classmethod
    def load(cls, folders: list[Path], crop: int, device: torch.device | str = "cpu") -> "TrainImages":
        images, skipped = [], 0
        for folder in folders:
            for path in list_images(folder):
                try:
                    img = load_image(path)
                except ImageError as exc:
                    log.warning("skipping %s", exc)
                    skipped += 1
                    continue
                if min(img.shape[:2]) < crop:
                    skipped += 1
                    continue
                images.append(torch.from_numpy(img).permute(2, 0, 1))
        if not images:
            raise FileNotFoundError(f"no training images of at least {crop}x{crop} px in {[str(f) for f in folders]}")
        log.info("training images: %d loaded, %d skipped (smaller than %d px or unreadable)", len(images), skipped, crop)
        return cls.from_tensors(images, skipped, device)

    def __len__(self) -> int:
        return len(self.pixels)

    def batch(self, size: int, crop: int, generator: torch.Generator) -> torch.Tensor:
        """A batch of random HR crops (uint8, Bx3xcropxcrop, on the images' device), each under a random
        flip / 90-degree rotation, of distinct images as in the paper (while there are `size` of them).
        `generator` must live on the images' device."""
        device = self.pixels.device
        if len(self) >= size:
            pick = torch.randperm(len(self), generator=generator, device=device)[:size]
        else:
            pick = torch.randint(len(self), (size,), generator=generator, device=device)
        room = self.sizes[pick] - crop + 1  # B x 2: how many top / left positions each image offers
        top, left = (torch.rand(size, 2, generator=generator, device=device) * room).long().unbind(1)
        span = torch.arange(crop, device=device)
        patch = self.pixels[
            pick[:, None, None, None],
            torch.arange(3, device=device)[None, :, None, None],
            (top[:, None] + span)[:, None, :, None],
            (left[:, None] + span)[:, None, None, :],
        ]
        # A uniform element of the dihedral group: transpose, then flip columns, then flip rows, each with p = 1/2.
        transpose, flip_x, flip_y = (torch.rand(3, size, 1, 1, 1, generator=generator, device=device) < 0.5).unbind(0)
        patch = torch.where(transpose, patch.transpose(-1, -2), patch)
        patch = torch.where(flip_x, patch.flip(-1), patch)
        return torch.where(flip_y, patch.flip(-2), patch).contiguous()


def make_pair(hr: torch.Tensor, scale: int = SCALE) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 HR batch -> (LR in [0, 1], MATLAB bicubic /4 rounded to 8 bit; HR in [-1, 1])."""
    hr01 = hr.float() / 255
    lr = imresize(hr01, 1 / scale).clamp_(0, 1).mul_(255).round_().div_(255)
    return lr, unit_to_signed(hr01)


def main(argv: list[str] | None = None) -> int:
    """`python -m srgan_core.data download [--to DIR] ...`: fetch the public data sets."""
    args = sys.argv[1:] if argv is None else argv
    usage = f"usage: {GET_DATA} [--to DIR] [--only ...]  (see --help of that command)"
    if args[:1] in (["--help"], ["-h"]):
        print(usage)
        return 0
    if not args or args[0] != "download":
        wrong = f"unknown command {args[0]!r}" if args else "no command given"
        print(f"error: {wrong}: `{GET_DATA} [--to DIR] [--only ...]` fetches the data and `{GET_DATA} --check` checks it "
              "(see --help of that command)", file=sys.stderr)
        return 2
    from srgan_core.download import main as download_main

    return download_main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
