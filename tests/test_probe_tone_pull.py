"""The tone-pull probe: its derivatives are the loss's, point the way a planted tone asks, and fill the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srgan_core import losses
from tools import probe_tone_pull
from tools.probe_tone_pull import hr_asks, tone_pull


def batch(seed: int = 0) -> torch.Tensor:
    return torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def retoned(sr: torch.Tensor, contrast: list[float], brightness: list[float]) -> torch.Tensor:
    mean = sr.mean(dim=(2, 3), keepdim=True)
    return mean + torch.tensor(contrast).view(1, 3, 1, 1) * (sr - mean) + torch.tensor(brightness).view(1, 3, 1, 1)


@pytest.mark.parametrize("contrast, brightness", [([1.2, 1.1, 1.05], [0.05, 0.02, 0.1]), ([0.8, 0.9, 0.95], [-0.05, -0.1, -0.02])])
def test_mse_pulls_towards_a_planted_tone_and_hr_asks_recovers_it(contrast: list[float], brightness: list[float]) -> None:
    sr = batch()
    hr = retoned(sr, contrast, brightness)
    asked_contrast, asked_brightness = hr_asks(sr, hr)
    assert asked_contrast == pytest.approx(np.array(contrast) - 1, abs=1e-6) and asked_brightness == pytest.approx(brightness, abs=1e-6)
    pull_contrast, pull_brightness = tone_pull(lambda s: losses.mse_loss(s, hr), sr)
    assert np.sign(pull_contrast) == pytest.approx(np.sign(asked_contrast))
    assert np.sign(pull_brightness) == pytest.approx(np.sign(asked_brightness))
    # SR - m has zero mean, so MSE's pull on the contrast is exactly 2 sum((SR - m)^2) / N times what HR asks
    centred = sr - sr.mean(dim=(2, 3), keepdim=True)
    factor = 2 * centred.pow(2).sum(dim=(0, 2, 3)).numpy() / sr.numel()
    assert pull_contrast == pytest.approx(factor * asked_contrast, rel=1e-4)


def test_pull_is_minus_the_derivative_of_the_loss() -> None:
    sr, hr = batch(0), batch(1)

    def loss(s: torch.Tensor) -> torch.Tensor:
        return (s - hr).pow(4).mean() + s.sin().mean()

    pull_contrast, pull_brightness = tone_pull(loss, sr)
    step = 1e-3
    for c in range(3):
        up, down = [1.0] * 3, [1.0] * 3
        up[c], down[c] = 1 + step, 1 - step
        slope = (loss(retoned(sr.double(), up, [0] * 3)) - loss(retoned(sr.double(), down, [0] * 3))).item() / (2 * step)
        assert pull_contrast[c] == pytest.approx(-slope, rel=1e-3)
        shift = [0.0] * 3
        shift[c] = step
        slope = (loss(sr.double() + torch.tensor(shift).view(1, 3, 1, 1)) - loss(sr.double() - torch.tensor(shift).view(1, 3, 1, 1))).item() / (2 * step)
        assert pull_brightness[c] == pytest.approx(-slope, rel=1e-3)


def test_probe_report(data_root: Path, vgg_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "pull.md"
    assert probe_tone_pull.main(["--methods", "srresnet-mse", "--batches", "1", "--discriminator-steps", "2", "--out", str(out)]) == 0
    text = out.read_text()
    assert "python -m tools.probe_tone_pull --methods srresnet-mse --batches 1" in text and "## srresnet-mse (" in text
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert {"VGG22 content", "VGG54 content, bfloat16", "adversarial (x 0.016)", "pixel MSE (reference)"} <= set(rows)

    def signs(cell: str) -> list[float]:
        return [np.sign(float(value)) for value in cell.split(" / ")]

    asked = rows["**HR asks for** (a - 1 x 100; b in levels)"]
    mse = rows["pixel MSE (reference)"]
    for column in range(2):  # one batch: the same sign, exactly, where the report's two decimals show one
        assert all(m == a for m, a in zip(signs(mse[column]), signs(asked[column])) if a != 0), (mse, asked)
    for layer in ("22", "54"):  # an SRGAN step's pull is its content term's plus the adversarial one
        total = rows[f"SRGAN-VGG{layer} loss (VGG{layer} + adversarial)"]
        for column in range(2):
            parts = [float(v) for v in rows[f"VGG{layer} content"][column].split(" / ")], [float(v) for v in rows["adversarial (x 0.016)"][column].split(" / ")]
            assert [float(v) for v in total[column].split(" / ")] == pytest.approx(np.add(*parts), abs=0.011)


def test_probe_rejects_an_empty_run() -> None:
    with pytest.raises(SystemExit, match="at least 1"):
        probe_tone_pull.main(["--batches", "0"])
