"""The colour-cast and sub-pixel grid checks beside the paper's PSNR / SSIM (tested against published figures in test_imresize)."""

from __future__ import annotations

import numpy as np
import pytest

from srgan_core.metrics import colour_shift, subpixel_grid


def test_colour_shift_measures_a_cast_in_levels() -> None:
    rng = np.random.default_rng(0)
    hr = rng.integers(20, 200, (40, 30, 3), dtype=np.uint8)
    cast = hr.copy()
    cast[4:-4, 4:-4, 2] += 12  # a blue cast inside the 4-pixel border the metric ignores
    assert colour_shift(hr, hr) == 0.0
    assert colour_shift(cast, hr) == pytest.approx(12.0)
    assert colour_shift(cast, hr, border=0) == pytest.approx(12.0 * 32 * 22 / (40 * 30))
    with pytest.raises(ValueError, match="differ in shape"):
        colour_shift(hr[:-1], hr)


def test_subpixel_grid_measures_a_periodic_offset_and_ignores_content() -> None:
    rng = np.random.default_rng(0)
    hr = rng.integers(40, 200, (64, 48, 3), dtype=np.uint8)
    noisy = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    gridded = hr.copy()
    gridded[1::4, 2::4] += 10  # one pixel in every 4x4 block brighter by 10 levels in R, G and B
    assert subpixel_grid(hr, hr) == 0.0
    assert subpixel_grid(gridded, hr) == pytest.approx(10 * 219 / 255)  # in Y levels (BT.601 range 16-235)
    assert subpixel_grid(noisy, hr) < 2.5  # random error, no grid: far below the grid's spread
    with pytest.raises(ValueError, match="differ in shape"):
        subpixel_grid(hr[:-1], hr)
