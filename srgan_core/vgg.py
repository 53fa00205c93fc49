"""VGG19 ImageNet feature extractor, truncated after the layer a loss uses."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torchvision.models import VGG19_Weights, vgg19

from srgan_core.paths import default_data_root

# phi_i,j = output of the ReLU after the j-th conv before the i-th max-pool, as an index into vgg19().features.
LAYERS = {"22": 8, "54": 35}
WEIGHTS_ENV = "SRGAN_VGG19_WEIGHTS"
SHARED_WEIGHTS = Path("vgg19") / "vgg19_features_imagenet.safetensors"
# The paper rescales VGG features by 1/12.75 so that VGG losses have a scale comparable to the MSE loss.
# With torchvision's VGG19 that holds for phi_5,4 only: on SRResNet-MSE outputs of 96 px training crops the
# phi_2,2 loss is 872x the phi_5,4 one (145 vs 0.166; MSE 0.013), which leaves the 1e-3 adversarial term
# without any effect and lets the discriminator win at once (D(G(z)) -> 0 within 150 iterations). phi_2,2
# is therefore scaled by a further 1/29.5 (= 1/sqrt(872)), putting both content losses on the same scale.
RESCALE = {"22": 1 / (12.75 * 29.5), "54": 1 / 12.75}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_vgg_weights(path: str | Path | None = None) -> Path | None:
    """The safetensors file to use: `path`, `SRGAN_VGG19_WEIGHTS`, or the shared data copy; None = torchvision's."""
    chosen = path or os.environ.get(WEIGHTS_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise FileNotFoundError(f"VGG19 weights {chosen} not found")
        return Path(chosen)
    root = default_data_root()
    if root is not None and (root / SHARED_WEIGHTS).is_file():
        return root / SHARED_WEIGHTS
    return None


def load_vgg19_features(path: str | Path | None = None) -> nn.Sequential:
    """`torchvision.models.vgg19().features` with ImageNet weights; never random weights."""
    features = vgg19().features
    weights_file = resolve_vgg_weights(path)
    if weights_file is not None:
        features.load_state_dict(load_file(str(weights_file)), strict=True)
        return features
    try:
        full = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
    except Exception as exc:  # torchvision raises URLError/OSError/RuntimeError offline
        raise RuntimeError(
            "No VGG19 weights: pass --vgg-weights PATH or set SRGAN_VGG19_WEIGHTS to a safetensors file of "
            "vgg19().features (e.g. ../shared/data/vgg19/vgg19_features_imagenet.safetensors), or go online "
            f"so torchvision can download VGG19_Weights.IMAGENET1K_V1 ({exc})"
        ) from exc
    return full.features


class VGGFeatures(nn.Module):
    """phi_2,2 or phi_5,4 of an image in [-1, 1], ImageNet-normalised, scaled by `RESCALE[layer]`."""

    def __init__(self, layer: str = "54", weights: str | Path | None = None, rescale: float | None = None) -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"VGG layer must be one of {sorted(LAYERS)}, got {layer!r}")
        self.net = load_vgg19_features(weights)[: LAYERS[layer] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.rescale = RESCALE[layer] if rescale is None else rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.net(x) * self.rescale

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # always a fixed feature extractor
