"""The generator's fast output layers: the last PReLU and the 9x9 output conv moved before the last pixel shuffle.

The 64->3 output conv runs far below the CPU's peak (too few output channels) at full resolution; moved, it is a
5x5 256->12 conv at half resolution (`half_resolution_kernel`) doing ~1.2x the multiply-adds several times faster,
forward and backward, and the 64-channel full-resolution activation is never built. Exactly the same function as
the paper's layer order (`Generator.plain_forward`), to float rounding; training and inference both use it."""

from __future__ import annotations

import functools
import itertools

import torch
import torch.nn.functional as F
from torch import nn


def upsample_and_output(feat: torch.Tensor, upsample: nn.Sequential, tail: nn.Conv2d) -> torch.Tensor:
    """`tail(upsample(feat))` for the generator's two x2 upsample blocks and its output conv, the second block's
    PReLU and the output conv run before its pixel shuffle. The per-channel PReLU weights repeat 4x to follow
    their channels."""
    first, last = upsample
    x = F.prelu(last.conv(first(feat)), last.act.weight.repeat_interleave(4))
    weight = half_resolution_kernel(tail.weight)
    bias = tail.bias.repeat_interleave(4)
    return F.pixel_shuffle(F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2), 2)


@functools.cache
def _half_resolution_index(c_out: int, c_in: int, k: int) -> torch.Tensor:
    """For each entry of the moved kernel, its index in the flattened KxK kernel (c_out*c_in*k*k = zero)."""
    r = k // 2
    radius = (r + 1) // 2
    with torch.inference_mode(False):  # cached: must stay usable by autograd when first built under inference_mode
        source = torch.arange(c_out * c_in * k * k).view(c_out, c_in, k, k)
        index = torch.full((c_out * 4, c_in * 4, 2 * radius + 1, 2 * radius + 1), source.numel())
        for p, q, i, j in itertools.product(range(2), repeat=4):  # output / input position within the 2x2 cell
            for dy, dx in itertools.product(range(-radius, radius + 1), repeat=2):
                u, v = 2 * dy + i - p, 2 * dx + j - q  # the tap's offset on the fine grid
                if abs(u) <= r and abs(v) <= r:
                    index[p * 2 + q :: 4, i * 2 + j :: 4, dy + radius, dx + radius] = source[:, :, u + r, v + r]
    return index


def half_resolution_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A KxK 'same'-padded conv kernel moved before a 2x pixel shuffle:
    `conv2d(pixel_shuffle(x, 2), weight, padding=K // 2) == pixel_shuffle(conv2d(x, moved, padding=R), 2)`.

    The moved kernel is (2R+1)x(2R+1), R = (K // 2 + 1) // 2, with 4x the input and output channels
    (PixelShuffle's channel order: c * 4 + 2 * row + column). Differentiable in `weight`."""
    c_out, c_in, k, _ = weight.shape
    index = _half_resolution_index(c_out, c_in, k).to(weight.device)
    return torch.cat([weight.flatten(), weight.new_zeros(1)])[index]
