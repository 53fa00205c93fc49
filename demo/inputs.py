"""From the image a user brings to the LR input every method upscales (and the original, when known).

Size limit: the low-resolution input is at most MAX_LR_PIXELS (256x256 = 65,536 pixels, so a
high-resolution photo is at most 1024x1024 = 1,048,576 pixels); a larger image is downscaled to fit
first, and the user is told so. The limit keeps a comparison interactive on a CPU: at the limit one
learned method took 8 s on two cores shared with a training job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from srgan_core.images import (
    SCALE,
    ImageError,
    downscale_x4,
    input_notes,
    modcrop,
)

MAX_LR_PIXELS = 256 * 256
MIN_LR_SIDE = 8  # smaller inputs carry too little to upscale, and PSNR/SSIM need 4-pixel borders and 11x11 windows
HR_MODE = "high-resolution photo"
LR_MODE = "low-resolution input"
MODES = (HR_MODE, LR_MODE)


@dataclass
class Prepared:
    lr: np.ndarray
    hr: np.ndarray | None  # the original the 4x outputs are scored against (HR mode only)
    notes: list[str] = field(default_factory=list)


def prepare(image: np.ndarray, mode: str) -> Prepared:
    """HR mode: the mod-4-cropped photo is the original and its MATLAB-bicubic /4 the input.
    LR mode: the image is the input as is, with no original to score against."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    per_lr = SCALE if mode == HR_MODE else 1  # input pixels per LR pixel, along each side
    height, width = image.shape[:2]
    smallest = MIN_LR_SIDE * per_lr
    if min(height, width) < smallest:
        raise ImageError(
            f"The image is {width}x{height} pixels: too small. A {mode} must be at least {smallest}x{smallest} pixels."
        )
    notes = []
    limit = MAX_LR_PIXELS * per_lr**2
    if height * width > limit:
        check_shrinkable(height, width, mode)
        image = shrink_to(image, limit)
        side = math.isqrt(limit)
        notes.append(
            f"The image ({width}x{height}) is beyond this app's limit for a {mode} ({limit:,} pixels, e.g. "
            f"{side}x{side}), so it was first downscaled (Lanczos) to {image.shape[1]}x{image.shape[0]}."
        )
    if mode == LR_MODE:
        return Prepared(image, None, notes)
    hr = modcrop(image, SCALE)
    if hr.shape != image.shape:
        notes.append(f"The photo was cropped to {hr.shape[1]}x{hr.shape[0]} (multiples of {SCALE}) before downscaling.")
    return Prepared(downscale_x4(hr), hr, notes)


def fitting_mode(image: np.ndarray, mode: str) -> tuple[str, str | None]:
    """`mode`, or low-resolution mode with a note when the image is too small to read as a photo to downscale.
    Raises ImageError for an image too small for either (it is refused when it is loaded, not at Compare)."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_LR_SIDE:
        raise ImageError(
            f"the image is {width}x{height} pixels: too small. The smallest input is {MIN_LR_SIDE}x{MIN_LR_SIDE} "
            f"pixels (read as the low-resolution input), {SCALE * MIN_LR_SIDE}x{SCALE * MIN_LR_SIDE} as a "
            "high-resolution photo."
        )
    note = None
    if mode == HR_MODE and min(height, width) < SCALE * MIN_LR_SIDE:
        smallest = SCALE * MIN_LR_SIDE
        mode, note = LR_MODE, (
            f"It is smaller than {smallest}x{smallest}, too small to downscale as a high-resolution photo: "
            "it will be upscaled as the low-resolution input."
        )
    check_shrinkable(height, width, mode)
    return mode, note


def check_shrinkable(height: int, width: int, mode: str) -> None:
    """ImageError for an image so elongated that, shrunk to this app's limit, its short side would be too small."""
    per_lr = SCALE if mode == HR_MODE else 1
    limit = MAX_LR_PIXELS * per_lr**2
    if height * width <= limit:
        return
    new_w, new_h = shrunk_size(height, width, limit)
    if min(new_w, new_h) < MIN_LR_SIDE * per_lr:
        raise ImageError(
            f"the image is {width}x{height} pixels: too elongated for this app. Shrunk to its limit for a {mode} "
            f"({limit:,} pixels) it would be {new_w}x{new_h}, under the smallest input of {MIN_LR_SIDE * per_lr} pixels "
            "across. Crop it first, or upscale it with `python -m srgan_core.upscale`, which has no size limit."
        )


def file_notes(path: str) -> list[str]:
    """Sentences on what reading the file changed (frames dropped, bit depth reduced, transparency flattened)."""
    return [f"It {note}." for note in input_notes(path)]


def output_shape(height: int, width: int, mode: str) -> tuple[int, int]:
    """(height, width) of the 4x outputs `prepare` leads to for an image of this size in `mode` (shrunk to the limit,
    the photo mod-4 cropped), before anything is computed."""
    per_lr = SCALE if mode == HR_MODE else 1
    limit = MAX_LR_PIXELS * per_lr**2
    if height * width > limit:
        width, height = shrunk_size(height, width, limit)
    if mode == HR_MODE:
        return height - height % SCALE, width - width % SCALE
    return height * SCALE, width * SCALE


def shrink_to(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """The image downscaled (Lanczos, aspect kept) to at most `max_pixels` pixels."""
    return np.asarray(Image.fromarray(image).resize(shrunk_size(*image.shape[:2], max_pixels), Image.Resampling.LANCZOS))


def shrunk_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an image scaled down, aspect kept, to at most `max_pixels` pixels."""
    factor = math.sqrt(max_pixels / (height * width))
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))
