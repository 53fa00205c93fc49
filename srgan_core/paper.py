"""Values published in Ledig et al. (CVPR 2017), 4x upscaling, for tables that put ours beside theirs.

Table 2 gives nearest, bicubic, SRResNet (= our ``srresnet-mse``), SRGAN (= our ``srgan-vgg54``) and HR;
Table 1 gives the loss ablations on Set5 and Set14. PSNR in dB and SSIM as the paper reports them
(their SSIM implementation differs from the standard one: our bicubic SSIM is lower, see README).
"""

from __future__ import annotations

from srgan_core.method_specs import ORIGINAL

# (dataset, method) -> {"psnr": dB, "ssim": ..., "mos": ...}; a key is absent where the paper gives none.
PUBLISHED: dict[tuple[str, str], dict[str, float]] = {
    # Table 2
    ("Set5", "nearest"): {"psnr": 26.26, "ssim": 0.7552, "mos": 1.28},
    ("Set5", "bicubic"): {"psnr": 28.43, "ssim": 0.8211, "mos": 1.97},
    ("Set5", "srresnet-mse"): {"psnr": 32.05, "ssim": 0.9019, "mos": 3.37},
    ("Set5", "srgan-vgg54"): {"psnr": 29.40, "ssim": 0.8472, "mos": 3.58},
    ("Set5", ORIGINAL): {"mos": 4.32},
    ("Set14", "nearest"): {"psnr": 24.64, "ssim": 0.7100, "mos": 1.20},
    ("Set14", "bicubic"): {"psnr": 25.99, "ssim": 0.7486, "mos": 1.80},
    ("Set14", "srresnet-mse"): {"psnr": 28.49, "ssim": 0.8184, "mos": 2.98},
    ("Set14", "srgan-vgg54"): {"psnr": 26.02, "ssim": 0.7397, "mos": 3.72},
    ("Set14", ORIGINAL): {"mos": 4.32},
    ("BSD100", "nearest"): {"psnr": 25.02, "ssim": 0.6606, "mos": 1.11},
    ("BSD100", "bicubic"): {"psnr": 25.94, "ssim": 0.6935, "mos": 1.47},
    ("BSD100", "srresnet-mse"): {"psnr": 27.58, "ssim": 0.7620, "mos": 2.29},
    ("BSD100", "srgan-vgg54"): {"psnr": 25.16, "ssim": 0.6688, "mos": 3.56},
    ("BSD100", ORIGINAL): {"mos": 4.46},
    # Table 1 (ablations; SRResNet-MSE and SRGAN-VGG54 rows repeat Table 2)
    ("Set5", "srresnet-vgg22"): {"psnr": 30.51, "ssim": 0.8803},
    ("Set5", "srgan-mse"): {"psnr": 30.64, "ssim": 0.8701},
    ("Set5", "srgan-vgg22"): {"psnr": 29.84, "ssim": 0.8468},
    ("Set14", "srresnet-vgg22"): {"psnr": 27.19, "ssim": 0.7807},
    ("Set14", "srgan-mse"): {"psnr": 26.92, "ssim": 0.7611},
    ("Set14", "srgan-vgg22"): {"psnr": 26.44, "ssim": 0.7518},
}


def published(dataset: str, method: str, metric: str) -> float | None:
    """The paper's value, or None where it reports none."""
    return PUBLISHED.get((dataset, method), {}).get(metric)
