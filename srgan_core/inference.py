"""The fast inference path: BatchNorm folded, channels_last, inference_mode, overlapping tiles (the
generator's own forward already runs its output convolution at half resolution). Measured against plain eager inference by `srgan_core.benchmark`."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from srgan_core.models import Generator, fuse_for_inference

SCALE = 4
TILE = 224  # most LR pixels per tile side: inputs up to 272 px run in one pass; ~0.8 GB of activations per tile
OVERLAP = 24  # LR pixels of context on each side of a tile; beyond this the receptive field's effect is < 1/255


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def prepare_generator(generator: Generator, device: torch.device) -> nn.Module:
    """An inference copy of the generator: BatchNorm folded, frozen, channels_last, on `device`."""
    return fuse_for_inference(generator).to(device=device, memory_format=torch.channels_last)


@torch.inference_mode()
def generate(model: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """LR 1x3xHxW in [0, 1] -> SR in [0, 1], one pass."""
    device = next(model.parameters()).device
    x = lr.to(device).contiguous(memory_format=torch.channels_last)
    return ((model(x) + 1) / 2).clamp_(0, 1).float().cpu()


def tiles(size: int, tile: int) -> list[tuple[int, int]]:
    """(start, length) of the fewest equal tiles of at most `tile` pixels covering [0, size) without gaps."""
    count = -(-size // tile)
    length = -(-size // count)
    return [(min(k * length, size - length), length) for k in range(count)]


@torch.inference_mode()
def generate_tiled(
    model: nn.Module,
    lr: torch.Tensor,
    tile: int = TILE,
    overlap: int = OVERLAP,
    progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """Like `generate`, in overlapping tiles so memory stays bounded for any image size.

    Each tile is run with `overlap` LR pixels of real context on every side and only its centre is kept,
    so the result matches the untiled one to within rounding."""
    _, c, h, w = lr.shape
    if h <= tile + 2 * overlap and w <= tile + 2 * overlap:
        out = generate(model, lr)
        if progress:
            progress(1.0)
        return out
    out = torch.empty(1, c, h * SCALE, w * SCALE)
    grid = list(itertools.product(tiles(h, tile), tiles(w, tile)))
    for done, ((y, th), (x, tw)) in enumerate(grid, 1):
        y0, x0 = max(y - overlap, 0), max(x - overlap, 0)
        y1, x1 = min(y + th + overlap, h), min(x + tw + overlap, w)
        sr = generate(model, lr[:, :, y0:y1, x0:x1])
        oy, ox = (y - y0) * SCALE, (x - x0) * SCALE
        out[:, :, y * SCALE : (y + th) * SCALE, x * SCALE : (x + tw) * SCALE] = sr[
            :, :, oy : oy + th * SCALE, ox : ox + tw * SCALE
        ]
        if progress:
            progress(done / len(grid))
    return out
