"""The artefact probe: own offsets and grids are measured right, and the fitted perturbation finds known optima."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srgan_core import losses
from tools import probe_artefacts
from tools.probe_artefacts import LEVEL, loss_optimal_perturbation, own_artefacts


def planted(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """HR, and SR = HR + a known RGB offset + a known zero-mean 4x4 pattern (levels) + noise."""
    gen = torch.Generator().manual_seed(seed)
    hr = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    offset = np.array([3.0, -1.5, 6.0])
    pattern = torch.randn(4, 4, generator=gen) * 2
    pattern -= pattern.mean()
    noise = torch.randn(hr.shape, generator=gen) * 0.5 * LEVEL
    sr = hr + (torch.tensor(offset, dtype=torch.float32).view(1, 3, 1, 1) + pattern.repeat(8, 8)) * LEVEL + noise
    return sr, hr, offset, pattern.numpy()


def test_own_artefacts_recover_a_planted_offset_and_pattern() -> None:
    sr, hr, offset, pattern = planted()
    own_offset, own_pattern = own_artefacts(sr, hr)
    assert own_offset == pytest.approx(offset, abs=0.05)
    assert own_pattern == pytest.approx(pattern, abs=0.2)
    assert own_pattern.sum() == pytest.approx(0, abs=1e-4)


def test_mse_wants_exactly_the_planted_artefacts_removed() -> None:
    sr, hr, _, _ = planted(1)
    own_offset, own_pattern = own_artefacts(sr, hr)
    added_offset, added_pattern, before, after = loss_optimal_perturbation(losses.mse_loss, sr, hr)
    assert added_offset == pytest.approx(-own_offset, abs=1e-3)  # MSE's optimum is the mean error, in closed form
    assert added_pattern == pytest.approx(-own_pattern, abs=1e-3)
    assert after < before


def test_a_loss_blind_to_colour_leaves_the_offset_alone() -> None:
    """A loss on zero-mean images cannot see an offset: the fitted offset stays where L-BFGS started."""
    sr, hr, _, pattern = planted(2)

    def centred_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return losses.mse_loss(a - a.mean(dim=(2, 3), keepdim=True), b - b.mean(dim=(2, 3), keepdim=True))

    added_offset, added_pattern, _, _ = loss_optimal_perturbation(centred_mse, sr, hr)
    assert np.abs(added_offset).max() < 1e-3
    assert added_pattern == pytest.approx(-pattern, abs=0.2)


def test_probe_report_has_a_row_per_generator_and_loss(data_root: Path, vgg_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe.md"
    argv = ["--generators", "srresnet-mse", "--batches", "1", "--batch", "2", "--crop", "32", "--out", str(out),
            "--vgg-weights", str(vgg_weights)]
    assert probe_artefacts.main(argv) == 0
    rows = [line.strip("| ").split(" | ") for line in out.read_text().splitlines() if line.startswith("| srresnet-mse")]
    assert [row[1] for row in rows] == ["mse", "vgg22", "vgg54"]
    mse = rows[0]
    own, added = ([float(v) for v in cell.split(" / ")] for cell in mse[2:4])
    assert added == pytest.approx([-v for v in own], abs=0.11)  # rounded to 0.1 level in the report
    assert float(mse[7]) == pytest.approx(-1, abs=0.01)


def test_probe_refuses_a_crop_off_the_pixel_shuffle_grid(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        probe_artefacts.main(["--crop", "30"])
    assert "multiple of 4" in capsys.readouterr().err


def test_probe_can_run_the_generators_on_batch_statistics(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe.md"
    common = ["--generators", "srresnet-mse", "--losses", "mse", "--batches", "1", "--batch", "2", "--crop", "32", "--out", str(out)]
    reports = {}
    for flags in ([], ["--batch-statistics"]):
        assert probe_artefacts.main(common + flags) == 0
        reports[bool(flags)] = out.read_text()
    assert "eval mode, as shipped" in reports[False] and "training mode: BatchNorm on batch statistics" in reports[True]
    own = {mode: next(line for line in text.splitlines() if line.startswith("| srresnet-mse")).split(" | ")[2] for mode, text in reports.items()}
    assert own[False] != own[True]  # the same crops through other BatchNorm statistics
