"""VGG19 ImageNet feature extractor, truncated after the layer a loss uses."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn
from torchvision.models import VGG19_Weights, vgg19

from srgan_core.compact import read_weights
from srgan_core.models import signed_to_unit
from srgan_core.paths import damaged_data, default_data_root

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


TORCHVISION = "torchvision"  # asks for torchvision's retrained VGG19 weights instead of the original network
ORIGINAL = "original"  # asks for the default: the original network from SRGAN_VGG19_WEIGHTS or the data folder
GET_WEIGHTS = "`python -m srgan_core.data download --only vgg19`"


class VGGWeightsMissing(FileNotFoundError):
    """No usable VGG19 weights to load (none found, or another network's); the message says how to get them."""


def resolve_vgg_weights(path: str | Path | None = None, data_root: str | Path | None = None) -> Path | None:
    """The weights file to use: `path`, `SRGAN_VGG19_WEIGHTS`, or the copy in `data_root` (default: the default data
    folder); None when none is there. `path` ORIGINAL is the default, said."""
    chosen = (None if str(path) == ORIGINAL else path) or os.environ.get(WEIGHTS_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise VGGWeightsMissing(f"VGG19 weights {chosen} not found; {GET_WEIGHTS} fetches them")
        return Path(chosen)
    root = Path(data_root) if data_root is not None else default_data_root()
    if root is not None and (root / SHARED_WEIGHTS).is_file():
        return root / SHARED_WEIGHTS
    return None


def load_vgg19_features(path: str | Path | None = None, data_root: str | Path | None = None) -> nn.Sequential:
    """`torchvision.models.vgg19().features` with the original (Oxford) ImageNet weights the paper's losses used:
    from `path`, `SRGAN_VGG19_WEIGHTS` or the data folder. `path="torchvision"` takes torchvision's retrained
    `IMAGENET1K_V1` weights instead, only when asked for: another network, whose features differ. Never random."""
    features = vgg19().features
    if str(path) == TORCHVISION:
        try:
            return vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features
        except Exception as exc:  # torchvision raises URLError/OSError/RuntimeError offline
            raise VGGWeightsMissing(f"torchvision could not download VGG19_Weights.IMAGENET1K_V1 ({exc}); {GET_WEIGHTS} fetches the original VGG19 instead") from exc
    weights_file = resolve_vgg_weights(path, data_root)
    if weights_file is None:
        raise VGGWeightsMissing(
            f"no VGG19 weights for the VGG loss: {GET_WEIGHTS} fetches the original Oxford VGG19 that the paper and the "
            "shipped weights used (or pass --vgg-weights PATH / set SRGAN_VGG19_WEIGHTS); --vgg-weights torchvision takes "
            "torchvision's retrained VGG19, a different network"
        )
    try:
        state = read_weights(weights_file)
    except SafetensorError as exc:
        root = weights_file.parents[1] if weights_file.parts[-2:] == SHARED_WEIGHTS.parts else None  # a data folder's copy
        raise VGGWeightsMissing(damaged_data(f"VGG19 weights {weights_file} are damaged ({exc})", root)) from None
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # another network's tensors: names or shapes that do not fit
        raise VGGWeightsMissing(f"{weights_file} does not hold VGG19's feature weights ({str(exc).splitlines()[0]})") from None
    return features


class VGGFeatures(nn.Module):
    """phi_2,2 or phi_5,4 of an image in [-1, 1], ImageNet-normalised, scaled by `RESCALE[layer]`."""

    def __init__(self, layer: str = "54", weights: str | Path | None = None, rescale: float | None = None, data_root: str | Path | None = None) -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"VGG layer must be one of {sorted(LAYERS)}, got {layer!r}")
        # what the features were loaded from, for model cards: TORCHVISION or the weights file
        self.source = TORCHVISION if str(weights) == TORCHVISION else str(resolve_vgg_weights(weights, data_root) or "")
        self.net = load_vgg19_features(self.source or None, data_root)[: LAYERS[layer] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.rescale = RESCALE[layer] if rescale is None else rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (signed_to_unit(x) - self.mean) / self.std
        return self.net(x) * self.rescale

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # always a fixed feature extractor
