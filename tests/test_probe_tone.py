"""The tone probe: a flattened contrast shows in the right bands, the correction fit recovers a planted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srgan_core.evaluate import dataset_means
from srgan_core.methods import load_method
from srgan_core.metrics import channel_error, colour_shift
from tools import probe_tone
from tools.probe_tone import (
    BAND_EDGES,
    band_sums,
    block_means,
    corrected,
    fit_gain_offset,
)


def flattened(hr: np.ndarray, contrast: float = 0.9) -> np.ndarray:
    """HR with its contrast scaled about mid-grey: brighter shadows, darker highlights."""
    return np.clip(np.round(128 + contrast * (hr.astype(np.float64) - 128)), 0, 255).astype(np.uint8)


def test_channel_error_is_signed_and_colour_shift_its_largest_size() -> None:
    hr = np.full((16, 16, 3), 100, np.uint8)
    sr = hr + np.array([2, 0, 0], np.uint8)
    sr[..., 2] -= 5
    assert channel_error(sr, hr) == pytest.approx([2, 0, -5])
    assert colour_shift(sr, hr) == pytest.approx(5)


def test_flattened_contrast_is_too_bright_in_the_shadows_and_too_dark_in_the_highlights(photo: np.ndarray) -> None:
    sr = flattened(photo)
    sums, counts = band_sums(sr, photo, reference=photo)
    assert counts.sum() == (photo.shape[0] - 8) * (photo.shape[1] - 8)
    error = sums / np.maximum(counts, 1)[:, None]
    dark, bright = error[0], error[-1]
    assert counts[0] and counts[-1], "the test photo should reach both end bands"
    assert (dark > 1).all() and (bright < -1).all()
    inner = photo[4:-4, 4:-4].astype(np.float64)
    in_dark = inner.mean(axis=-1) < BAND_EDGES[1]
    expected = (sr[4:-4, 4:-4][in_dark] - inner[in_dark]).mean(axis=0)
    assert dark == pytest.approx(expected)
    assert np.abs(band_sums(photo, photo, photo)[0]).max() == 0  # no error, no bias
    black = np.zeros_like(photo)  # the bands follow the reference, not HR: all pixels fall in the darkest
    sums, counts = band_sums(sr, photo, reference=black)
    assert counts[0] == counts.sum() and sums[0] == pytest.approx(channel_error(sr, photo) * counts.sum())


def test_the_fit_recovers_a_planted_gain_and_offset(photo: np.ndarray) -> None:
    hr = block_means(photo, 4)
    gain, offset = np.array([1.1, 0.95, 1.02]), np.array([-5.0, 3.0, 0.5])
    sr = (hr - offset) / gain
    found_gain, found_offset = fit_gain_offset(sr, hr)
    assert found_gain == pytest.approx(gain) and found_offset == pytest.approx(offset)
    restored = corrected(flattened(photo), *fit_gain_offset(block_means(flattened(photo), 4), hr))
    assert colour_shift(restored, photo) < colour_shift(flattened(photo), photo)


def test_block_means_drop_partial_blocks() -> None:
    img = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    means = block_means(img, 2)
    assert means.shape == (2 * 3, 3)
    assert means[0] == pytest.approx(img[:2, :2].reshape(-1, 3).mean(axis=0))


def test_probe_report(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "tone.md"
    argv = ["--methods", "nearest", "bicubic", "--datasets", "Set5", "--calibration-crops", "2", "--out", str(out)]
    assert probe_tone.main(argv) == 0
    text = out.read_text()
    assert "python -m tools.probe_tone --methods nearest bicubic" in text and "## 3. A global correction" in text
    for method in ("nearest", "bicubic"):  # each row is its own method's: the colour shift of `evaluate`
        expected = dataset_means(load_method(method).upscale, ["Set5"], data_root)["Set5"]["colour_shift"]
        assert f"| {method} | Set5 |" in text
        row = next(line for line in text.splitlines() if line.startswith(f"| {method} | Set5 |"))
        assert float(row.split("|")[-2]) == pytest.approx(expected, abs=0.005)
    assert "| share of pixels |" in text
    bands_row = next(line for line in text.splitlines() if line.startswith("| share of pixels"))
    assert sum(int(cell.strip().rstrip("%")) for cell in bands_row.split("|")[2:-1]) in range(98, 103)
    without = tmp_path / "tone0.md"
    probe_tone.main(["--methods", "bicubic", "--datasets", "Set5", "--calibration-crops", "0", "--out", str(without)])
    assert "## 3." not in without.read_text()


def test_probe_rejects_a_negative_crop_count() -> None:
    with pytest.raises(SystemExit, match="calibration-crops"):
        probe_tone.main(["--calibration-crops", "-1"])
