"""The paper's losses: MSE / VGG content losses, adversarial loss (its weight, and how HR and SR reach the
discriminator), total variation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srgan_core.vgg import VGGFeatures


class VGGLoss(nn.Module):
    """MSE between VGG feature maps of SR and HR.

    HR goes through VGG under no_grad, on its own: sending SR and HR as one batch would make the backward
    pass compute input gradients for the HR half too, which costs more than the larger batch saves
    (measured by `tools.benchmark`, see results/performance.md)."""

    def __init__(self, features: VGGFeatures) -> None:
        super().__init__()
        self.features = features

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f_hr = self.features(hr)
        return F.mse_loss(self.features(sr), f_hr)


def mse_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Pixel MSE with images in [-1, 1]."""
    return F.mse_loss(sr, hr)


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(LR)), the non-saturating form the paper uses."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(HR) - log(1 - D(G(LR)))."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Sum of squared neighbour differences per image (batch mean), the regulariser of SRResNet-VGG22."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).sum(dim=(1, 2, 3))
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum(dim=(1, 2, 3))
    return (dh + dw).mean()


ADVERSARIAL_WEIGHT = 1e-3
PAPER_BATCH = 16  # the paper's batch size: its eq. 6 sums over it, and the training presets' learning rates are stated for it
ADVERSARIAL_REDUCTIONS = ("sum", "mean")
DISCRIMINATOR_BATCHES = ("joint", "separate")


def adversarial_scale(reduction: str) -> float:
    """Factor on the batch-mean adversarial loss -log D(G(I_LR)) in the generator loss.

    The paper's eq. 6 sums -log D(G(I_LR)) over the samples of its batch of 16, while its content losses
    (eq. 4, 5) are per-image means: mean content + 1e-3 x (sum over 16) = mean content + 1e-3 x 16 x (batch
    mean). "sum" is that factor, 1e-3 x 16, at any batch size: each sample's adversarial term then weighs
    against its content term exactly as in the paper's batch of 16, and a larger batch (`--batch-size`, the
    GPU runs) averages more samples instead of making the adversarial term stronger. "mean" (1e-3 x batch
    mean) is what most reimplementations use; here it leaves the adversarial gradient at 1.5 % of the VGG54
    one (results/training/discriminator_probe.md) and D(G(z)) pinned near 0 in training."""
    if reduction not in ADVERSARIAL_REDUCTIONS:
        raise ValueError(f"adversarial reduction must be one of {ADVERSARIAL_REDUCTIONS}, got {reduction!r}")
    return ADVERSARIAL_WEIGHT * (PAPER_BATCH if reduction == "sum" else 1)


def discriminate(discriminator: nn.Module, hr: torch.Tensor, sr: torch.Tensor, batch: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator logits for the HR and the SR batch. "separate": one pass each, so the discriminator's
    BatchNorm normalises each batch by its own statistics (and cannot see a shift common to a whole batch,
    such as a colour cast); "joint": one pass over both, sharing the statistics."""
    if batch not in DISCRIMINATOR_BATCHES:
        raise ValueError(f"discriminator batch must be one of {DISCRIMINATOR_BATCHES}, got {batch!r}")
    if batch == "joint":
        return discriminator(torch.cat([hr, sr])).split(len(hr))
    return discriminator(hr), discriminator(sr)
