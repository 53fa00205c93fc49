"""The colour-cast check beside the paper's PSNR / SSIM (tested against published figures in test_imresize)."""

from __future__ import annotations

import numpy as np
import pytest

from srgan_core.metrics import colour_shift


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
