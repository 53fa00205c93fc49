"""NIQE (Mittal et al. 2013), a no-reference "naturalness" score: lower looks more natural.

MATLAB-compatible: the official LIVE release's computation (96x96 blocks without overlap, 7x7
Gaussian MSCN with replicated borders, 36 AGGD features per block at full and half scale, the
half scale made by MATLAB's `imresize`) on the Y channel of MATLAB's `rgb2ycbcr`, against the
release's pristine model (`niqe/niqe_pris_params.npz` in the data folder). Its values are on the
scale papers report: MATLAB gives 5.72957338 for BasicSR's `baboon.png`, and so does this.
Blocks are processed together as one array, so an image costs a few array passes, not a loop.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.special
from scipy import ndimage

from srgan_core.imresize import resize_matrix
from srgan_core.metrics import rgb_to_y
from srgan_core.paths import damaged_data, default_data_root

BLOCK_SIZE = 96
MIN_SIZE = 2 * BLOCK_SIZE  # at least 2x2 blocks, so the image's feature covariance has 4 samples or more
MODEL_FILE = "niqe/niqe_pris_params.npz"
FETCH_COMMAND = "python -m srgan_core.data download --only niqe"

# Shape parameters tried when fitting a generalised Gaussian (MATLAB's 0.2:0.001:10), and the
# moment ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) of each; the ratio rises strictly with a.
_ALPHAS = np.linspace(0.2, 10, 9801)
_MOMENT_RATIOS = scipy.special.gamma(2 / _ALPHAS) ** 2 / (
    scipy.special.gamma(1 / _ALPHAS) * scipy.special.gamma(3 / _ALPHAS)
)
# Neighbour offsets of the four pairwise products (MATLAB circshift [0 1; 1 0; 1 1; 1 -1]).
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


class NiqeModelMissing(FileNotFoundError):
    """The pristine model file is not in the data folder, or is damaged; the message names the command that fetches it."""


def niqe(image: np.ndarray, data_root: Path | str | None = None) -> float:
    """NIQE of a uint8 RGB (HxWx3) or grayscale (HxW) image of at least 192x192 pixels.

    The model is read from `data_root` (default: `SRGAN_DATA` or `../shared/data`). NaN when fewer
    than two blocks have both negative and positive MSCN coefficients (a flat image has no NIQE).
    """
    luma = _luma(image)
    mu_pristine, cov_pristine, window = pristine_model(data_root)
    features = _features(luma, window)
    complete = features[~np.isnan(features).any(axis=1)]  # MATLAB's nancov drops incomplete rows
    if len(complete) < 2:
        return float("nan")
    mu = np.nanmean(features, axis=0)
    diff = mu - mu_pristine
    cov = (cov_pristine + np.cov(complete, rowvar=False)) / 2
    return float(np.sqrt(diff @ scipy.linalg.pinv(cov) @ diff))


def model_path(data_root: Path | str | None = None) -> Path:
    """Where the pristine model is expected: `<data root>/niqe/niqe_pris_params.npz`."""
    root = Path(data_root) if data_root is not None else default_data_root()
    if root is None:
        raise NiqeModelMissing(
            f"NIQE needs {MODEL_FILE} from a data folder (none found: pass --data-root or set SRGAN_DATA); "
            f"fetch it with `{FETCH_COMMAND} --to DIR`"
        )
    return root / MODEL_FILE


def pristine_model(data_root: Path | str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean 36, covariance 36x36, 7x7 Gaussian window) of the official pristine model."""
    return _load_model(model_path(data_root).resolve())


