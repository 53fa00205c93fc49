"""Every 4x method behind one interface: `load_method(name).upscale(lr_uint8) -> sr_uint8`.

The methods and their facts are the table in `method_specs`; this module turns them into upscalers, with
the one cache of trained weights (keyed on the file's version, so retrained weights are picked up without a
restart)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load

from srgan_core.device import check_precision, pick_device
from srgan_core.download import sha256_file
from srgan_core.images import load_image, to_tensor, to_uint8
from srgan_core.imresize import imresize
from srgan_core.inference import generate_tiled, prepare_generator
from srgan_core.method_specs import KNOB_ENDS, METHODS, SCALE, SPECS, starts_dir
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
    # peak memory per output pixel, beyond the loaded model and one tile's activations (measured by `upscale` runs of
    # 600 and 1200 px inputs, /usr/bin/time's maximum resident size, 2-core AMD EPYC, 2026-12-02)
    bytes_per_output_pixel: int

    def memory_needed(self, height: int, width: int) -> int:
        """About how many bytes upscaling a `height` x `width` image takes (its outputs and their copies)."""
        return height * width * SCALE * SCALE * self.bytes_per_output_pixel

    def upscale(self, image: np.ndarray, progress: ProgressFn = None) -> np.ndarray:
        lr = load_image(image)
        return to_uint8(self.upscale_tensor(to_tensor(lr), progress))

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        """1x3xHxW in [0, 1] -> 1x3x4Hx4W in [0, 1] (not rounded)."""
        raise NotImplementedError


class InterpolationUpscaler(Upscaler):
    precision = "float64"
    bytes_per_output_pixel = 33  # the float32 output (float64 only a band of rows at a time), the rounding's copy, the PNG

    def __init__(self, name: str) -> None:
        self.name, self.kernel = name, SPECS[name].kernel

    def upscale_tensor(self, lr: torch.Tensor, progress: ProgressFn = None) -> torch.Tensor:
        out = imresize(lr.double(), SCALE, kernel=self.kernel, out_dtype=torch.float32).clamp_(0, 1)
        if progress:
            progress(1.0)
        return out


class GeneratorUpscaler(Upscaler):
    bytes_per_output_pixel = 20  # the float32 output and the rounding's copy

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
def _read_weights(path: Path, version: tuple[int, int], own: bool = False) -> dict[str, torch.Tensor] | str:
    """The file's tensors, or why they cannot be used, in one line saying how to restore shipped weights or (`own`: a
    file of the user's own) what to give instead."""
    try:
        state = load(path.read_bytes())  # read here: safetensors' own open calls every failure "No such file or directory"
    except OSError as exc:
        restore = "" if own else f", or restore it with `git checkout -- {shown_path(path)}`"
        return f"{shown_path(path)} cannot be read ({exc.strerror or exc}): check its permissions{restore}"
    except SafetensorError as exc:
        return _damaged(path, exc, own)
    broken = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    return _damaged(path, f"{broken} holds NaN or infinite values", own) if broken else state


def _damaged(path: Path, reason: object, own: bool = False) -> str:
    """One line for weights that are no usable generator: how to restore shipped ones, what to give instead of one's own."""
    if own:
        return f"{path} is not a usable generator weights file ({reason}): give one written by `python -m srgan_core.train --out FILE`"
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
    return _generator(load_state(name), SPECS[name].weights_file)


def generator_from_file(path: Path, own: bool = False) -> Generator:
    """The generator in any weights file (CPU, eval mode), read once per file version; `own`: a file of the user's
    own, not shipped weights (a problem with it says what to give instead, not how to restore it)."""
    state = _read_weights(path, _version(path), own)
    if isinstance(state, str):
        raise MethodUnavailable(state)
    return _generator(state, path, own)


