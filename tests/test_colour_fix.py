"""The low-frequency colour fix: coarse colour from the input's bicubic upscale, fine detail from the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srgan_core.colour_fix import SUFFIX, ColourFixedUpscaler, match_low_frequencies
from srgan_core.images import to_tensor
from srgan_core.imresize import imresize
from srgan_core.methods import load_method
from tools import probe_colour_fix as probe


def bicubic(lr: torch.Tensor) -> torch.Tensor:
    return imresize(lr.double(), 4).clamp(0, 1).float()


def test_bicubic_output_is_left_as_it_is(photo: np.ndarray) -> None:
    lr = to_tensor(photo)
    sr = bicubic(lr)
    assert torch.allclose(match_low_frequencies(sr, lr), sr, atol=1e-6)


def test_a_cast_goes_and_fine_detail_stays(photo: np.ndarray) -> None:
    lr = to_tensor(photo)
    reference = bicubic(lr)
    checker = (torch.arange(reference.shape[-1]) % 2 * 2 - 1).float() * 0.02  # period 2: far above the low-pass
    detail = checker.expand_as(reference)
    cast = torch.tensor([-0.01, 0.0, 0.03]).view(1, 3, 1, 1)
    sr = (reference * 0.9 + 0.05 + cast + detail).clamp(0, 1)  # dimmer contrast, a blue cast, and a fine pattern
    fixed = match_low_frequencies(sr, lr)
    channel_means = lambda t: t.mean(dim=(0, 2, 3))
    assert (channel_means(sr) - channel_means(reference)).abs().max() > 0.02
    assert (channel_means(fixed) - channel_means(reference)).abs().max() < 2e-3
    kept = ((fixed - reference) * detail.sign()).mean() / 0.02  # the pattern's amplitude in the result, as a fraction
    assert 0.95 < kept < 1.05


def test_tiny_images_and_bad_arguments() -> None:
    lr = torch.rand(1, 3, 3, 5)
    sr = torch.rand(1, 3, 12, 20)
    assert match_low_frequencies(sr, lr).shape == sr.shape  # a kernel wider than the image still works
    with pytest.raises(ValueError, match="not 4x"):
        match_low_frequencies(sr[..., :-1], lr)
    with pytest.raises(ValueError, match="positive"):
        match_low_frequencies(sr, lr, sigma=0)


def test_upscaler_wraps_another_and_says_so(photo: np.ndarray) -> None:
    nearest = load_method("nearest")
    fixed = ColourFixedUpscaler(nearest)
    assert fixed.name == "nearest" + SUFFIX and fixed.precision == nearest.precision
    out, plain = fixed.upscale(photo), nearest.upscale(photo)
    assert out.dtype == np.uint8 and out.shape == plain.shape
    assert not np.array_equal(out, plain)  # nearest's blocks differ from bicubic's low-pass at the edges


def test_probe_reports_each_method_as_trained_and_fixed(tiny_set5: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    argv = ["--methods", "bicubic", "nearest", "--sigmas", "4", "8", "--datasets", "Set5", "--data-root", str(tiny_set5), "--out", str(out)]
    assert probe.main(argv) == 0
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [(r[0], r[1]) for r in rows] == [
        ("| bicubic", "as trained"), ("| bicubic", "colour fix, sigma 4"), ("| bicubic", "colour fix, sigma 8"),
        ("| nearest", "as trained"), ("| nearest", "colour fix, sigma 4"), ("| nearest", "colour fix, sigma 8"),
    ]
    assert rows[0][2:] == rows[1][2:] == rows[2][2:]  # bicubic is its own reference: the fix changes nothing
    assert rows[3][2:] != rows[4][2:]
    with pytest.raises(SystemExit, match="positive"):
        probe.main(["--sigmas", "0"])


def test_probe_runs_the_network_once_per_image(photo: np.ndarray) -> None:
    calls = []
    nearest = load_method("nearest")

    class Counted(type(nearest)):
        def upscale_tensor(self, lr, progress=None):
            calls.append(lr.shape)
            return super().upscale_tensor(lr, progress)

    remembered = probe.Remembered(Counted("nearest"))
    remembered.upscale(photo)
    assert np.array_equal(remembered.upscale(photo), nearest.upscale(photo)) and len(calls) == 1
    remembered.upscale(photo[:-4])
    assert len(calls) == 2

