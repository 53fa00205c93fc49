"""One interface for every method; learned ones refuse clearly without weights; tiling is seamless."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from srgan_core import method_specs
from srgan_core.download import sha256_file
from srgan_core.images import to_tensor
from srgan_core.inference import generate, generate_tiled, prepare_generator
from srgan_core.methods import (
    MethodUnavailable,
    interpolate_generators,
    interpolated_upscaler,
    knob_problem,
    knob_start,
    list_methods,
    load_method,
    upscaler_from_file,
)
from srgan_core.models import Generator
from srgan_core.paths import REPO_ROOT
from tests.test_models import randomise_batchnorm


def test_every_method_is_listed_with_a_description() -> None:
    infos = {info.name: info for info in list_methods()}
    assert set(infos) == {"nearest", "bicubic", "srresnet-mse", "srgan-vgg22", "srgan-vgg54", "srresnet-vgg22", "srgan-mse"}
    assert all(info.description for info in infos.values())
    assert infos["bicubic"].available and not infos["bicubic"].learned


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown method 'edsr'"):
        load_method("edsr")


def test_missing_weights_make_a_method_unavailable(models_dir: Path) -> None:
    info = {i.name: i for i in list_methods()}["srgan-vgg54"]
    assert not info.available and "no trained weights" in info.reason
    with pytest.raises(MethodUnavailable, match="python -m srgan_core.train --method srgan-vgg54"):
        load_method("srgan-vgg54")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (lambda weights: weights[: len(weights) // 2], "incomplete metadata"),  # a download or copy cut short
        (lambda weights: b"", "header"),
        (lambda weights: save_file_bytes({"x": torch.zeros(2)}), "not a generator"),  # a readable file of other tensors
        (lambda weights: save_file_bytes({**load(weights), "head.0.weight": torch.full((64, 3, 9, 9), float("nan"))}),
         "head.0.weight holds NaN or infinite values"),  # e.g. exported by a run that diverged: black images otherwise
    ],
)
def test_damaged_weights_make_a_method_unavailable_saying_how_to_restore_them(models_dir: Path, content, problem) -> None:
    path = models_dir / "srresnet-mse.safetensors"
    path.write_bytes(content((REPO_ROOT / "results" / "models" / "srresnet-mse.safetensors").read_bytes()))
    info = {i.name: i for i in list_methods()}["srresnet-mse"]
    if problem != "not a generator":  # a readable file of other tensors is found out when it is loaded as a generator
        assert not info.available and "is damaged" in info.reason and f"git checkout -- {path}" in info.reason
    with pytest.raises(MethodUnavailable, match=problem) as refused:
        load_method("srresnet-mse")
    assert "git checkout -- " in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"\x89PNG not weights", "not a usable generator weights file (Error while deserializing"),
     (None, "not a usable generator weights file (not a generator:")],
)
def test_weights_of_ones_own_that_are_no_generator_say_what_to_give_not_how_to_restore(tmp_path: Path, content, problem) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content or save_file_bytes({"x": torch.zeros(2)}))
    with pytest.raises(MethodUnavailable, match=r"fake\.png is " + re.escape(problem)) as refused:
        upscaler_from_file(path)
    assert "python -m srgan_core.train --out FILE" in str(refused.value) and "git checkout" not in str(refused.value)


def test_an_unreadable_weights_file_says_it_cannot_be_read(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = REPO_ROOT / "results" / "models" / "srresnet-mse.safetensors"
    mine, theirs = tmp_path / "mine.safetensors", models_dir / "srresnet-mse.safetensors"
    for path in (mine, theirs):
        path.write_bytes(shipped.read_bytes())
    real = Path.read_bytes

    def refused(self: Path) -> bytes:  # what a file without read permission does to this user (root could read it anyway)
        if self in (mine, theirs):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(MethodUnavailable, match=re.escape(f"{mine} cannot be read (Permission denied): check its permissions")) as own:
        upscaler_from_file(mine)
    assert "git checkout" not in str(own.value)
    with pytest.raises(MethodUnavailable, match=re.escape(f"{theirs} cannot be read (Permission denied)") + ".*git checkout -- "):
        load_method("srresnet-mse")


def load(weights: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as load_bytes

    return load_bytes(weights)


def save_file_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def test_the_precision_default_is_bfloat16_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    from srgan_core import device

    for native, expected in [(True, "bfloat16"), (False, "float32")]:
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda native=native: native)
        assert device.default_precision(torch.device("cpu")) == expected


@pytest.mark.parametrize("name", ["nearest", "bicubic"])
def test_interpolation_methods_upscale_by_four(name: str, photo: np.ndarray) -> None:
    out = load_method(name).upscale(photo)
    assert out.shape == (photo.shape[0] * 4, photo.shape[1] * 4, 3) and out.dtype == np.uint8
    if name == "nearest":
        assert (out[::4, ::4] == photo).all()


def test_learned_method_loads_shipped_weights(models_dir: Path, photo: np.ndarray) -> None:
    torch.manual_seed(0)
    generator = Generator()
    save_file(generator.state_dict(), str(models_dir / "srresnet-mse.safetensors"))
    upscaler = load_method("srresnet-mse", "cpu")
    assert upscaler is load_method("srresnet-mse", "cpu")  # loaded once, shared
    out = upscaler.upscale(photo)
    with torch.no_grad():
        expected = ((generator.eval()(to_tensor(photo)) + 1) / 2).clamp(0, 1)
    assert np.abs(out.astype(float) - expected[0].permute(1, 2, 0).numpy() * 255).max() <= 0.5 + 1e-3


def test_bfloat16_precision_is_opt_in_and_close_to_float32(models_dir: Path, photo: np.ndarray) -> None:
    torch.manual_seed(0)
    generator = Generator()
    randomise_batchnorm(generator)
    save_file(generator.state_dict(), str(models_dir / "srresnet-mse.safetensors"))
    exact = load_method("srresnet-mse", "cpu").upscale(photo).astype(int)
    fast_upscaler = load_method("srresnet-mse", "cpu", "bfloat16")
    assert fast_upscaler is not load_method("srresnet-mse", "cpu") and fast_upscaler.precision == "bfloat16"
    diff = np.abs(fast_upscaler.upscale(photo).astype(int) - exact)
    assert 0 < diff.max() <= 8 and diff.mean() < 1.0  # bfloat16 ran (not bit-equal), yet stays close
    assert load_method("bicubic", "cpu", "bfloat16").upscale(photo).shape == exact.shape
    with pytest.raises(ValueError, match="precision must be one of"):
        load_method("srresnet-mse", "cpu", "float16")


def test_tiled_inference_matches_untiled_within_one_level() -> None:
    torch.manual_seed(0)
    generator = Generator().eval()
    randomise_batchnorm(generator)
    model = prepare_generator(generator, torch.device("cpu"))
    lr = torch.rand(1, 3, 70, 90)
    calls = []
    tiled = generate_tiled(model, lr, tile=32, overlap=24, progress=calls.append)
    whole = generate(model, lr)
    assert tiled.shape == whole.shape == (1, 3, 280, 360)
    assert (tiled - whole).abs().max().item() * 255 <= 1.0
    assert calls[-1] == 1.0 and len(calls) == 9


def test_network_interpolation_endpoints_and_midpoint() -> None:
    torch.manual_seed(0)
    a, b = Generator(), Generator()
    mid = interpolate_generators(a, b, 0.5).state_dict()
    key = "head.0.weight"
    torch.testing.assert_close(mid[key], (a.state_dict()[key] + b.state_dict()[key]) / 2)
    torch.testing.assert_close(interpolate_generators(a, b, 1.0).state_dict()[key], b.state_dict()[key])
    with pytest.raises(ValueError, match="alpha"):
        interpolate_generators(a, b, 1.5)


def write_fine_tuned(models_dir: Path, start: Generator, **init: object) -> Path:
    """A random srgan-vgg54 whose model card says it was fine-tuned from `start` (saved in `models_dir/starts`)."""
    (models_dir / "starts").mkdir(exist_ok=True)
    path = models_dir / "starts" / "srresnet-mse-100.safetensors"
    save_file(start.state_dict(), str(path))
    save_file(Generator().state_dict(), str(models_dir / "srgan-vgg54.safetensors"))
    card = {"method": "srgan-vgg54", "init": {"method": "srresnet-mse", "sha256": sha256_file(path), "iterations": 100, **init}}
    (models_dir / "srgan-vgg54.json").write_text(json.dumps(card))
    return path


def test_the_knob_blends_from_the_weights_the_srgan_was_fine_tuned_from(models_dir: Path, photo: np.ndarray) -> None:
    torch.manual_seed(0)
    start = Generator()
    randomise_batchnorm(start)
    write_fine_tuned(models_dir, start)
    save_file(Generator().state_dict(), str(models_dir / "srresnet-mse.safetensors"))  # trained on past the start
    assert knob_start().path == models_dir / "starts" / "srresnet-mse-100.safetensors" and knob_problem() is None
    assert knob_start().label == "srresnet-mse at 100 iterations"
    with torch.no_grad():
        expected = ((start.eval()(to_tensor(photo)) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    at_zero = interpolated_upscaler(0.0, "cpu").upscale(photo).astype(float)
    assert np.abs(at_zero - expected).max() <= 0.5 + 1e-3  # the start, not the shipped srresnet-mse
    (models_dir / "srresnet-mse.safetensors").write_bytes((models_dir / "starts" / "srresnet-mse-100.safetensors").read_bytes())
    assert knob_start().path == models_dir / "srresnet-mse.safetensors"  # while the shipped weights are the start


def test_the_knob_without_its_start_says_how_to_get_it(models_dir: Path) -> None:
    torch.manual_seed(0)
    copy = write_fine_tuned(models_dir, Generator(), git_show="git show abc:results/models/srresnet-mse.safetensors > runs/x")
    copy.unlink()
    save_file(Generator().state_dict(), str(models_dir / "srresnet-mse.safetensors"))
    problem = knob_problem()
    assert "fine-tuned from" in problem and "git checkout -- " in problem and "git show abc:" in problem
    with pytest.raises(MethodUnavailable, match="fine-tuned from"):
        interpolated_upscaler(0.5, "cpu")
    (models_dir / "srgan-vgg54.json").write_text(json.dumps({"method": "srgan-vgg54"}))
    assert "does not record" in knob_problem()
    (models_dir / "srgan-vgg54.json").write_text("{not json")
    assert "cannot be read" in knob_problem()
    (models_dir / "srgan-vgg54.safetensors").unlink()
    assert knob_problem().startswith("srgan-vgg54: no trained weights")


def test_the_shipped_knob_finds_its_start_and_every_kept_start_is_used() -> None:
    assert knob_problem() is None
    cards = [json.loads(spec.card_file.read_text()) for spec in method_specs.SPECS.values() if spec.card_file.is_file()]
    starts = {card["init"]["sha256"] for card in cards if card.get("init")}
    assert sha256_file(knob_start().path) in starts
    kept = sorted(method_specs.starts_dir().glob("*.safetensors"))
    assert all(sha256_file(path) in starts for path in kept)  # none that no shipped network started from