def upscaler_from_file(path: Path, device: str | torch.device | None = None, precision: str = "float32") -> Upscaler:
    """An upscaler for a generator's weights file of the user's own (e.g. `srgan_core.train --out FILE`), named after
    the file (its name without .safetensors); MethodUnavailable when the file is missing or not a generator."""
    path = Path(path)
    if not path.is_file():
        raise MethodUnavailable(f"{path}: no such weights file")
    return GeneratorUpscaler(path.stem, generator_from_file(path, own=True), pick_device(device), precision)


def _generator(state: dict[str, torch.Tensor], path: Path, own: bool = False) -> Generator:
    generator = Generator()
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # a readable file holding something else than this generator
        reason = str(exc).splitlines()[0].rstrip(":")
        raise MethodUnavailable(_damaged(path, f"not a generator: {reason}", own)) from None
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


# ----- the perception-distortion knob -----
@dataclass(frozen=True)
class KnobStart:
    """The knob's alpha-0 end: the weights its alpha-1 end was fine-tuned from."""

    path: Path
    label: str  # e.g. "srresnet-mse at 14,500 iterations"


@lru_cache(maxsize=16)
def _sha256(path: Path, version: tuple[int, int]) -> str:
    return sha256_file(path)


def knob_start() -> KnobStart:
    """Find, by the sha256 in the alpha-1 end's model card, the weights it was fine-tuned from: the shipped
    weights of the first of KNOB_ENDS while they still are those, else a copy kept in `starts_dir()`.

    Network interpolation needs both ends to share a start: blending with weights trained on past that start gives
    outputs worse than either end (results/knob.md)."""
    base, tuned = KNOB_ENDS
    card_file = SPECS[tuned].card_file
    try:
        init = json.loads(card_file.read_text()).get("init") or {}
    except (OSError, ValueError) as exc:
        raise MethodUnavailable(
            f"{shown_path(card_file)} cannot be read ({exc}): restore it with `git checkout -- {shown_path(card_file)}`"
        ) from None
    sha256 = init.get("sha256")
    if not sha256 or init.get("method") != base:
        raise MethodUnavailable(f"{shown_path(card_file)} does not record the {base} weights {tuned} was fine-tuned from")
    for path in [SPECS[base].weights_file, *sorted(starts_dir().glob("*.safetensors"))]:
        if path.is_file() and _sha256(path, _version(path)) == sha256:
            iterations = init.get("iterations")
            return KnobStart(path, f"{base} at {iterations:,} iterations" if iterations else base)
    starts = shown_path(starts_dir())
    recover = f"restore them with `git checkout -- {starts}`"
    if init.get("git_show"):
        recover += f", or write them with `{init['git_show']}` and move that file into {starts}/"
    raise MethodUnavailable(
        f"the {base} weights {tuned} was fine-tuned from (sha256 {sha256[:12]}) are neither "
        f"{shown_path(SPECS[base].weights_file)} nor in {starts}/: {recover}"
    )


def knob_problem() -> str | None:
    """Why the knob cannot run here (one line saying how to fix it), or None."""
    problem = weights_problem(KNOB_ENDS[1])
    if problem:
        return f"{KNOB_ENDS[1]}: {problem}"
    try:
        knob_start()
    except MethodUnavailable as exc:
        return str(exc)
    return None


def interpolated_upscaler(alpha: float, device: str | torch.device | None = None, precision: str = "float32") -> Upscaler:
    """The perception-distortion knob: `knob_start()` (alpha 0) blended into the second of KNOB_ENDS (alpha 1); the
    few used last are kept."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    check_precision(precision)
    with _lock:
        start = knob_start().path
        return _blended(float(alpha), str(pick_device(device)), precision, start, (_version(start), *_versions(KNOB_ENDS[1])))


@lru_cache(maxsize=4)
def _blended(alpha: float, device: str, precision: str, start: Path, versions: tuple) -> Upscaler:
    blended = interpolate_generators(generator_from_file(start), load_generator(KNOB_ENDS[1]), alpha)
    return GeneratorUpscaler(f"interpolated-{alpha:.2f}", blended, torch.device(device), precision)
