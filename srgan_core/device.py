"""Where and in what precision the networks run: the device, the inference precisions, the CPU's bfloat16 probe."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

# float32 matches the paper's network to rounding. bfloat16 runs the generator under autocast: about 2x faster on
# CPUs with native bf16 and on GPUs, output within a few 8-bit levels (results/performance.md). The app and `upscale`
# use `default_precision`; `evaluate` and every published figure stay float32.
PRECISIONS = ("float32", "bfloat16")


class DeviceError(RuntimeError):
    """A device this machine does not have, with a message a user can act on."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device asked for (checked to exist here), else CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        picked = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"{device!r} is not a device name (cpu, cuda, cuda:1 ...)") from None
    if picked.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"{device}: this machine has no CUDA GPU that torch can use; run on cpu")
        if picked.index is not None and picked.index >= count:
            raise DeviceError(f"{device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return picked


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bfloat16 dot-product instructions (x86 AVX512-BF16 or AMX-BF16; read on Linux).
    Elsewhere bfloat16 is emulated on CPU and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_precision(device: torch.device) -> str:
    """bfloat16 where the hardware runs it natively (CUDA with bf16, AMX, AVX512-BF16), float32 elsewhere."""
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Training's autocast type: bf16 where the GPU supports it, else fp16 (with loss scaling); on CPU bf16 where
    the cores compute it natively (elsewhere it is emulated and slower than float32), else none."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
