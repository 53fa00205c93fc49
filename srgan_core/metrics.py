"""The paper's image-quality protocol: PSNR / SSIM on Y (ITU-R BT.601), 4 border pixels cropped; and two artefact
checks (not in the paper) for SR methods whose losses pin neither the image's mean colour nor its fine grid: a
colour cast and a periodic pattern on the upsampling grid."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from srgan_core.method_specs import SCALE


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> BT.601 luma Y in [16, 235] as float64: MATLAB's rgb2ycbcr coefficients, not rounded to integers
    as MATLAB rounds uint8 input (bicubic Set5: 28.43 dB as in the paper; 28.42 with Y rounded)."""
    rgb = img.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def _prepare(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in shape")
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise TypeError("the metrics take uint8 images (SR rounded to uint8, as in the paper)")
    y_sr, y_hr = rgb_to_y(sr), rgb_to_y(hr)
    if border:
        y_sr, y_hr = y_sr[border:-border, border:-border], y_hr[border:-border, border:-border]
    return y_sr, y_hr


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    y_sr, y_hr = _prepare(sr, hr, border)
    mse = np.mean((y_sr - y_hr) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """SSIM of Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03, range 255."""
    y_sr, y_hr = _prepare(sr, hr, border)
    return float(
        structural_similarity(
            y_sr, y_hr, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def channel_error(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> np.ndarray:
    """Per-channel RGB mean of SR - HR, in 8-bit levels (signed: + = SR brighter in that channel)."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in shape")
    if border:
        sr, hr = sr[border:-border, border:-border], hr[border:-border, border:-border]
    means = [img.reshape(-1, img.shape[-1]).astype(np.float64).mean(axis=0) for img in (sr, hr)]
    return means[0] - means[1]


def colour_shift(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """Largest difference of the per-channel RGB means of SR and HR, in 8-bit levels (a colour cast)."""
    return float(np.abs(channel_error(sr, hr, border)).max())


def subpixel_grid(sr: np.ndarray, hr: np.ndarray, scale: int = SCALE, border: int = 4) -> float:
    """Spread (max - min) over the scale x scale sub-pixel positions of the mean Y error SR - HR, in Y levels.

    Each output pixel of a sub-pixel (pixel-shuffle) upsampler comes from one of scale x scale channels; when
    those drift apart, every pixel at the same position modulo `scale` is brighter or darker by the same amount.
    Averaging the error over the image keeps that offset and cancels the image content."""
    y_sr, y_hr = _prepare(sr, hr, border)
    error = y_sr - y_hr
    h, w = (n - n % scale for n in error.shape)
    phases = error[:h, :w].reshape(h // scale, scale, w // scale, scale).mean(axis=(0, 2))
    return float(np.ptp(phases))
