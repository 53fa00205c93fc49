"""The fast inference path: BatchNorm folded, channels_last, inference_mode, overlapping tiles (the
generator's own forward already runs its output convolution at half resolution). Measured against plain eager inference by `tools.benchmark`."""

from __future__ import annotations

import ctypes
import functools
import itertools
import sys
from collections.abc import Callable

import torch
from torch import nn

from srgan_core.device import check_precision
from srgan_core.method_specs import SCALE
from srgan_core.models import Generator, fuse_for_inference, signed_to_unit

TILE = 224  # most LR pixels per tile side: inputs up to 272 px run in one pass; ~0.8 GB of activations per tile
OVERLAP = 24  # LR pixels of context on each side of a tile; beyond this the receptive field's effect is < 1/255


def prepare_generator(generator: Generator, device: torch.device) -> nn.Module:
    """An inference copy of the generator: BatchNorm folded, frozen, channels_last, on `device`."""
    keep_freed_memory()
    return fuse_for_inference(generator).to(device=device, memory_format=torch.channels_last)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed tensors' memory for the next ones instead of giving it back to the OS.

    By default glibc maps allocations above 32 MB (a 256-channel activation of a 256x256 tile is 64 MB) fresh
    from the OS and unmaps them when freed, so every such layer output pays a page fault per 4 KB page
    before it is written; reusing the heap instead makes the 256x256 generator pass ~20 % faster (see
    results/performance.md). Process-wide, once; the price is that the process keeps its peak memory
    mapped. Returns whether it applied (Linux with glibc only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl) or none by that name
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))


@torch.inference_mode()
def generate(model: nn.Module, lr: torch.Tensor, precision: str = "float32") -> torch.Tensor:
    """LR 1x3xHxW in [0, 1] -> SR in [0, 1], one pass."""
    device = next(model.parameters()).device
    x = lr.to(device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=check_precision(precision) == "bfloat16"):
        sr = model(x)
    return signed_to_unit(sr.float()).clamp_(0, 1).cpu()


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
    precision: str = "float32",
) -> torch.Tensor:
    """Like `generate`, in overlapping tiles so memory stays bounded for any image size.

    Each tile is run with `overlap` LR pixels of real context on every side and only its centre is kept,
    so the result matches the untiled one to within rounding."""
    _, c, h, w = lr.shape
    if h <= tile + 2 * overlap and w <= tile + 2 * overlap:
        out = generate(model, lr, precision)
        if progress:
            progress(1.0)
        return out
    out = torch.empty(1, c, h * SCALE, w * SCALE)
    grid = list(itertools.product(tiles(h, tile), tiles(w, tile)))
    for done, ((y, th), (x, tw)) in enumerate(grid, 1):
        y0, x0 = max(y - overlap, 0), max(x - overlap, 0)
        y1, x1 = min(y + th + overlap, h), min(x + tw + overlap, w)
        sr = generate(model, lr[:, :, y0:y1, x0:x1], precision)
        oy, ox = (y - y0) * SCALE, (x - x0) * SCALE
        out[:, :, y * SCALE : (y + th) * SCALE, x * SCALE : (x + tw) * SCALE] = sr[
            :, :, oy : oy + th * SCALE, ox : ox + tw * SCALE
        ]
        if progress:
            progress(done / len(grid))
    return out
