"""The paper's networks: sizes, shapes, and the exactness of BatchNorm folding."""

from __future__ import annotations

import pytest
import torch

from srgan_core import half_resolution
from srgan_core.models import Discriminator, Generator, count_parameters, fuse_for_inference


def randomise_batchnorm(model: torch.nn.Module) -> None:
    """Give every BN non-trivial statistics and affine parameters, as a trained model has."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


def test_parameter_counts() -> None:
    # Generator: 9x9 head, 16 residual blocks, conv+BN, two sub-pixel stages, 9x9 tail (PReLU per channel).
    assert count_parameters(Generator()) == 1_550_659
    # Discriminator for 96 px: 8 convolutions (64..512) + dense 18432->1024 + dense 1024->1.
    assert count_parameters(Discriminator(96)) == 23_565_505
    convs = [m for m in Discriminator(96).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]


def test_generator_upscales_by_four() -> None:
    with torch.no_grad():
        assert Generator().eval()(torch.rand(1, 3, 11, 7)).shape == (1, 3, 44, 28)


def test_discriminator_returns_one_logit_per_image() -> None:
    assert Discriminator(32)(torch.rand(3, 3, 32, 32)).shape == (3,)
    with pytest.raises(ValueError, match="built for 32px"):
        Discriminator(32)(torch.rand(1, 3, 48, 48))
    with pytest.raises(ValueError, match="divisible by 16"):
        Discriminator(40)


def test_folded_batchnorm_is_exact() -> None:
    generator = Generator().eval()
    randomise_batchnorm(generator)
    fused = fuse_for_inference(generator)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(2, 3, 20, 16)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), generator(x), atol=1e-5, rtol=0)


def test_fast_forward_trains_like_the_paper_layout() -> None:
    """`forward` (output conv moved before the last shuffle) gives `plain_forward`'s outputs and gradients
    in training mode, so training with it trains the paper's network."""
    torch.manual_seed(0)
    generator = Generator().train()
    for m in generator.modules():
        if isinstance(m, torch.nn.PReLU):  # distinct slopes per channel, so a channel mix-up would show
            m.weight.data.uniform_(0.0, 0.5)
    x = torch.rand(4, 3, 14, 11)
    fast, plain = generator(x), generator.plain_forward(x)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    params = list(generator.parameters())
    grads_fast = torch.autograd.grad(fast.square().sum(), params)
    grads_plain = torch.autograd.grad(plain.square().sum(), params)
    scale = max(g.abs().max().item() for g in grads_plain)
    for g_fast, g_plain in zip(grads_fast, grads_plain):
        # conv biases in front of a training-mode BN have zero true gradient: only rounding noise there
        torch.testing.assert_close(g_fast, g_plain, atol=1e-5 * scale, rtol=1e-4)


def test_generator_trains_after_running_under_inference_mode() -> None:
    """The moved kernel's cached index must not become an inference tensor (the app and evaluation run
    under inference_mode, and a process may train afterwards)."""
    half_resolution._half_resolution_index.cache_clear()
    generator = Generator()
    with torch.inference_mode():
        generator(torch.rand(1, 3, 8, 8))
    generator(torch.rand(1, 3, 8, 8)).mean().backward()
    assert generator.tail.weight.grad is not None
