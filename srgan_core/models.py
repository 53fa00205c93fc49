"""The paper's generator (SRResNet) and discriminator (Ledig et al. 2017, Fig. 4)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from srgan_core.half_resolution import upsample_and_output


def unit_to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> the [-1, 1] range the generator's output and the discriminator's input use."""
    return x * 2 - 1


def signed_to_unit(x: torch.Tensor) -> torch.Tensor:
    """The generator's [-1, 1] output -> [0, 1] images (not clamped)."""
    return (x + 1) / 2


class ResidualBlock(nn.Module):
    """conv3x3-64 / BN / PReLU / conv3x3-64 / BN, plus the identity."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Module):
    """conv3x3 to 4C channels, PixelShuffle x2 (sub-pixel convolution), PReLU."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class Generator(nn.Module):
    """SRResNet: LR RGB in [0, 1] -> 4x SR RGB in [-1, 1] (no output activation, as in the paper)."""

    def __init__(self, num_blocks: int = 16, channels: int = 64) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU(channels))
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.upsample = nn.Sequential(UpsampleBlock(channels), UpsampleBlock(channels))
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)

    def trunk(self, lr: torch.Tensor) -> torch.Tensor:
        """The LR-resolution features: head, the residual blocks and their skip connection."""
        feat = self.head(lr)
        return feat + self.body_tail(self.body(feat))

    def plain_forward(self, lr: torch.Tensor) -> torch.Tensor:
        """The layers in the paper's order; `forward` computes the same function faster."""
        return self.tail(self.upsample(self.trunk(lr)))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """`plain_forward` with its output layers run at half resolution (`half_resolution.upsample_and_output`)."""
        return upsample_and_output(self.trunk(lr), self.upsample, self.tail)


def _conv_block(c_in: int, c_out: int, stride: int, bn: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class Discriminator(nn.Module):
    """8 conv3x3 layers 64->512 (stride 2 where channels double, and after the first block),
    BN except on the first, LeakyReLU 0.2, dense 1024, LeakyReLU, dense 1. Returns logits."""

    def __init__(self, image_size: int = 96, channels: int = 64) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"the discriminator needs an image size divisible by 16, got {image_size}")
        widths = [channels, channels * 2, channels * 4, channels * 8]
        layers = _conv_block(3, widths[0], 1, bn=False) + _conv_block(widths[0], widths[0], 2, bn=True)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += _conv_block(c_in, c_out, 1, bn=True) + _conv_block(c_out, c_out, 2, bn=True)
        self.features = nn.Sequential(*layers)
        side = image_size // 16
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"discriminator built for {self.image_size}px inputs, got {tuple(x.shape[-2:])}")
        return self.classifier(self.features(x)).squeeze(1)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv equal to bn(conv(x)) with BN in eval mode (running statistics)."""
    fused = copy.deepcopy(conv)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fuse_for_inference(generator: Generator) -> Generator:
    """An eval-mode copy of the generator with every BatchNorm folded into its convolution."""
    fused = copy.deepcopy(generator).eval()
    for block in fused.body:
        block.conv1, block.bn1 = fold_batchnorm(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = fold_batchnorm(block.conv2, block.bn2), nn.Identity()
    fused.body_tail = nn.Sequential(fold_batchnorm(fused.body_tail[0], fused.body_tail[1]))
    return fused.requires_grad_(False)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(prog="python -m srgan_core.models", description="Print the parameter counts of the generator and the 96 px discriminator.").parse_args()
    for name, model in [("generator", Generator()), ("discriminator (96 px)", Discriminator(96))]:
        print(f"{name}: {count_parameters(model):,} parameters")
