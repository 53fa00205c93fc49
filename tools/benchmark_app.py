"""Whole-process timings for `tools.benchmark`: the app's Compare tab as a browser drives it (over HTTP,
each method's result timed as it arrives) and `upscale` against a plain eager PyTorch process."""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from srgan_core.device import default_precision, pick_device
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import SCALE, SPECS
from srgan_core.methods import list_methods
from srgan_core.paths import REPO_ROOT

APP_PHOTO = (1024, 680)  # a phone-photo-sized upload, read as high resolution: a 256x170 LR input
UPSCALE_PHOTO = (480, 270)  # LR input of the whole-process upscale runs
PROCESS_REPEATS = 4
KNOB_ALPHAS = (0.5, 0.3)
APP_START_TIMEOUT_S = 180

# A plain eager PyTorch program doing what `upscale --method srresnet-mse` does: read, run, write a PNG.
PLAIN_PROCESS = """
import sys
import numpy as np, torch
from PIL import Image
from safetensors.torch import load_file
from srgan_core.models import Generator, signed_to_unit
generator = Generator()
generator.load_state_dict(load_file(sys.argv[1]))
generator.eval()
lr = torch.from_numpy(np.asarray(Image.open(sys.argv[2]).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
with torch.no_grad():
    sr = signed_to_unit(generator.plain_forward(lr)).clamp(0, 1)
Image.fromarray(sr[0].mul(255).round().byte().permute(1, 2, 0).numpy()).save(sys.argv[3])
"""


def photo(width: int, height: int) -> np.ndarray:
    """scikit-image's astronaut resized (Lanczos) to width x height: a natural photo of any size."""
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.LANCZOS))


def upscale_process_rows(folder: Path, repeats: int = PROCESS_REPEATS) -> list[dict]:
    """Wall seconds of whole processes (interpreter start, imports, weights, run, PNG) upscaling one image,
    interleaved so that load changes hit every variant alike."""
    weights = SPECS["srresnet-mse"].weights_file
    if not weights.is_file():
        return [{"variant": "skipped", "note": f"no {weights.name}"}]
    src = folder / "lr.png"
    Image.fromarray(photo(*UPSCALE_PHOTO)).save(src)
    upscale = [sys.executable, "-m", "srgan_core.upscale", str(src), "--method", "srresnet-mse", "-o"]
    default = default_precision(pick_device())
    variants = {
        "plain eager process (float32)": [sys.executable, "-c", PLAIN_PROCESS, str(weights), str(src), str(folder / "plain.png")],
        f"`upscale` (default here: {default})": [*upscale, str(folder / "default.png")],
        "`upscale --precision float32`": [*upscale, str(folder / "f32.png"), "--precision", "float32"],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, command in variants.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    plain = min(times["plain eager process (float32)"])
    return [
        {"variant": name, "best": min(t), "median": statistics.median(t), "runs": len(t), "vs_plain": plain / min(t)}
        for name, t in times.items()
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(folder: Path) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free localhost port, as a user starts it; returns the process and its URL."""
    command = [sys.executable, str(REPO_ROOT / "app.py"), "--port", str(free_port()), "--study-db", str(folder / "study.sqlite")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    for line in process.stdout:
        found = re.search(r"running at (\S+)", line)
        if found:
            return process, found.group(1)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("the app did not start")


def timed_compare(client, force_float32: bool) -> dict:
    """One press of Compare: seconds until each streamed update arrived (the first is the cleared view)."""
    start = time.perf_counter()
    job = client.submit("high-resolution photo", 50, 50, 4, "bicubic", "srgan-vgg54", force_float32, False, api_name="/compare_run")
    arrivals, last = [], None
    while not job.done() or len(job.outputs()) > len(arrivals):
        outputs = job.outputs()
        if len(outputs) > len(arrivals):
            arrivals += [time.perf_counter() - start] * (len(outputs) - len(arrivals))
            last = outputs[-1]
        time.sleep(0.005)
    table = last[0]
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    return {"arrivals": arrivals, "rows": rows}


def app_compare_run(folder: Path) -> dict:
    """The Compare tab on a 1024x680 photo: default precision twice (the first right after the app started),
    then forced float32 twice; then the knob at two new alphas."""
    from gradio_client import Client, handle_file

    upload = folder / "photo.png"
    Image.fromarray(photo(*APP_PHOTO)).save(upload)
    process, url = start_app(folder)
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(upload)), "high-resolution photo", 50, 50, 4, api_name="/compare_load_file")
        runs = []
        for force_float32 in (False, False, True, True):
            runs.append({"float32": force_float32, **timed_compare(client, force_float32)})
        knob = []
        for alpha in KNOB_ALPHAS:
            start = time.perf_counter()
            _, text, _ = client.predict(alpha, 50, 50, 4, False, api_name="/compare_knob")
            knob.append({"alpha": alpha, "seconds": time.perf_counter() - start, "text": text})
    finally:
        process.terminate()
        process.wait(timeout=30)
    methods = [info.name for info in list_methods() if info.available]
    return {"runs": runs, "knob": knob, "methods": methods, "default": default_precision(pick_device())}


def measure() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        return {"upscale": upscale_process_rows(folder), "app": app_compare_run(folder)}


def render(results: dict) -> list[str]:
    """The report's whole-process section (Markdown lines)."""
    out = ["### Whole process: `upscale` and the app's Compare tab", ""]
    w, h = UPSCALE_PHOTO
    rows = [
        [f"skipped: {row['note']}", "", "", ""] if row["variant"] == "skipped"
        else [row["variant"], f"{row['best']:.2f}", f"{row['median']:.2f}", f"{row['vs_plain']:.2f}x"]
        for row in results["upscale"]
    ]
    out += [
        f"`upscale --method srresnet-mse` of a {w}x{h} photo (-> {SCALE * w}x{SCALE * h}) as whole processes (interpreter start, "
        "imports, weights, run, PNG), against a plain eager PyTorch program doing the same (`PLAIN_PROCESS` in "
        f"`tools/benchmark_app.py`); {PROCESS_REPEATS} interleaved runs each.",
        "",
        markdown_table(["process", "best s", "median s", "vs plain (best)"], rows),
    ]
    app = results["app"]
    w, h = APP_PHOTO
    out += [
        "",
        f"Compare tab: `python app.py` started as a user would, a {w}x{h} photo uploaded over HTTP (gradio_client) and "
        f"read as high resolution (a {w // SCALE}x{h // SCALE} LR input), {len(app['methods'])} methods; seconds from pressing "
        "Compare until each result arrived (each method's result is sent as soon as it is ready). Run 1 starts right "
        f"after the app did (its warm-up loads the weights meanwhile). Default precision here: {app['default']}.",
        "",
    ]
    rows = []
    for number, run in enumerate(app["runs"], 1):
        per_method = run["arrivals"][1:]  # the first update is the cleared view with the table of waiting methods
        precision = "float32 (forced)" if run["float32"] else app["default"]
        cells = [f"{t:.2f}" for t in per_method] + [""] * (len(app["methods"]) - len(per_method))
        rows.append([number, precision, f"{per_method[0]:.2f}", *cells, f"{run['arrivals'][-1]:.2f}"])
    out.append(markdown_table(["run", "learned methods in", "first result s", *(f"{name} s" for name in app["methods"]), "all s"], rows))
    out += ["", "Knob (network interpolation, blended generator built then run on the same input, default precision):", ""]
    knob = [[f"{k['alpha']:.2f}", f"{k['seconds']:.2f}", k["text"]] for k in app["knob"]]
    out.append(markdown_table(["alpha", "s (press to result)", "the app's line"], knob))
    return out + [""]
