"""Every 4x method behind one interface: `load_method(name).upscale(lr_uint8) -> sr_uint8`.

The methods and their facts are the table in `method_specs`; this module turns them into upscalers, with
the one cache of trained weights (keyed on the file's version, so retrained weights are picked up without a
restart)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from srgan_core.device import check_precision, pick_device
from srgan_core.images import load_image, to_tensor, to_uint8
from srgan_core.imresize import imresize
from srgan_core.inference import generate_tiled, prepare_generator
from srgan_core.method_specs import KNOB_ENDS, METHODS, SCALE, SPECS
from srgan_core.models import Generator
from srgan_core.paths import shown_path


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
    precision: str  # what the arithmetic runs in

    def upscale(self, image: np.ndarray, progress: ProgressFn = None) -> np.ndarray:
        lr = load_image(image)
        return to_uint8(self.upscale_tensor(to_tensor(lr), progress))

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        """1x3xHxW in [0, 1] -> 1x3x4Hx4W in [0, 1] (not rounded)."""
        raise NotImplementedError


class InterpolationUpscaler(Upscaler):
    precision = "float64"

    def __init__(self, name: str) -> None:
        self.name, self.kernel = name, SPECS[name].kernel

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        out = imresize(lr.double(), SCALE, kernel=self.kernel).clamp_(0, 1).float()
        if progress:
            progress(1.0)
        return out


class GeneratorUpscaler(Upscaler):
    def __init__(self, name: str, generator: Generator, device: torch.device, precision: str = "float32") -> None:
        self.name, self.device, self.precision = name, device, check_precision(precision)
        self.model = prepare_generator(generator, device)

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        return generate_tiled(self.model, lr, progress=progress, precision=self.precision)


# ----- trained weights: one cache, keyed on the file's version -----
def _version(path: Path) -> tuple[int, int]:
    """(modification time in ns, size): changes whenever the file is replaced."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=8)
def _read_weights(path: Path, version: tuple[int, int]) -> dict[str, torch.Tensor] | str:
    """The file's tensors, or why it cannot be read (one line saying how to restore it)."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        return _damaged(path, exc)


def _damaged(path: Path, reason: object) -> str:
    return f"{shown_path(path)} is damaged ({reason}): restore it with `git checkout -- {shown_path(path)}`"


def _weights(name: str) -> dict[str, torch.Tensor] | str:
    path = SPECS[name].weights_file
    if not path.is_file():
        return (
            f"no trained weights at {shown_path(path)}: restore them with `git checkout -- {shown_path(path)}` "
            f"or train them with `python -m srgan_core.train --method {name}`"
        )
    return _read_weights(path, _version(path))


def weights_problem(name: str) -> str | None:
    """Why the weights of a learned method cannot be used (one line saying how to fix it), or None."""
    weights = _weights(name)
    return weights if isinstance(weights, str) else None


def load_state(name: str) -> dict[str, torch.Tensor]:
    """The trained generator weights of a learned method, read once per file version and shared (do not modify)."""
    weights = _weights(name)
    if isinstance(weights, str):
        raise MethodUnavailable(f"{name}: {weights}")
    return weights


def load_generator(name: str) -> Generator:
    """The trained generator of a learned method (CPU, eval mode)."""
    state, generator = load_state(name), Generator()
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # a readable file holding something else than this generator
        reason = str(exc).splitlines()[0].rstrip(":")
        raise MethodUnavailable(_damaged(SPECS[name].weights_file, f"not a generator: {reason}")) from None
    return generator.eval()


def list_methods() -> list[MethodInfo]:
    infos = []
    for spec in SPECS.values():
        reason = weights_problem(spec.name) if spec.learned else None
        infos.append(MethodInfo(spec.name, spec.description, spec.learned, reason is None, reason))
    return infos


# ----- upscalers: built once per weights version, device and precision, and shared -----
_lock = threading.Lock()


def _versions(*names: str) -> tuple:
    return tuple(_version(SPECS[n].weights_file) if SPECS[n].weights_file.is_file() else None for n in names)


def load_method(name: str, device: str | torch.device | None = None, precision: str = "float32") -> Upscaler:
    """The upscaler for `name`. `precision` applies to the learned methods ("bfloat16": faster, within a few
    8-bit levels); interpolation always runs in float64."""
    if name not in SPECS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    check_precision(precision)
    with _lock:
        return _upscaler(name, str(pick_device(device)), precision, _versions(name) if SPECS[name].learned else ())


@lru_cache(maxsize=16)
def _upscaler(name: str, device: str, precision: str, versions: tuple) -> Upscaler:
    if not SPECS[name].learned:
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


def interpolated_upscaler(alpha: float, device: str | torch.device | None = None, precision: str = "float32") -> Upscaler:
    """The perception-distortion knob: the first of KNOB_ENDS (alpha 0) blended into the second (alpha 1); the
    few used last are kept."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    check_precision(precision)
    with _lock:
        return _blended(float(alpha), str(pick_device(device)), precision, _versions(*KNOB_ENDS))


@lru_cache(maxsize=4)
def _blended(alpha: float, device: str, precision: str, versions: tuple) -> Upscaler:
    blended = interpolate_generators(*(load_generator(name) for name in KNOB_ENDS), alpha)
    return GeneratorUpscaler(f"interpolated-{alpha:.2f}", blended, torch.device(device), precision)
