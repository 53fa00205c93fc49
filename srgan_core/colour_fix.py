"""Low-frequency colour fix (not in the paper): an SR image's coarse colour and brightness taken from its input.

The VGG content losses hardly see an image's mean colour, and the adversarial term pins it only after long
training, so a briefly trained SRGAN leaves a cast (results/benchmarks.md, "colour shift"). The low-resolution
input fixes the coarse colour anyway: its MATLAB-bicubic upscale is accurate at low frequencies. The fix
replaces the SR image's Gaussian low-pass by the bicubic upscale's, `sr + blur(bicubic - sr)`, and keeps every
finer detail the network made. Applied to bicubic itself it changes nothing. Measured by `python -m
tools.probe_colour_fix` (results/colour_fix.md)."""

from __future__ import annotations

import torch
from scipy.ndimage import gaussian_filter

from srgan_core.imresize import imresize
from srgan_core.method_specs import SCALE
from srgan_core.methods import ProgressFn, Upscaler

SIGMA = 8.0  # SR pixels (2 LR pixels): the low-pass keeps periods above ~40 SR pixels, where bicubic is accurate
SUFFIX = "+colour-fix"


def match_low_frequencies(sr: torch.Tensor, lr: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """SR (1x3x4Hx4W in [0, 1]) with its Gaussian low-pass (`sigma` in SR pixels) replaced by that of the
    MATLAB-bicubic x4 upscale of `lr` (1x3xHxW in [0, 1])."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    reference = imresize(lr.float().cpu(), SCALE).clamp_(0, 1)  # float32: a low-pass needs no more, large images half the memory
    if reference.shape != sr.shape:
        raise ValueError(f"SR {tuple(sr.shape)} is not 4x the input {tuple(lr.shape)}")
    difference = reference.sub_(sr.float().cpu()).numpy()
    low = gaussian_filter(difference, sigma=(0, 0, sigma, sigma), mode="reflect")
    return (sr.float().cpu() + torch.from_numpy(low)).clamp_(0, 1)


FIX_BYTES_PER_OUTPUT_PIXEL = 30  # the bicubic reference, the difference and its blur (measured as in `methods`)


class ColourFixedUpscaler(Upscaler):
    """Another upscaler's output passed through `match_low_frequencies`."""

    def __init__(self, upscaler: Upscaler, sigma: float = SIGMA) -> None:
        self.upscaler, self.sigma = upscaler, sigma
        self.name, self.precision = upscaler.name + SUFFIX, upscaler.precision
        self.bytes_per_output_pixel = upscaler.bytes_per_output_pixel + FIX_BYTES_PER_OUTPUT_PIXEL

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        return match_low_frequencies(self.upscaler.upscale_tensor(lr, progress), lr, self.sigma)
