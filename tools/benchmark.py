"""Speed of the project's inference and training paths against plain PyTorch and the machine's matmul peak.

`python -m tools.benchmark [--quick] [--out results/performance.md]` measures, in one run: the best
float32 matmul rate (the reference peak), generator inference at several sizes (plain eager vs the project's
`srgan_core.inference`), a 960x540 -> 3840x2160 tiled run (wall time and peak RSS in a child process) with
the tiled-vs-untiled difference, whole processes (`upscale` against a plain eager program, and the app's
Compare tab driven over HTTP: `tools.benchmark_app`), training iterations/s (a plain loop vs `Trainer.step`), and the same on
CUDA with AMP when a GPU is present. Times are the best of interleaved repeats: on a shared machine the
fastest run is the least disturbed one.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F
from torch import nn

from srgan_core import train
from srgan_core.data import TrainImages, make_pair
from srgan_core.device import PRECISIONS, pick_device
from srgan_core.inference import OVERLAP, TILE, generate, generate_tiled, prepare_generator, tiles
from srgan_core.losses import adversarial_scale, discriminate
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import SCALE, SPECS
from srgan_core.methods import MethodUnavailable, load_generator
from srgan_core.models import Discriminator, Generator, signed_to_unit
from srgan_core.paths import REPO_ROOT, replace_text
from srgan_core.train_config import TrainConfig
from srgan_core.vgg import IMAGENET_MEAN, IMAGENET_STD, LAYERS, load_vgg19_features, resolve_vgg_weights
from tools import benchmark_app, gpu_results

TRAIN_METHODS = ("srresnet-mse", "srgan-vgg54")
# the targets the report checks each measurement against (met / not met)
GOAL_INFERENCE_SPEEDUP, GOAL_PEAK_FRACTION, GOAL_TRAIN_SPEEDUP, GOAL_RSS_MB = 2.0, 0.5, 1.3, 2048


@dataclass(frozen=True)
class Sizes:
    """How big and how often to measure; `QUICK` is for smoke tests, `FULL` is the issue's set."""

    inference: tuple[int, ...]  # square LR input sides
    repeats: int
    matmul: tuple[int, ...]
    large: tuple[int, int]  # LR width, height of the tiled run
    seam: tuple[int, int]  # LR width, height of the tiled-vs-untiled comparison
    tile: int
    overlap: int
    batch: int
    crop: int
    train_repeats: int
    compile_size: int | None  # LR side for the torch.compile trial; None = skip it
    whole_process: bool = True  # `upscale` and the app's Compare tab as whole processes (tools.benchmark_app)


FULL = Sizes((64, 128, 256), 3, (2048, 4096), (960, 540), (320, 256), TILE, OVERLAP, 16, 96, 3, 64)
QUICK = Sizes((16, 24), 1, (256,), (160, 96), (72, 56), 48, 8, 2, 32, 1, None, whole_process=False)