@functools.lru_cache(maxsize=4)
def _load_model(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not path.is_file():
        raise NiqeModelMissing(f"NIQE model {path} is missing; fetch it with `{FETCH_COMMAND} --to {path.parent.parent}`")
    try:
        with np.load(path) as params:
            return np.ravel(params["mu_pris_param"]), params["cov_pris_param"], params["gaussian_window"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise NiqeModelMissing(damaged_data(f"NIQE model {path} is damaged ({exc})", path.parent.parent)) from None


def _luma(image: np.ndarray) -> np.ndarray:
    """Y of MATLAB's uint8 `rgb2ycbcr` (rounded to integers, as MATLAB returns it), or the gray image."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"NIQE needs a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"NIQE needs a uint8 image, got dtype {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"NIQE needs an HxWx3 RGB or HxW grayscale image, got shape {image.shape}")
    height, width = image.shape[:2]
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(
            f"NIQE needs an image of at least {MIN_SIZE}x{MIN_SIZE} pixels (2x2 blocks of {BLOCK_SIZE}), "
            f"got {height}x{width}"
        )
    if image.ndim == 2:
        return image.astype(np.float64)
    return np.floor(rgb_to_y(image) + 0.5)  # MATLAB rounds halves away from zero


def _features(luma: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The 36 features of every 96x96 block: 18 at full scale, 18 of the same block at half scale."""
    rows = luma.shape[0] - luma.shape[0] % BLOCK_SIZE
    cols = luma.shape[1] - luma.shape[1] % BLOCK_SIZE
    full = luma[:rows, :cols]
    half = _half_size(full)
    return np.hstack(
        [
            _block_features(_blocks(_mscn(full, window), BLOCK_SIZE)),
            _block_features(_blocks(_mscn(half, window), BLOCK_SIZE // 2)),
        ]
    )


def _half_size(image: np.ndarray) -> np.ndarray:
    """MATLAB's `imresize(image, 0.5)` (bicubic, antialiased): `srgan_core.imresize`'s weights, applied sparsely.

    Each output pixel has 10 taps; sparse products skip the zeros of the dense matrices and, unlike BLAS,
    do not contend for cores with other work.
    """
    rows, cols = _halving_matrix(image.shape[0]), _halving_matrix(image.shape[1])
    return (cols @ (rows @ image).T).T


@functools.lru_cache(maxsize=16)
def _halving_matrix(size: int) -> scipy.sparse.csr_array:
    return scipy.sparse.csr_array(resize_matrix(size, 0.5).numpy())


def _mscn(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (MATLAB `imfilter(..., 'replicate')`).

    The Gaussian window is the outer product of its row sums, so it is applied as two 1-D passes, as
    MATLAB's `imfilter` applies a separable kernel. That matters: in flat regions the coefficients are
    rounding noise, and one 2-D 7x7 pass gives 5.72996 on baboon.png where MATLAB gives 5.72957.
    """
    taps = window.sum(axis=1)

    def smooth(values: np.ndarray) -> np.ndarray:
        rows = ndimage.correlate1d(values, taps, axis=0, mode="nearest")
        return ndimage.correlate1d(rows, taps, axis=1, mode="nearest")

    mu = smooth(image)
    sigma = np.sqrt(np.abs(smooth(image * image) - mu * mu))
    return (image - mu) / (sigma + 1)


def _blocks(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping size x size blocks, shape (n, size, size); `image` divides evenly."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    return image.reshape(rows, size, cols, size).swapaxes(1, 2).reshape(-1, size, size)


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """18 features per block: an AGGD fit of the coefficients and of their products with 4 neighbours."""
    alpha, left, right = _aggd(blocks)
    columns = [alpha, (left + right) / 2]
    for shift in _SHIFTS:
        alpha, left, right = _aggd(blocks * np.roll(blocks, shift, axis=(1, 2)))
        mean = (right - left) * scipy.special.gamma(2 / alpha) / scipy.special.gamma(1 / alpha)
        columns.extend([alpha, mean, left, right])
    return np.stack(columns, axis=1)


def _aggd(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit per block: (shape, left scale, right scale).

    As MATLAB's `estimateaggdparam`: a side without values has a NaN scale, and the shape then
    falls back to the first candidate (MATLAB's `min` over all-NaN differences returns index 1).
    """
    values = blocks.reshape(len(blocks), -1)
    squares = values * values
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = _root_mean_where(squares, values < 0)
        right_std = _root_mean_where(squares, values > 0)
        ratio = left_std / right_std
        r_hat = np.abs(values).mean(axis=1) ** 2 / squares.mean(axis=1)
        r_norm = r_hat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    alpha = _ALPHAS[_nearest_ratio(r_norm)]
    scale = np.sqrt(scipy.special.gamma(1 / alpha) / scipy.special.gamma(3 / alpha))
    return alpha, left_std * scale, right_std * scale


def _root_mean_where(squares: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Per row, sqrt of the mean of the selected squares (NaN when none is selected, as MATLAB's mean([]))."""
    return np.sqrt(np.where(selected, squares, 0).sum(axis=1) / selected.sum(axis=1))


def _nearest_ratio(r_norm: np.ndarray) -> np.ndarray:
    """Index of the closest `_MOMENT_RATIOS` entry (the lower one on ties; 0 when not finite)."""
    upper = np.clip(np.searchsorted(_MOMENT_RATIOS, r_norm), 0, len(_MOMENT_RATIOS) - 1)
    lower = np.maximum(upper - 1, 0)
    with np.errstate(invalid="ignore"):
        closer_upper = (_MOMENT_RATIOS[upper] - r_norm) ** 2 < (_MOMENT_RATIOS[lower] - r_norm) ** 2
    return np.where(np.isfinite(r_norm), np.where(closer_upper, upper, lower), 0)
