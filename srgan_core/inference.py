"""The fast inference path: BatchNorm folded, output convolution at half resolution, channels_last,
inference_mode, overlapping tiles. Measured against plain eager inference by `srgan_core.benchmark`."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from srgan_core.models import Generator, fuse_for_inference

SCALE = 4
TILE = 224  # most LR pixels per tile side: inputs up to 272 px run in one pass; ~0.8 GB of activations per tile
OVERLAP = 24  # LR pixels of context on each side of a tile; beyond this the receptive field's effect is < 1/255


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def _half_resolution_index(c_out: int, c_in: int, k: int) -> torch.Tensor:
    """For each entry of the moved kernel, its index in the flattened KxK kernel (c_out*c_in*k*k = zero)."""
    r = k // 2
    radius = (r + 1) // 2
    source = torch.arange(c_out * c_in * k * k).view(c_out, c_in, k, k)
    index = torch.full((c_out * 4, c_in * 4, 2 * radius + 1, 2 * radius + 1), source.numel())
    for p, q, i, j in itertools.product(range(2), repeat=4):  # output / input position within the 2x2 cell
        for dy, dx in itertools.product(range(-radius, radius + 1), repeat=2):
            u, v = 2 * dy + i - p, 2 * dx + j - q  # the tap's offset on the fine grid
            if abs(u) <= r and abs(v) <= r:
                index[p * 2 + q :: 4, i * 2 + j :: 4, dy + radius, dx + radius] = source[:, :, u + r, v + r]
    return index


def half_resolution_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A KxK conv kernel moved before a 2x pixel shuffle:
    `conv2d(pixel_shuffle(x, 2), weight, padding=K // 2) == pixel_shuffle(conv2d(x, moved, padding=R), 2)`.

    The moved kernel is (2R+1)x(2R+1), R = (K // 2 + 1) // 2, with 4x the input and output channels
    (PixelShuffle's channel order: c * 4 + 2 * row + column). Differentiable in `weight`."""
    c_out, c_in, k, _ = weight.shape
    index = _half_resolution_index(c_out, c_in, k).to(weight.device)
    return torch.cat([weight.flatten(), weight.new_zeros(1)])[index]


def conv_at_half_resolution(conv: nn.Conv2d) -> nn.Conv2d:
    """`conv` applied after a 2x pixel shuffle, as a conv before it (see `half_resolution_kernel`).

    SRResNet's 9x9 3-channel output conv runs far below the CPU's peak (too few output channels); moved,
    it is a 5x5 256->12 conv doing ~1.2x the multiply-adds several times faster, and the 64-channel
    full-resolution activation is never built."""
    k = conv.kernel_size[0]
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or conv.kernel_size != (k, k) or conv.padding != (k // 2, k // 2):
        raise ValueError("only stride-1, undilated, ungrouped, 'same'-padded square convolutions can be moved")
    with torch.no_grad():
        weight = half_resolution_kernel(conv.weight)
        moved = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[-1], padding=weight.shape[-1] // 2, bias=conv.bias is not None)
        moved = moved.to(device=weight.device, dtype=weight.dtype)
        moved.weight.copy_(weight)
        if conv.bias is not None:
            moved.bias.copy_(conv.bias.repeat_interleave(4))
    return moved


class InferenceGenerator(nn.Module):
    """SRResNet with BN folded and its last two layers rearranged; computes the same function as `Generator`.

    Last upsampling stage: conv 64->256 at 2x, PReLU applied before the shuffle (per-channel weights repeated
    4 times, so it is the same activation), then the output conv moved before the shuffle
    (`conv_at_half_resolution`) and one shuffle of the 12-channel result into the 3-channel image."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        fused = fuse_for_inference(generator)
        self.head, self.body, self.body_tail = fused.head, fused.body, fused.body_tail
        self.upsample = fused.upsample[0]
        last = fused.upsample[1]
        self.last_conv = last.conv
        self.last_act = nn.PReLU(last.conv.out_channels).to(last.act.weight.device)
        with torch.no_grad():
            self.last_act.weight.copy_(last.act.weight.repeat_interleave(4))
        self.tail = conv_at_half_resolution(fused.tail)
        self.eval().requires_grad_(False)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        feat = self.head(lr)
        feat = feat + self.body_tail(self.body(feat))
        x = self.last_act(self.last_conv(self.upsample(feat)))
        return F.pixel_shuffle(self.tail(x), 2)


def prepare_generator(generator: Generator, device: torch.device) -> nn.Module:
    """An inference copy of the generator (`InferenceGenerator`), channels_last, on `device`."""
    return InferenceGenerator(generator).to(device=device, memory_format=torch.channels_last)


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