# ----- measuring -----
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Wall seconds of each function, `repeats` times after one warm-up, interleaved so load hits all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def conv_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Floating-point operations (2 per multiply-add) of every Conv2d for one input of `shape`, counted from
    the layer shapes on the meta device (nothing is computed)."""
    total = 0

    def count(module: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    meta = copy.deepcopy(model).to("meta")
    for module in meta.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(count)
    run = meta.plain_forward if isinstance(meta, Generator) else meta  # count the paper's layers
    with torch.no_grad():
        run(torch.empty(shape, device="meta"))
    return total


# ----- the machine -----
def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo, with its family and model numbers (VMs often hide the exact name)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return platform.processor() or platform.machine()
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    name = fields.get("model name", platform.processor() or platform.machine())
    return f"{name} (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else name


def machine_info() -> dict[str, str]:
    return {
        "CPU": cpu_model(),
        "cores (physical / logical)": f"{psutil.cpu_count(logical=False)} / {psutil.cpu_count()}",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "torch": torch.__version__,
        "torch threads (intra-op / inter-op)": f"{torch.get_num_threads()} / {torch.get_num_interop_threads()}",
        "oneDNN (mkldnn)": str(torch.backends.mkldnn.is_available()),
        "CPU capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "GPU": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
    }


def busy_warning(share: float) -> str | None:
    """A warning when other processes held `share` (0-1) of the machine's CPUs: the timings are then pessimistic."""
    if share >= 0.25:
        return (
            f"other processes used {share:.0%} of the CPUs: these timings are pessimistic and noisy; re-run on a "
            "quiet machine for reference figures"
        )
    return None


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its finished children), so far: their
    difference over a run is the other processes' share (the load average would count this benchmark's own work)."""
    machine = psutil.cpu_times()
    busy = sum(getattr(machine, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
    own = psutil.Process().cpu_times()
    return busy, own.user + own.system + own.children_user + own.children_system


def matmul_peak(sizes: tuple[int, ...], repeats: int, device: torch.device) -> list[dict]:
    """GFLOP/s of square float32 matmuls through the BLAS (torch.mm) and, on CPU, through oneDNN."""
    rows = []
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        out = torch.empty(n, n, device=device)
        backends = {"torch.mm (BLAS)": lambda: torch.mm(a, b, out=out)}
        if device.type == "cpu" and torch.backends.mkldnn.is_available():
            am, bm = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
            backends["oneDNN matmul"] = lambda: torch._C._nn.mkldnn_linear(am, bm, None)
        for name, seconds in best_times(backends, repeats + 2, device).items():
            rows.append({"backend": name, "n": n, "gflops": 2 * n**3 / min(seconds) / 1e9})
    return rows


# ----- inference -----
def random_generator(seed: int = 0) -> Generator:
    """Random weights are fine for timing; BN gets non-trivial statistics so folding is really exercised."""
    torch.manual_seed(seed)
    generator = Generator().eval()
    for module in generator.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return generator


def plain_upscale(generator: Generator, lr: torch.Tensor) -> torch.Tensor:
    """The baseline: eager, NCHW, BatchNorm as separate layers, no_grad, one pass."""
    with torch.no_grad():
        return signed_to_unit(generator.plain_forward(lr)).clamp_(0, 1)


def plain_child(config_json: str) -> None:
    """Run in a fresh interpreter by `inference_rows`: times the plain baseline at each size and prints them.

    A process of its own, because the project path changes process-wide settings (`keep_freed_memory`) that a
    plain PyTorch program does not have."""
    config = json.loads(config_json)
    torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    generator = random_generator().to(device)
    times = {}
    for side in config["sides"]:
        lr = torch.rand(1, 3, side, side, device=device)
        times[side] = best_times({"plain": lambda: plain_upscale(generator, lr)}, config["repeats"], device)["plain"]
    print(json.dumps(times))


def child_json(function: str, config: dict) -> dict:
    """Run `tools.benchmark.<function>(json config)` in a fresh interpreter; its last stdout line, parsed."""
    code = f"import sys; from tools.benchmark import {function}; {function}(sys.argv[1])"
    result = subprocess.run([sys.executable, "-c", code, json.dumps(config)], cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{function} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def inference_rows(sizes: Sizes, device: torch.device, peak: float, amp: bool = False) -> list[dict]:
    """Plain (in a plain child process) vs project inference of a square LR image of each size; GFLOP/s counts
    the plain model's convs."""
    config = {"sides": list(sizes.inference), "repeats": sizes.repeats, "device": str(device), "threads": torch.get_num_threads()}
    plain_times = child_json("plain_child", config)
    generator = random_generator().to(device)
    model = prepare_generator(generator, device)
    rows = []
    for side in sizes.inference:
        lr = torch.rand(1, 3, side, side, device=device)

        def project() -> torch.Tensor:
            with torch.autocast(device.type, enabled=amp):
                return generate_tiled(model, lr)

        times = {"plain": plain_times[str(side)], **best_times({"project": project}, sizes.repeats, device)}
        diff = (plain_upscale(generator, lr).cpu() - project()).abs().max().item() * 255
        flops = conv_flops(generator, tuple(lr.shape))
        megapixels = side * side * SCALE**2 / 1e6
        row = {"side": side, "flops": flops, "diff_levels": diff, "tiled": side > sizes.tile + 2 * sizes.overlap}
        for name, seconds in times.items():
            best = min(seconds)
            row[name] = {"s": best, "mps": megapixels / best, "gflops": flops / best / 1e9, "peak": flops / best / 1e9 / peak}
        row["speedup"] = row["plain"]["s"] / row["project"]["s"]
        rows.append(row)
    return rows


