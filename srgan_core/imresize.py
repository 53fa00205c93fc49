"""MATLAB-compatible `imresize` (bicubic a=-0.5 / box kernels) in torch.

Matches MATLAB's definition: output size ceil(scale * input), the index mapping
u = x / scale + 0.5 * (1 - 1 / scale), the kernel widened by 1/scale when downscaling
(antialiasing), weights normalised to sum 1, and symmetric (mirror) border handling.
Each dimension is one dense matrix product, so it is batched and runs on any device.
"""

from __future__ import annotations

import functools
import math

import torch


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = 1.5 * ax3 - 2.5 * ax2 + 1
    far = -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    return near * (ax <= 1) + far * ((ax > 1) & (ax <= 2))


def box(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's 'box' kernel (nearest neighbour): 1 on [-0.5, 0.5)."""
    return ((x >= -0.5) & (x < 0.5)).to(x.dtype)


KERNELS = {"cubic": (cubic, 4.0), "box": (box, 1.0)}


def resize_matrix(
    in_size: int, scale: float, kernel: str = "cubic", antialias: bool = True, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The (out_size, in_size) matrix that resizes one dimension the way MATLAB does."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {sorted(KERNELS)}")
    fn, width = KERNELS[kernel]
    out_size = math.ceil(in_size * scale)
    shrink = scale < 1 and antialias
    if shrink:
        width = width / scale
    x = torch.arange(1, out_size + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = u[:, None] - idx
    weights = scale * fn(dist * scale) if shrink else fn(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Mirror indices outside [1, in_size] (MATLAB's symmetric padding), then scatter into a dense matrix.
    mirror = torch.cat([torch.arange(in_size), torch.arange(in_size - 1, -1, -1)])
    cols = mirror[((idx - 1).long()) % (2 * in_size)]
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix.scatter_add_(1, cols, weights)
    return matrix.to(dtype)


def imresize(
    x: torch.Tensor, scale: float, kernel: str = "cubic", antialias: bool = True, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Resize the last two dims of a float tensor by `scale` (e.g. 0.25 or 4), MATLAB-exact.

    MATLAB resizes along height first when both scales are equal; values are not clamped or rounded. With `out_dtype`
    the result is computed in x's dtype and stored in `out_dtype` a band of rows at a time, so that a large upscale
    never holds the whole result at x's precision (an RGB float64 result takes 24 bytes per pixel, float32 12).
    """
    if not x.is_floating_point():
        raise TypeError(f"imresize takes a float tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"imresize needs at least 2 dims (H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    rows = _cached_matrix(h, scale, kernel, antialias, x.device, x.dtype)
    cols = _cached_matrix(w, scale, kernel, antialias, x.device, x.dtype)
    if out_dtype is None or out_dtype == x.dtype:
        return torch.matmul(torch.matmul(rows, x), cols.T)
    out = torch.empty((*x.shape[:-2], rows.shape[0], cols.shape[0]), dtype=out_dtype, device=x.device)
    for top in range(0, rows.shape[0], BAND_ROWS):
        band = rows[top : top + BAND_ROWS]
        out[..., top : top + band.shape[0], :] = torch.matmul(torch.matmul(band, x), cols.T)
    return out


BAND_ROWS = 256  # output rows computed at once when the result is stored in another dtype


@functools.lru_cache(maxsize=64)
def _cached_matrix(size: int, scale: float, kernel: str, antialias: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`resize_matrix` on `device`, built once per size: training resizes same-sized crops every step."""
    with torch.inference_mode(False):  # a cached tensor must stay usable outside inference mode
        return resize_matrix(size, scale, kernel, antialias).to(device=device, dtype=dtype)
