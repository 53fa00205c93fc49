"""NIQE on the MATLAB scale: MATLAB's published value for baboon.png, the vectorised blocks against a
per-block loop, sanity (blur and noise raise it), the model's location, and bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import skimage.color
import skimage.data
from PIL import Image
from scipy import ndimage

from srgan_core import niqe as niqe_module
from srgan_core.niqe import FETCH_COMMAND, MIN_SIZE, MODEL_FILE, NiqeModelMissing, niqe
from srgan_core.paths import default_data_root

MATLAB_BABOON = 5.72957338  # MATLAB R2021a, official release, Y of rgb2ycbcr, 96x96 blocks (data README)


@pytest.fixture(scope="module")
def model_root() -> Path:
    root = default_data_root()
    if root is None or not (root / MODEL_FILE).is_file():
        pytest.skip(f"needs {MODEL_FILE} in the data folder ({FETCH_COMMAND})")
    return root


def test_baboon_matches_matlab(model_root: Path) -> None:
    path = model_root / "niqe" / "baboon.png"
    if not path.is_file():
        pytest.skip("needs niqe/baboon.png in the data folder")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert niqe(image, model_root) == pytest.approx(MATLAB_BABOON, abs=1e-3)


def _loop_block_features(blocks: np.ndarray) -> np.ndarray:
    """The official release's `computefeature`, one block at a time (MATLAB's min: first of the minima)."""
    alphas = np.arange(0.2, 10.0005, 0.001)
    ratios = scipy.special.gamma(2 / alphas) ** 2 / (scipy.special.gamma(1 / alphas) * scipy.special.gamma(3 / alphas))

    def aggd(values: np.ndarray) -> tuple[float, float, float]:
        values = values.ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            left = np.sqrt(np.mean(values[values < 0] ** 2)) if (values < 0).any() else np.nan
            right = np.sqrt(np.mean(values[values > 0] ** 2)) if (values > 0).any() else np.nan
            ratio = left / right
            r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
            r_norm = r_hat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
        distances = (ratios - r_norm) ** 2
        alpha = alphas[np.nanargmin(distances)] if np.isfinite(distances).any() else alphas[0]
        scale = np.sqrt(scipy.special.gamma(1 / alpha) / scipy.special.gamma(3 / alpha))
        return alpha, left * scale, right * scale

    rows = []
    for block in blocks:
        alpha, left, right = aggd(block)
        row = [alpha, (left + right) / 2]
        for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
            alpha, left, right = aggd(block * np.roll(block, shift, axis=(0, 1)))
            row += [alpha, (right - left) * scipy.special.gamma(2 / alpha) / scipy.special.gamma(1 / alpha), left, right]
        rows.append(row)
    return np.array(rows)


def test_vectorised_blocks_match_a_per_block_loop(model_root: Path) -> None:
    camera = skimage.data.camera().astype(np.float64)[:288, :384]
    camera[:96, :96] = 128  # a flat block: no positive or negative coefficients, NaN scales
    camera[96:192, 96:192] = camera[96:192, 96:192] > 128  # two levels only
    _, _, window = niqe_module.pristine_model(model_root)
    blocks = niqe_module._blocks(niqe_module._mscn(camera, window), 96)
    assert blocks.shape == (12, 96, 96)
    np.testing.assert_allclose(
        niqe_module._block_features(blocks), _loop_block_features(blocks), rtol=1e-12, atol=1e-12, equal_nan=True
    )


def test_half_scale_is_the_projects_matlab_imresize() -> None:
    import torch

    from srgan_core.imresize import imresize

    luma = np.random.default_rng(1).uniform(0, 255, (288, 384))
    expected = imresize(torch.from_numpy(luma), 0.5).numpy()
    np.testing.assert_allclose(niqe_module._half_size(luma), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
def test_blur_and_noise_raise_niqe(name: str, model_root: Path) -> None:
    image = getattr(skimage.data, name)()
    sigma = (2, 2, 0) if image.ndim == 3 else 2
    blurred = ndimage.gaussian_filter(image, sigma)
    noise = np.random.default_rng(0).normal(0, 10, image.shape)
    noisy = np.clip(image + noise, 0, 255).round().astype(np.uint8)
    clean = niqe(image)
    assert niqe(blurred) > clean + 1
    assert niqe(noisy) > clean + 1


def test_rgb_is_scored_on_the_y_of_rgb2ycbcr(model_root: Path) -> None:
    rgb = skimage.data.astronaut()
    y = np.round(skimage.color.rgb2ycbcr(rgb)[..., 0]).astype(np.uint8)  # 16..235, as MATLAB's uint8 rgb2ycbcr
    assert niqe(rgb) == pytest.approx(niqe(y), abs=1e-9)
    gray = np.round(skimage.color.rgb2gray(rgb) * 255).astype(np.uint8)  # rgb2gray: the other convention
    assert abs(niqe(rgb) - niqe(gray)) > 1e-3


def test_minimum_size_and_uneven_sides_are_accepted(model_root: Path) -> None:
    assert np.isfinite(niqe(skimage.data.astronaut()[:MIN_SIZE, :MIN_SIZE]))
    assert np.isfinite(niqe(skimage.data.chelsea()))  # 300x451: the blocks cover 288x384


def test_flat_image_has_no_niqe(model_root: Path) -> None:
    assert np.isnan(niqe(np.full((300, 300, 3), 128, dtype=np.uint8)))


@pytest.mark.parametrize("shape", [(MIN_SIZE - 1, 400, 3), (400, MIN_SIZE - 1), (64, 64, 3)])
def test_too_small_image_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_SIZE}x{MIN_SIZE} pixels"):
        niqe(np.zeros(shape, dtype=np.uint8))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((300, 300, 3), dtype=np.float32), "uint8"),
        (np.zeros((300, 300, 4), dtype=np.uint8), "HxWx3"),
        (np.zeros((300, 300, 1), dtype=np.uint8), "HxWx3"),
        (np.zeros(300 * 300, dtype=np.uint8), "HxWx3"),
        ([[0] * 300] * 300, "numpy array"),
    ],
)
def test_bad_input_is_rejected(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        niqe(image)


def test_missing_model_names_the_download_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = skimage.data.camera()
    expected = f"{re.escape(str((tmp_path / MODEL_FILE).resolve()))}.*{re.escape(FETCH_COMMAND)}"
    with pytest.raises(NiqeModelMissing, match=expected) as err:
        niqe(image, tmp_path)
    assert "\n" not in str(err.value)
    monkeypatch.delenv("SRGAN_DATA", raising=False)
    monkeypatch.setattr(niqe_module, "default_data_root", lambda: None)
    with pytest.raises(NiqeModelMissing, match=f"SRGAN_DATA.*{re.escape(FETCH_COMMAND)}"):
        niqe(image)