def thread_rows(side: int, repeats: int) -> list[dict]:
    """The project path on CPU with one thread, one per physical core and the current setting, interleaved."""
    default = torch.get_num_threads()
    model = prepare_generator(random_generator(), torch.device("cpu"))
    lr = torch.rand(1, 3, side, side)

    def with_threads(n: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            torch.set_num_threads(n)
            try:
                return generate_tiled(model, lr)
            finally:
                torch.set_num_threads(default)

        return run

    counts = sorted({1, psutil.cpu_count(logical=False) or 1, default})
    times = best_times({str(n): with_threads(n) for n in counts}, repeats, torch.device("cpu"))
    return [{"side": side, "threads": n, "s": min(times[str(n)])} for n in counts]


def compile_trial(side: int, repeats: int, device: torch.device) -> dict:
    """torch.compile (inductor, frozen weights) of the project model: time to first result and steady speed."""
    model = prepare_generator(random_generator(), device)
    lr = torch.rand(1, 3, side, side, device=device)
    try:
        compiled = torch.compile(model, options={"freezing": True})
        start = time.perf_counter()
        out = generate(compiled, lr)
        first = time.perf_counter() - start
    except Exception as exc:  # a missing C++ toolchain or an inductor bug must not end the benchmark
        return {"side": side, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    times = best_times({"eager": lambda: generate(model, lr), "compiled": lambda: generate(compiled, lr)}, repeats, device)
    diff = (out - generate(model, lr)).abs().max().item() * 255
    return {"side": side, "first": first, "eager": min(times["eager"]), "compiled": min(times["compiled"]), "diff_levels": diff}


def tiled_child(config_json: str) -> None:
    """Run in a fresh interpreter by `large_image_run`: prints wall time and this process's peak RSS."""
    config = json.loads(config_json)
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    model = prepare_generator(random_generator(), device)
    lr = torch.rand(1, 3, config["height"], config["width"])
    rss_before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    out = generate_tiled(model, lr, tile=config["tile"], overlap=config["overlap"])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    report = {"seconds": seconds, "rss_before": rss_before, "peak_rss": peak, "out_shape": list(out.shape)}
    if device.type == "cuda":
        report["cuda_peak"] = torch.cuda.max_memory_allocated(device)
    print(json.dumps(report))


def tiling_overhead(width: int, height: int, tile: int, overlap: int) -> float:
    """LR pixels the tiles run (context included) per pixel of the image."""
    if width <= tile + 2 * overlap and height <= tile + 2 * overlap:
        return 1.0

    def span(size: int) -> int:
        return sum(min(start + length + overlap, size) - max(start - overlap, 0) for start, length in tiles(size, tile))

    return span(width) * span(height) / (width * height)


def large_image_run(sizes: Sizes, device: torch.device) -> dict:
    """The tiled run in a child process, so the benchmark's own memory does not count."""
    width, height = sizes.large
    config = {
        "width": width, "height": height, "tile": sizes.tile, "overlap": sizes.overlap,
        "device": str(device), "threads": torch.get_num_threads(),
    }
    measured = child_json("tiled_child", config)
    if measured["out_shape"] != [1, 3, height * SCALE, width * SCALE]:
        raise RuntimeError(f"the tiled run returned shape {measured['out_shape']} for a {width}x{height} input")
    return {**config, **measured, "flops": conv_flops(Generator(), (1, 3, height, width))}


def realistic_model(device: torch.device) -> tuple[nn.Module, str]:
    """The trained SRResNet-MSE when available (its errors are the ones users see), else random weights."""
    try:
        generator, weights = load_generator("srresnet-mse"), "trained srresnet-mse"
    except MethodUnavailable:
        generator, weights = random_generator(), "random (no trained srresnet-mse)"
    return prepare_generator(generator, device), weights


def photo_lr(width: int, height: int) -> torch.Tensor:
    """A natural LR image: the top-left crop of scikit-image's astronaut, 1x3xHxW in [0, 1]."""
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[:height, :width])
    return torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255


def levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Absolute differences of two [0, 1] images after rounding both to 8 bits."""
    return ((a * 255).round() - (b * 255).round()).abs()


def bf16_rows(sides: tuple[int, ...], repeats: int) -> list[dict]:
    """The `precision="bfloat16"` path (the app's and `upscale`'s default where native) against float32: speed and 8-bit differences."""
    model, weights = realistic_model(torch.device("cpu"))
    rows = []
    for side in sides:
        lr = photo_lr(side, side)
        fns = {precision: functools.partial(generate, model, lr, precision) for precision in PRECISIONS}
        times = best_times(fns, repeats, torch.device("cpu"))
        diff = levels(fns["bfloat16"](), fns["float32"]())
        rows.append({
            "side": side, "weights": weights, "float32": min(times["float32"]), "bfloat16": min(times["bfloat16"]),
            "max": int(diff.max().item()), "mean": diff.mean().item(),
        })
    return rows


def seam_check(sizes: Sizes, device: torch.device) -> dict:
    """Max difference tiled vs untiled on a natural image."""
    width, height = sizes.seam
    model, weights = realistic_model(device)
    lr = photo_lr(width, height)
    tiled = generate_tiled(model, lr, tile=sizes.tile, overlap=sizes.overlap)
    whole = generate(model, lr)
    diff = (tiled - whole).abs()
    rounded = levels(tiled, whole)
    return {
        "width": width, "height": height, "weights": weights, "tile": sizes.tile, "overlap": sizes.overlap,
        "max_levels": diff.max().item() * 255, "max_uint8": int(rounded.max().item()),
        "changed_uint8": int((rounded > 0).sum().item()), "values": rounded.numel(),
    }


# ----- training -----
class PlainTrainer:
    """A straightforward training loop, the baseline: NCHW, SR and HR through the full VGG19 separately
    (phi taken on the way), data prepared inline, the discriminator left trainable during the generator's
    update (its gradients are computed and discarded). For the recipes without total variation."""

    def __init__(self, method: str, crop: int, device: torch.device, vgg_weights: Path | None) -> None:
        self.recipe, self.device = SPECS[method].recipe, device
        if self.recipe.tv_weight:
            raise ValueError(f"the plain loop has no total-variation term, so it cannot stand in for {method}")
        torch.manual_seed(0)
        self.generator = Generator().to(device)
        self.discriminator = Discriminator(crop).to(device) if self.recipe.adversarial else None
        self.vgg = None
        if self.recipe.content == "vgg":
            self.vgg = load_vgg19_features(vgg_weights).to(device).eval().requires_grad_(False)
            self.layer = LAYERS[self.recipe.vgg_layer]
            self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=1e-4)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=1e-4) if self.discriminator else None

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        x = (signed_to_unit(x) - self.mean) / self.std
        feature = None
        for index, layer in enumerate(self.vgg):
            x = layer(x)
            if index == self.layer:
                feature = x
        return feature / 12.75

    def step(self, hr_uint8: torch.Tensor) -> float:
        lr, hr = make_pair(hr_uint8.to(self.device))
        sr = self.generator.plain_forward(lr)
        if self.discriminator is not None:
            self.opt_d.zero_grad()
            real, fake = discriminate(self.discriminator, hr, sr.detach(), "joint")
            loss_d = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            loss_d = loss_d + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            loss_d.backward()
            self.opt_d.step()
        self.opt_g.zero_grad()
        loss = F.mse_loss(sr, hr) if self.vgg is None else F.mse_loss(self.phi(sr), self.phi(hr))
        if self.discriminator is not None:
            fake = discriminate(self.discriminator, hr, sr, "joint")[1]
            adversarial = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
            loss = loss + adversarial_scale("sum") * adversarial
        loss.backward()
        self.opt_g.step()
        return loss.item()


def project_trainer(
    method: str, batch: int, crop: int, device: torch.device, vgg_weights: Path | None, amp: str = "auto"
) -> train.Trainer:
    config = TrainConfig(method, batch_size=batch, crop=crop, device=str(device), amp=amp, vgg_weights=None if vgg_weights is None else str(vgg_weights))
    trainer = train.Trainer(config)
    trainer.generator.train()
    return trainer


def data_cost(sizes: Sizes, device: torch.device) -> dict:
    """Milliseconds per iteration of sampling a batch of crops and of making its LR/HR pair."""
    rng = torch.Generator(device).manual_seed(0)
    pictures = [torch.randint(0, 256, (3, 321, 481), dtype=torch.uint8, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    images = TrainImages.from_tensors(pictures, device=device)  # resident on the training device, as in train.py
    hr = images.batch(sizes.batch, sizes.crop, rng)
    times = best_times(
        {"sample": lambda: images.batch(sizes.batch, sizes.crop, rng), "make_pair": lambda: make_pair(hr)},
        max(sizes.repeats, 3),
        device,
    )
    return {name: min(seconds) * 1e3 for name, seconds in times.items()}


def training_rows(sizes: Sizes, device: torch.device, vgg_weights: Path | None) -> list[dict]:
    """Seconds per iteration, plain loop vs `Trainer.step` in float32 and as it trains (mixed precision where
    `--amp auto` turns it on), on the same random HR batch."""
    hr = torch.randint(0, 256, (sizes.batch, 3, sizes.crop, sizes.crop), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rows = []
    for method in TRAIN_METHODS:
        if SPECS[method].recipe.content == "vgg" and vgg_weights is None:
            rows.append({"method": method, "skipped": "no VGG19 weights file (pass --vgg-weights or set SRGAN_VGG19_WEIGHTS)"})
            continue
        plain = PlainTrainer(method, sizes.crop, device, vgg_weights)
        float32 = project_trainer(method, sizes.batch, sizes.crop, device, vgg_weights, amp="off")
        project = project_trainer(method, sizes.batch, sizes.crop, device, vgg_weights)
        steps = {"plain": partial(plain.step, hr), "float32": partial(float32.step, hr)}
        if project.amp_dtype is not None:
            steps["project"] = partial(project.step, hr)
        times = best_times(steps, sizes.train_repeats, device)
        times.setdefault("project", times["float32"])
        row = {"method": method, "amp": project.precision}
        for name, seconds in times.items():
            row[name] = {"best": min(seconds), "median": statistics.median(seconds)}
        row["speedup"] = row["plain"]["best"] / row["project"]["best"]
        row["speedup_float32"] = row["plain"]["best"] / row["float32"]["best"]
        rows.append(row)
        del plain, float32, project
    return rows


# ----- the report -----
def goal(met: bool) -> str:
    return "**met**" if met else "**not met**"


def peak_section(results: dict) -> list[str]:
    """The matmul rates and the reference peak they give."""
    rows = [[r["backend"], r["n"], f"{r['gflops']:.1f}"] for r in results["matmul"]]
    return [
        "### Reference peak: large float32 matmul", "", markdown_table(["backend", "n x n", "GFLOP/s"], rows), "",
        f"Reference peak (best of the above): **{results['peak']:.1f} GFLOP/s**. BLAS is the library torch was built with;"
        " oneDNN is the library torch's CPU convolutions run on.",
        "",
    ]


def inference_section(results: dict, sizes: Sizes) -> list[str]:
    """Plain vs project generator inference, against the goals."""
    amp = " (project path under autocast/AMP)" if results.get("amp") else ""
    out = [f"### Generator inference, batch 1, float32{amp}", ""]
    out += [
        "Plain = eager `Generator.plain_forward` (the paper's layer order), NCHW, BatchNorm layers, `torch.no_grad`, one pass,"
        " timed in a child process with PyTorch's and the C library's defaults. Project = `srgan_core.inference`"
        " (`prepare_generator` + `generate_tiled`, what the app, `upscale` and `evaluate` call): BN folded, `Generator.forward`"
        " (output conv moved before the last pixel shuffle), channels_last, `inference_mode`, freed memory kept for reuse"
        " (`keep_freed_memory`: no page faults on every large activation), tiles of at most"
        f" {sizes.tile} LR px with {sizes.overlap} px of context. GFLOP/s counts the plain model's convolutions"
        " (the useful work) for both, so tile overlap and the moved conv's extra multiply-adds count against the project path.",
        "",
    ]
    rows = []
    for r in results["inference"]:
        p, q = r["plain"], r["project"]
        rows.append([
            f"{r['side']}x{r['side']} -> {r['side'] * SCALE}x{r['side'] * SCALE}", f"{r['flops'] / 1e9:.1f}",
            f"{p['s']:.3f}", f"{p['mps']:.3f}", f"{p['gflops']:.1f} ({p['peak']:.0%})",
            f"{q['s']:.3f}{' (tiled)' if r['tiled'] else ''}", f"{q['mps']:.3f}", f"{q['gflops']:.1f} ({q['peak']:.0%})",
            f"{r['speedup']:.2f}x", f"{GOAL_INFERENCE_SPEEDUP * p['peak']:.0%}", f"{r['diff_levels']:.2g}",
        ])
    out.append(markdown_table(
        ["LR -> SR", "GFLOP", "plain s", "plain MP/s", "plain GFLOP/s (of peak)", "project s", "project MP/s",
         "project GFLOP/s (of peak)", "speed-up", f"{GOAL_INFERENCE_SPEEDUP:g}x plain needs (of peak)",
         "max abs diff plain vs project (levels of 255)"],
        rows,
    ))
    speedups = [r["speedup"] for r in results["inference"]]
    fractions = [r["project"]["peak"] for r in results["inference"]]
    out += [
        "",
        f"- Goal project >= {GOAL_INFERENCE_SPEEDUP:g}x plain: {goal(min(speedups) >= GOAL_INFERENCE_SPEEDUP)} "
        f"(speed-up {min(speedups):.2f}x to {max(speedups):.2f}x).",
        f"- Goal project >= {GOAL_PEAK_FRACTION:.0%} of the matmul peak: {goal(min(fractions) >= GOAL_PEAK_FRACTION)} "
        f"({min(fractions):.0%} to {max(fractions):.0%}).",
    ]
    beyond = [r for r in results["inference"] if GOAL_INFERENCE_SPEEDUP * r["plain"]["peak"] > 1]
    if beyond:
        sides = ", ".join(f"{r['side']}x{r['side']}" for r in beyond)
        out.append(
            f"- At {sides} the plain path already runs at more than {1 / GOAL_INFERENCE_SPEEDUP:.0%} of the matmul peak, so"
            f" {GOAL_INFERENCE_SPEEDUP:g}x of it would take more float32 multiply-adds per second than the peak: only fewer"
            " operations (another algorithm) or lower precision (bfloat16 below) can get there."
        )
    return out + [""]


def threads_section(rows: list[dict]) -> list[str]:
    """The project path at each thread count."""
    table = [[f"{r['side']}x{r['side']}", r["threads"], f"{r['s']:.3f}", f"{rows[0]['s'] / r['s']:.2f}x"] for r in rows]
    return [
        "### Threads (project path)", "", markdown_table(["LR", "torch threads", "s", "vs 1 thread"], table), "",
        "The project path keeps torch's default (one intra-op thread per core). When other processes hold cores,"
        " threads wait for each other at every layer, so on a busy machine fewer threads can be faster; `--threads`"
        " sets the count for this benchmark.",
        "",
    ]


def compile_section(trial: dict) -> list[str]:
    """The torch.compile trial, or why it failed."""
    out = ["### torch.compile", ""]
    if "error" in trial:
        return out + [f"`torch.compile` failed at {trial['side']}x{trial['side']}: {trial['error']}. The project path stays eager.", ""]
    gain = trial["eager"] / trial["compiled"]
    out.append(markdown_table(
        ["LR", "first result (compile + run) s", "eager s", "compiled s", "compiled speed-up", "max diff (levels)"],
        [[
            f"{trial['side']}x{trial['side']}", f"{trial['first']:.1f}", f"{trial['eager']:.3f}",
            f"{trial['compiled']:.3f}", f"{gain:.2f}x", f"{trial['diff_levels']:.2g}",
        ]],
    ))
    return out + [
        "",
        "Inductor (freezing on) compiles once per input shape, and tiles come in several shapes, so every new"
        f" image size would pay the first-result time again. At a {gain:.2f}x steady-state gain that is"
        f" {'worth it only for long batch jobs' if gain > 1.05 else 'not worth it'}; the project path stays eager.",
        "",
    ]


def bf16_section(bf16: list[dict], inference: list[dict]) -> list[str]:
    """bfloat16 against float32 and against the plain path."""
    plain = {r["side"]: r["plain"]["s"] for r in inference}
    rows = [[
        f"{r['side']}x{r['side']}", r["weights"], f"{r['float32']:.3f}", f"{r['bfloat16']:.3f}",
        f"{r['float32'] / r['bfloat16']:.2f}x", f"{plain[r['side']] / r['bfloat16']:.2f}x", f"{r['max']} / {r['mean']:.2f}",
    ] for r in bf16]
    vs_plain = [plain[r["side"]] / r["bfloat16"] for r in bf16]
    worst = max(r["max"] for r in bf16)
    return [
        "### bfloat16 (`--precision bfloat16`; the app's and `upscale`'s default where native)", "",
        markdown_table(
            ["LR", "weights", "project float32 s", "project bfloat16 s", "vs float32", "vs plain", "max / mean diff (8-bit levels)"], rows
        ),
        "",
        f"- Goal >= {GOAL_INFERENCE_SPEEDUP:g}x plain with `--precision bfloat16`: {goal(min(vs_plain) >= GOAL_INFERENCE_SPEEDUP)}"
        f" ({min(vs_plain):.2f}x to {max(vs_plain):.2f}x).",
        f"- bfloat16 moved 8-bit values by up to {worst} level(s) here. The app and `upscale` use it by default where"
        " the hardware runs it natively (CUDA, AMX, AVX512-BF16; `--precision float32` and the app's switch force"
        " float32); `evaluate` and every published figure stay float32, which matches the paper's network to rounding."
        " CPUs without native bfloat16 emulate it and run slower than float32, so they default to float32.",
        "",
    ]


def large_image_section(large: dict, seam: dict, peak: float) -> list[str]:
    """The tiled run's speed and memory, and the tiled-vs-untiled difference."""
    gflops = large["flops"] / large["seconds"] / 1e9
    row = [
        f"{large['width']}x{large['height']} -> {large['width'] * SCALE}x{large['height'] * SCALE}", f"{large['tile']} / {large['overlap']}",
        f"{tiling_overhead(large['width'], large['height'], large['tile'], large['overlap']):.2f}",
        f"{large['seconds']:.1f}", f"{large['width'] * large['height'] * SCALE**2 / 1e6 / large['seconds']:.3f}",
        f"{gflops:.1f} ({gflops / peak:.0%})", f"{large['peak_rss'] / 2**20:.0f} MiB", f"{large['rss_before'] / 2**20:.0f} MiB",
    ]
    headers = ["LR -> SR", "tile / overlap (LR px)", "pixels run per image pixel", "wall s", "output MP/s", "GFLOP/s (of peak)",
               "peak RSS (child process)", "RSS before the run"]
    return [
        "### Large image through the tiled path", "", markdown_table(headers, [row]), "",
        f"- Goal peak RSS <= {GOAL_RSS_MB} MiB: {goal(large['peak_rss'] / 2**20 <= GOAL_RSS_MB)}."
        + (f" Peak CUDA memory allocated: {large['cuda_peak'] / 2**20:.0f} MiB." if "cuda_peak" in large else ""),
        f"- Tiled vs untiled on a {seam['width']}x{seam['height']} LR crop of skimage's astronaut, {seam['weights']} weights, "
        f"tile {seam['tile']} / overlap {seam['overlap']}: max difference {seam['max_levels']:.2g} levels of 255 before rounding; "
        f"after rounding to 8 bits at most {seam['max_uint8']} level(s), on {seam['changed_uint8']} of {seam['values']:,} values.",
        "",
    ]


def training_section(training: list[dict], data: dict, sizes: Sizes) -> list[str]:
    """Plain loop vs `Trainer.step`, against the goal for SRGAN-VGG54."""
    out = ["### Training iterations", ""]
    out += [
        f"Batch {sizes.batch} of {sizes.crop} px HR crops. Plain = `PlainTrainer` in this module: `Generator.plain_forward`, NCHW,"
        " SR and HR through the full VGG19 (phi taken on the way), LR made inline, the discriminator left trainable in the"
        " generator's update, default Adam. Project = `srgan_core.train.Trainer.step` (built from a `TrainConfig`):"
        " `Generator.forward` (output conv at half resolution), channels_last, VGG19 truncated at phi with HR under no_grad"
        " (no backward through the HR half), discriminator frozen for the generator's update, fused Adam; `--amp off`"
        " (float32 throughout) and as it trains (`--amp auto`: the whole step under bfloat16 autocast where the device"
        " computes it natively, CUDA and CPUs with AVX512-BF16 or AMX; float32 elsewhere; the last column says which)."
        f" Both steps include making the LR/HR pair ({data['make_pair']:.1f} ms); sampling the crops costs"
        f" {data['sample']:.1f} ms per batch on top and is not timed here.",
        "",
    ]
    rows = []
    for r in training:
        if "skipped" in r:
            rows.append([r["method"], "skipped", r["skipped"], "", "", "", "", "", ""])
            continue
        rows.append([
            r["method"], f"{r['plain']['best']:.2f} / {r['plain']['median']:.2f}", f"{1 / r['plain']['best']:.3f}",
            f"{r['float32']['best']:.2f} / {r['float32']['median']:.2f}", f"{r['speedup_float32']:.2f}x",
            f"{r['project']['best']:.2f} / {r['project']['median']:.2f}", f"{1 / r['project']['best']:.3f}", f"{r['speedup']:.2f}x", r["amp"],
        ])
    out.append(markdown_table(
        ["method", "plain s/iter (best / median)", "plain it/s", "project float32 s/iter (best / median)", "float32 speed-up",
         "project as trained s/iter (best / median)", "project it/s", "speed-up", "precision (`--amp auto`)"],
        rows,
    ))
    vgg54 = next((r for r in training if r["method"] == "srgan-vgg54" and "speedup" in r), None)
    if vgg54 is not None:
        out += [
            "",
            f"- Goal project >= {GOAL_TRAIN_SPEEDUP:g}x plain for SRGAN-VGG54: {goal(vgg54['speedup'] >= GOAL_TRAIN_SPEEDUP)}"
            f" ({vgg54['speedup']:.2f}x as trained, {vgg54['speedup_float32']:.2f}x in float32).",
        ]
    return out + [""]


def device_sections(results: dict, sizes: Sizes, title: str) -> list[str]:
    """Every section for one device, in the report's order (the optional ones where they were measured)."""
    out = [f"## {title}", "", *peak_section(results), *inference_section(results, sizes)]
    if "threads" in results:
        out += threads_section(results["threads"])
    if results.get("compile") is not None:
        out += compile_section(results["compile"])
    if "bf16" in results:
        out += bf16_section(results["bf16"], results["inference"])
    if "whole" in results:
        out += benchmark_app.render(results["whole"])
    out += large_image_section(results["large"], results["seam"], results["peak"])
    return out + training_section(results["training"], results["data"], sizes)


def render(meta: dict, runs: dict[str, dict], sizes: Sizes) -> str:
    out = ["# Performance", "", f"Made on {meta['date']} in {meta['minutes']:.1f} min by:", "", "```sh", meta["command"], "```", ""]
    out += ["## Machine", ""]
    out.append(markdown_table(["", ""], [[k, v] for k, v in meta["machine"].items()]))
    share = f"{meta['other_share']:.0%}"
    out += ["", f"Load average (1 min) at the start {meta['load_start']:.2f}; during the run, other processes used {share} of the CPUs."]
    warning = busy_warning(meta["other_share"])
    if warning:
        out += ["", f"> **Warning:** {warning}."]
    for note in meta["notes"]:
        out += ["", f"> {note}"]
    out.append("")
    for title, results in runs.items():
        out += device_sections(results, sizes, title)
    if "CUDA" not in " ".join(runs):
        out += ["## CUDA", "", "Skipped: no CUDA device here (`torch.cuda.is_available()` is False).", ""]
    return "\n".join(out + gpu_results.lent_gpu_section())


def say(device: torch.device, message: str) -> None:
    print(f"[{device}] {message}", file=sys.stderr, flush=True)


def run_device(sizes: Sizes, device: torch.device, amp: bool, vgg_weights: Path | None) -> dict:
    """Every measurement on one device."""
    say(device, "matmul peak")
    matmul = matmul_peak(sizes.matmul, sizes.repeats, device)
    peak = max(r["gflops"] for r in matmul)
    say(device, "inference")
    results = {"matmul": matmul, "peak": peak, "amp": amp, "inference": inference_rows(sizes, device, peak, amp)}
    if device.type == "cpu":
        say(device, "threads")
        results["threads"] = thread_rows(sizes.inference[-1], sizes.repeats)
    if sizes.compile_size and device.type == "cpu":
        say(device, "torch.compile trial")
        results["compile"] = compile_trial(sizes.compile_size, sizes.repeats, device)
    if device.type == "cpu":
        say(device, "bfloat16")
        results["bf16"] = bf16_rows(sizes.inference, sizes.repeats)
    if sizes.whole_process and device.type == "cpu":
        say(device, "whole processes: upscale and the app's Compare tab")
        results["whole"] = benchmark_app.measure()
    say(device, "large image (child process)")
    results["large"] = large_image_run(sizes, device)
    results["seam"] = seam_check(sizes, device)
    say(device, "training")
    results["data"] = data_cost(sizes, device)
    results["training"] = training_rows(sizes, device, vgg_weights)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.benchmark", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (a smoke test, not a measurement)")
    p.add_argument("--out", type=Path, help="Markdown report to write (default: results/performance.md; --quick needs --out)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice, one per core)")
    p.add_argument(
        "--vgg-weights", type=Path,
        help="VGG19 features safetensors (default: SRGAN_VGG19_WEIGHTS or the shared copy; without one the VGG rows are skipped)",
    )
    p.add_argument("--note", action="append", default=[], help="a line to add under the machine table (e.g. what else was running)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out is None:
        if args.quick:
            raise SystemExit("error: --quick is a smoke test: give --out FILE (results/performance.md keeps the measured figures)")
        args.out = REPO_ROOT / "results" / "performance.md"
    if args.out.is_dir():
        raise SystemExit(f"error: --out {args.out} is a folder: name the Markdown file to write")
    try:  # refuse an unwritable report before minutes of measuring
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"error: cannot write to {args.out.parent}: {exc.strerror or exc}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    vgg_weights = resolve_vgg_weights(args.vgg_weights)  # never downloads: a missing file skips the VGG rows
    load_start = os.getloadavg()[0]
    warning = busy_warning(load_start / (psutil.cpu_count() or 1))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    started, (busy_start, own_start) = time.monotonic(), cpu_seconds()
    cpu = torch.device("cpu")
    runs = {"CPU": run_device(sizes, cpu, amp=False, vgg_weights=vgg_weights)}
    if torch.cuda.is_available():
        runs["CUDA with AMP"] = run_device(sizes, pick_device("cuda"), amp=True, vgg_weights=vgg_weights)
    busy_end, own_end = cpu_seconds()
    others = (busy_end - busy_start) - (own_end - own_start)
    meta = {
        "command": shlex.join(["python", "-m", "tools.benchmark", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": (time.monotonic() - started) / 60,
        "machine": machine_info(),
        "load_start": load_start,
        "other_share": max(others, 0.0) / ((time.monotonic() - started) * (psutil.cpu_count() or 1)),
        "notes": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    replace_text(args.out, render(meta, runs, sizes))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
