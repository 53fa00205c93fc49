"""VGG feature loss (layers, scaling, weight sources) and the adversarial / TV terms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from srgan_core import losses, vgg
from srgan_core.images import load_image, to_tensor
from srgan_core.imresize import imresize
from srgan_core.vgg import VGGFeatures


def test_vgg_is_cut_after_the_named_relu(vgg_weights: Path) -> None:
    phi22, phi54 = VGGFeatures("22", vgg_weights), VGGFeatures("54", vgg_weights)
    assert isinstance(phi22.net[-1], torch.nn.ReLU) and isinstance(phi54.net[-1], torch.nn.ReLU)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in phi22.net) == 4  # conv1_1..conv2_2
    assert sum(isinstance(m, torch.nn.Conv2d) for m in phi54.net) == 16  # conv1_1..conv5_4
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert phi22(x).shape == (1, 128, 16, 16) and phi54(x).shape == (1, 512, 2, 2)
    assert not any(p.requires_grad for p in phi54.parameters())


@pytest.mark.parametrize("layer, factor", [("54", 12.75), ("22", 12.75 * 29.5)])
def test_features_are_rescaled_per_layer(vgg_weights: Path, layer: str, factor: float) -> None:
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    scaled, raw = VGGFeatures(layer, vgg_weights), VGGFeatures(layer, vgg_weights, rescale=1.0)
    torch.testing.assert_close(scaled(x) * factor, raw(x))


def test_both_vgg_losses_have_the_same_scale_on_a_real_image(data_root: Path, vgg_weights: Path) -> None:
    """The reason for phi_2,2's extra rescaling: with it, both content losses of a blurry upscale are of
    one order of magnitude (with 1/12.75 alone they differ ~1300x here and ~900x on SRResNet outputs)."""
    hr = to_tensor(load_image(sorted((data_root / "benchmarks" / "Set14").glob("*.png"))[0]))[:, :, :192, :192]
    blurry = imresize(imresize(hr.double(), 0.25), 4).float().clamp(0, 1)
    hr, blurry = hr * 2 - 1, blurry * 2 - 1
    with torch.no_grad():
        loss22 = losses.VGGLoss(VGGFeatures("22", vgg_weights))(blurry, hr).item()
        loss54 = losses.VGGLoss(VGGFeatures("54", vgg_weights))(blurry, hr).item()
    assert 0.1 < loss22 / loss54 < 10


def test_vgg_loss_gradients_flow_to_sr_only(vgg_weights: Path) -> None:
    loss_fn = losses.VGGLoss(VGGFeatures("22", vgg_weights))
    hr = torch.rand(2, 3, 32, 32) * 2 - 1
    sr = hr.clone().requires_grad_(True)
    assert loss_fn(sr, hr).item() == 0
    sr2 = (hr + 0.1 * torch.randn_like(hr)).requires_grad_(True)
    loss = loss_fn(sr2, hr)
    loss.backward()
    assert loss.item() > 0 and sr2.grad.abs().sum() > 0


@pytest.mark.parametrize("layer", ["22", "54"])
def test_bfloat16_vgg_loss_follows_float32(data_root: Path, vgg_weights: Path, layer: str) -> None:
    """The trainer runs the VGG loss under CPU bfloat16 autocast on CPUs that compute bf16 natively: the loss
    and the gradient it sends to the generator must stay those of float32 (a real photo and its bicubic upscale)."""
    hr = to_tensor(load_image(sorted((data_root / "benchmarks" / "Set14").glob("*.png"))[0]))[:, :, :96, :96]
    sr = imresize(imresize(hr.double(), 0.25), 4).float().clamp(0, 1)
    hr, sr = hr * 2 - 1, (sr * 2 - 1).requires_grad_(True)
    loss_fn = losses.VGGLoss(VGGFeatures(layer, vgg_weights))
    full = loss_fn(sr, hr)
    (grad_full,) = torch.autograd.grad(full, sr)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss_fn(sr, hr)
    (grad_low,) = torch.autograd.grad(low, sr)
    assert low.dtype == torch.float32 and grad_low.dtype == torch.float32
    assert abs(low.item() - full.item()) < 0.02 * full.item()
    assert torch.nn.functional.cosine_similarity(grad_low.flatten(), grad_full.flatten(), dim=0) > 0.99


def test_without_weights_the_error_names_the_download_and_the_explicit_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """No silent fallback to torchvision's retrained VGG19 (another network than the one the shipped weights saw)."""
    monkeypatch.delenv(vgg.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(vgg, "default_data_root", lambda: None)
    asked: list[object] = []

    def offline(weights=None):
        asked.append(weights)
        if weights is not None:
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
        return torchvision.models.vgg19()

    monkeypatch.setattr(vgg, "vgg19", offline)
    with pytest.raises(FileNotFoundError, match=r"srgan_core.data download --only vgg19.*--vgg-weights torchvision"):
        vgg.load_vgg19_features()
    assert asked == [None]  # nothing was downloaded
    with pytest.raises(vgg.VGGWeightsMissing, match=r"IMAGENET1K_V1 \(<urlopen error.*srgan_core.data download"):
        vgg.load_vgg19_features("torchvision")  # asked for explicitly: tried, and offline it says what else works


def test_missing_weights_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        vgg.resolve_vgg_weights(tmp_path / "nope.safetensors")


def test_original_names_the_default_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vgg.WEIGHTS_ENV, raising=False)
    copy = tmp_path / vgg.SHARED_WEIGHTS
    copy.parent.mkdir(parents=True)
    copy.touch()
    assert vgg.resolve_vgg_weights(vgg.ORIGINAL, tmp_path) == vgg.resolve_vgg_weights(None, tmp_path) == copy
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(copy))
    assert vgg.resolve_vgg_weights(vgg.ORIGINAL, tmp_path / "elsewhere") == copy


def test_adversarial_losses() -> None:
    logits = torch.tensor([0.0, 0.0])
    # D outputs 0.5: -log(0.5) for the generator, -2 log(0.5) for the discriminator.
    assert losses.generator_adversarial_loss(logits).item() == pytest.approx(0.6931, abs=1e-4)
    assert losses.discriminator_loss(logits, logits).item() == pytest.approx(1.3863, abs=1e-4)
    confident = torch.tensor([20.0])
    assert losses.discriminator_loss(confident, -confident).item() < 1e-6


def test_total_variation_counts_squared_neighbour_differences() -> None:
    x = torch.zeros(1, 1, 2, 3)
    x[0, 0, 0, 0] = 1.0  # differs from its right and lower neighbours
    assert losses.total_variation(x).item() == 2.0
