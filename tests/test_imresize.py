"""MATLAB imresize: the torch version against a float64 per-pixel reference, and the paper's bicubic figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from srgan_core import imresize as imresize_module
from srgan_core.data import benchmark_images
from srgan_core.images import downscale_x4, load_image, modcrop, to_tensor, to_uint8
from srgan_core.imresize import imresize
from srgan_core.metrics import psnr_y, ssim_y


def reference_resize_1d(x: np.ndarray, scale: float, kernel: str) -> np.ndarray:
    """MATLAB's definition written out per output sample (float64, loops), along axis 0."""

    def cubic(t: float) -> float:
        a = abs(t)
        if a <= 1:
            return 1.5 * a**3 - 2.5 * a**2 + 1
        if a <= 2:
            return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
        return 0.0

    def box(t: float) -> float:
        return 1.0 if -0.5 <= t < 0.5 else 0.0

    h = {"cubic": cubic, "box": box}[kernel]
    width = {"cubic": 4.0, "box": 1.0}[kernel]
    n_in = x.shape[0]
    n_out = math.ceil(n_in * scale)
    if scale < 1:
        width /= scale
    out = np.zeros((n_out,) + x.shape[1:])
    for i in range(1, n_out + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        w = np.array([scale * h(scale * (u - j)) if scale < 1 else h(u - j) for j in taps])
        w /= w.sum()
        acc = np.zeros(x.shape[1:])
        for weight, j in zip(w, taps):
            k = j - 1
            while k < 0 or k >= n_in:  # mirror: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
                k = -k - 1 if k < 0 else 2 * n_in - k - 1
            acc += weight * x[k]
        out[i - 1] = acc
    return out


def reference_imresize(img: np.ndarray, scale: float, kernel: str) -> np.ndarray:
    """Height first, then width, as MATLAB does for equal scales."""
    tmp = reference_resize_1d(img, scale, kernel)
    return reference_resize_1d(tmp.swapaxes(0, 1), scale, kernel).swapaxes(0, 1)


@pytest.mark.parametrize(
    ("shape", "scale", "kernel"),
    [((24, 20), 0.25, "cubic"), ((13, 9), 4, "cubic"), ((17, 22), 0.5, "cubic"), ((10, 7), 3, "cubic"), ((6, 5), 4, "box"), ((3, 2), 4, "cubic")],
)
def test_matches_float64_reference(shape: tuple[int, int], scale: float, kernel: str) -> None:
    rng = np.random.default_rng(0)
    img = rng.random(shape)
    expected = reference_imresize(img, scale, kernel)
    got = imresize(torch.from_numpy(img), scale, kernel).numpy()
    assert got.shape == expected.shape == (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale))
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_batched_channels_match_single() -> None:
    x = torch.rand(2, 3, 16, 12, dtype=torch.float64)
    batched = imresize(x, 0.25)
    single = imresize(x[1, 2], 0.25)
    torch.testing.assert_close(batched[1, 2], single)


def test_a_result_stored_in_float32_is_the_float64_one_rounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Computed in float64 a band of rows at a time (bands of 7 rows here: the last one short) into float32."""
    monkeypatch.setattr(imresize_module, "BAND_ROWS", 7)
    x = torch.rand(1, 3, 9, 11, dtype=torch.float64)
    banded = imresize(x, 4, out_dtype=torch.float32)
    assert banded.dtype == torch.float32 and banded.shape == (1, 3, 36, 44)
    torch.testing.assert_close(banded, imresize(x, 4).float(), rtol=0, atol=1e-7)


def test_nearest_x4_repeats_pixels() -> None:
    x = torch.rand(5, 7, dtype=torch.float64)
    expected = x.repeat_interleave(4, 0).repeat_interleave(4, 1)
    torch.testing.assert_close(imresize(x, 4, "box"), expected)


def test_rejects_integer_tensors() -> None:
    with pytest.raises(TypeError, match="float"):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 0.5)


@pytest.mark.parametrize(
    ("dataset", "psnr", "ssim"), [("Set5", 28.43, 0.811), ("Set14", 26.09, 0.705), ("BSD100", 25.96, 0.668)]
)
def test_bicubic_reproduces_published_figures(data_root, dataset: str, psnr: float, ssim: float) -> None:
    """The acceptance figures of the paper's protocol (bicubic down and up, Y channel, 4-pixel border)."""
    psnrs, ssims = [], []
    for path in benchmark_images(dataset, data_root):
        hr = modcrop(load_image(path))
        sr = to_uint8(imresize(to_tensor(downscale_x4(hr)).double(), 4))
        psnrs.append(psnr_y(sr, hr))
        ssims.append(ssim_y(sr, hr))
    assert abs(np.mean(psnrs) - psnr) <= 0.03
    assert abs(np.mean(ssims) - ssim) <= 0.003
