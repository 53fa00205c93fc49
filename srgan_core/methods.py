"""Every 4x method behind one interface: `load_method(name).upscale(lr_uint8) -> sr_uint8`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from srgan_core.images import ImageError, load_image, to_tensor, to_uint8
from srgan_core.imresize import imresize
from srgan_core.inference import check_precision, generate_tiled, pick_device, prepare_generator
from srgan_core.models import Generator
from srgan_core.paths import MODELS_DIR, REPO_ROOT

DESCRIPTIONS = {
    "nearest": "Nearest-neighbour x4 (the MOS low anchor)",
    "bicubic": "MATLAB-compatible bicubic x4",
    "srresnet-mse": "SRResNet trained on pixel MSE (best PSNR)",
    "srgan-vgg22": "SRGAN, VGG19 phi_2,2 content loss + adversarial loss",
    "srgan-vgg54": "SRGAN, VGG19 phi_5,4 content loss + adversarial loss (the paper's SRGAN)",
    "srresnet-vgg22": "SRResNet on VGG19 phi_2,2 loss + total variation (Table 1 ablation)",
    "srgan-mse": "SRGAN with pixel MSE content loss + adversarial loss (Table 1 ablation)",
}
METHODS = tuple(DESCRIPTIONS)
INTERPOLATION_KERNELS = {"nearest": "box", "bicubic": "cubic"}
LEARNED = tuple(m for m in METHODS if m not in INTERPOLATION_KERNELS)


class MethodUnavailable(RuntimeError):
    """A learned method whose weights are missing or damaged (the message says how to restore them)."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    learned: bool
    available: bool
    reason: str | None


ProgressFn = Callable[[float], None] | None


class Upscaler:
    """Maps an LR image (uint8 HxWx3 array, PIL image or path) to its 4x SR image (uint8)."""

    name: str

    def upscale(self, image: np.ndarray, progress: ProgressFn = None) -> np.ndarray:
        lr = load_image(image)
        return to_uint8(self.upscale_tensor(to_tensor(lr), progress))

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        """1x3xHxW in [0, 1] -> 1x3x4Hx4W in [0, 1] (not rounded)."""
        raise NotImplementedError


class InterpolationUpscaler(Upscaler):
    def __init__(self, name: str) -> None:
        self.name, self.kernel = name, INTERPOLATION_KERNELS[name]

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        out = imresize(lr.double(), 4, kernel=self.kernel).clamp_(0, 1).float()
        if progress:
            progress(1.0)
        return out


class GeneratorUpscaler(Upscaler):
    def __init__(self, name: str, generator: Generator, device: torch.device, precision: str = "float32") -> None:
        self.name, self.device, self.precision = name, device, check_precision(precision)
        self.model = prepare_generator(generator, device)

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        return generate_tiled(self.model, lr, progress=progress, precision=self.precision)


def weights_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.safetensors"


def _shown(path: Path) -> str:
    """The path as the user should type it: relative to the repository when it is inside."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def weights_problem(name: str) -> str | None:
    """Why the weights of a learned method cannot be used (one line saying how to fix it), or None."""
    path = weights_path(name)
    if not path.is_file():
        return (
            f"no trained weights at {_shown(path)}: restore them with `git checkout -- {_shown(path)}` "
            f"or train them with `python -m srgan_core.train --method {name}`"
        )
    stat = path.stat()
    return _header_problem(str(path), stat.st_mtime, stat.st_size)


@lru_cache(maxsize=32)
def _header_problem(path: str, mtime: float, size: int) -> str | None:
    try:
        with safe_open(path, "pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as exc:
        return _damaged(Path(path), exc)
    return None


def _damaged(path: Path, reason: object) -> str:
    return f"{_shown(path)} is damaged ({reason}): restore it with `git checkout -- {_shown(path)}`"


def load_state(name: str) -> dict[str, torch.Tensor]:
    """The trained generator weights of a learned method, read once per file version and shared (do not modify)."""
    problem = weights_problem(name)
    if problem:
        raise MethodUnavailable(f"{name}: {problem}")
    stat = weights_path(name).stat()
    return _state_cached(str(weights_path(name)), stat.st_mtime, stat.st_size)


@lru_cache(maxsize=8)
def _state_cached(path: str, mtime: float, size: int) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise MethodUnavailable(_damaged(Path(path), exc)) from None


def load_generator(name: str) -> Generator:
    """The trained generator of a learned method (CPU, eval mode)."""
    state, generator = load_state(name), Generator()
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # a readable file holding something else than this generator
        reason = str(exc).splitlines()[0].rstrip(":")
        raise MethodUnavailable(_damaged(weights_path(name), f"not a generator: {reason}")) from None
    return generator.eval()


def list_methods() -> list[MethodInfo]:
    infos = []
    for name in METHODS:
        learned = name in LEARNED
        reason = weights_problem(name) if learned else None
        infos.append(MethodInfo(name, DESCRIPTIONS[name], learned, reason is None, reason))
    return infos


_lock = threading.Lock()


def load_method(name: str, device: str | torch.device | None = None, precision: str = "float32") -> Upscaler:
    """The upscaler for `name`, loaded once per device and precision and shared. `precision` applies to the
    learned methods ("bfloat16": faster, within a few 8-bit levels); interpolation always runs in float64."""
    if name not in DESCRIPTIONS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    check_precision(precision)
    with _lock:
        return _load_cached(name, str(pick_device(device)), precision, _mtime(name))


def _mtime(name: str) -> float:
    """Part of the cache key, so retrained weights are picked up without a restart."""
    path = weights_path(name)
    return path.stat().st_mtime if path.is_file() else 0.0


@lru_cache(maxsize=16)
def _load_cached(name: str, device: str, precision: str, mtime: float) -> Upscaler:
    if name in INTERPOLATION_KERNELS:
        return InterpolationUpscaler(name)
    return GeneratorUpscaler(name, load_generator(name), torch.device(device), precision)


def interpolate_generators(a: Generator, b: Generator, alpha: float) -> Generator:
    """Network interpolation: every parameter and BN statistic (1 - alpha) * a + alpha * b."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    sa, sb = a.state_dict(), b.state_dict()
    mixed = {k: torch.lerp(v.float(), sb[k].float(), alpha).to(v.dtype) if v.is_floating_point() else v for k, v in sa.items()}
    out = Generator()
    out.load_state_dict(mixed)
    return out.eval()


def interpolated_upscaler(
    alpha: float, device: str | torch.device | None = None, precision: str = "float32"
) -> Upscaler:
    """The perception-distortion knob: srresnet-mse (alpha 0) blended into srgan-vgg54 (alpha 1)."""
    a, b = load_generator("srresnet-mse"), load_generator("srgan-vgg54")
    blended = interpolate_generators(a, b, alpha)
    return GeneratorUpscaler(f"interpolated-{alpha:.2f}", blended, pick_device(device), precision)


__all__ = [
    "METHODS",
    "ImageError",
    "MethodInfo",
    "MethodUnavailable",
    "Upscaler",
    "interpolated_upscaler",
    "list_methods",
    "load_method",
    "weights_problem",
]
