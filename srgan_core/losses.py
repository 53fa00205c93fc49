"""The paper's losses: MSE / VGG content losses, adversarial loss, total variation."""

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
