"""The Compare tab: every 4x method on the user's image, side by side at the same zoomed crop."""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from demo.crops import MAX_ZOOM, VIEW, centre_from_click, crop_box, zoomed
from demo.examples import example_choices, load_example
from demo.inputs import HR_MODE, LR_MODE, MAX_LR_PIXELS, MIN_LR_SIDE, Prepared, prepare, shrink_to
from srgan_core.images import ImageError, load_image, save_png
from srgan_core.methods import (
    METHODS,
    MethodUnavailable,
    Upscaler,
    interpolated_upscaler,
    list_methods,
    load_method,
    weights_path,
)
from srgan_core.metrics import psnr_y, ssim_y

UPSCALE_QUEUE = "upscale"  # concurrency group of the heavy events: one upscaling at a time uses the CPU best
ORIGINAL = "original"
KNOB_ENDS = ("srresnet-mse", "srgan-vgg54")  # alpha 0 and alpha 1 of the perception-distortion knob
DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "srgan-lab-downloads"
KEEP_DOWNLOADS_SECONDS = 3600
PREFERRED_RIGHT = ("srgan-vgg54", "srgan-vgg22", "srgan-mse", "srresnet-vgg22", "srresnet-mse")
COLUMNS = ["method", "status", "run time (s)", "PSNR (dB)", "SSIM", "description"]
MODE_CHOICES = [
    ("It is a high-resolution photo: downscale it x4 (MATLAB bicubic), then score every method against it", HR_MODE),
    ("It is the low-resolution input: upscale it x4 as is (no scores: there is no original)", LR_MODE),
]
LIMIT_SIDE = math.isqrt(MAX_LR_PIXELS)
INTRO = f"""
Upload an image (or pick an example), say how to read it, and press **Compare**: every method upscales
the same low-resolution input x4. Click the image (or move the sliders) to choose where to look, and pick
the zoom. PSNR/SSIM are on the Y channel with a 4-pixel border cropped, as in the paper.
**Size limits**: a low-resolution input of up to {MAX_LR_PIXELS:,} pixels (e.g. {LIMIT_SIDE}x{LIMIT_SIDE}),
a high-resolution photo of up to {16 * MAX_LR_PIXELS:,} (e.g. {4 * LIMIT_SIDE}x{4 * LIMIT_SIDE}); larger images
are downscaled to fit, and you are told so. The smallest: {MIN_LR_SIDE}x{MIN_LR_SIDE} and
{4 * MIN_LR_SIDE}x{4 * MIN_LR_SIDE}.
"""


PREVIEW_PIXELS = 1024 * 1024  # the input is shown (and clicked on) at most this large


@dataclass
class Source:
    """The image the user brought, as loaded, and the (possibly smaller) copy shown to click on."""

    name: str
    image: np.ndarray
    preview: np.ndarray

    @classmethod
    def of(cls, name: str, image: np.ndarray) -> "Source":
        small = image.shape[0] * image.shape[1] <= PREVIEW_PIXELS
        return cls(safe_stem(name), image, image if small else shrink_to(image, PREVIEW_PIXELS))


@dataclass
class Comparison:
    """One run: the input, every method's full 4x output and its caption, and the knob's last output."""

    name: str
    prepared: Prepared
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    knob: np.ndarray | None = None

    def panels(self) -> dict[str, np.ndarray]:
        """What is shown side by side: each method's output, then the original when it is known."""
        if self.prepared.hr is None:
            return dict(self.outputs)
        return {**self.outputs, ORIGINAL: self.prepared.hr}


def safe_stem(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", Path(name).stem)[:64] or "image"


def load_upload(path: str | None) -> tuple[Source, np.ndarray, None, str]:
    """An uploaded file -> the loaded image, its preview, the example choice cleared, and a status line."""
    if not path:
        raise gr.Error("No file arrived: drop an image file (PNG, JPEG, TIFF, BMP, WebP, ...).")
    name = Path(path).name
    try:
        image = load_image(path)
    except ImageError as exc:
        raise gr.Error(f"This file cannot be used: {str(exc).replace(path, name)}") from None
    source = Source.of(name, image)
    return source, source.preview, None, loaded_status(name, image)


def choose_example(choice: str | None, data_root: Path | None) -> tuple[Source, np.ndarray, str, str]:
    """An example -> the loaded image, its preview, high-resolution mode (examples are originals), a status line."""
    if not choice:
        raise gr.Error("Pick an example from the list.")
    try:
        image = load_example(choice, data_root)
    except (ValueError, FileNotFoundError) as exc:
        raise gr.Error(str(exc)) from None
    source = Source.of(choice.replace(" / ", "_"), image)
    return source, source.preview, HR_MODE, loaded_status(choice, image)


def loaded_status(name: str, image: np.ndarray) -> str:
    return f"Loaded **{name}** ({image.shape[1]}x{image.shape[0]}). Choose how to read it and press **Compare**."


def run_comparison(
    source: Source | None,
    mode: str,
    px: float,
    py: float,
    zoom: float,
    left: str,
    right: str,
    progress: gr.Progress = gr.Progress(),
):
    """Upscale the input with every available method, time and score each, and show them all."""
    if source is None:
        raise gr.Error("Upload an image or pick an example first.")
    try:
        prepared = prepare(source.image, mode)
    except ImageError as exc:
        raise gr.Error(str(exc)) from None
    comparison = Comparison(source.name, prepared)
    infos = list_methods()
    runnable = [info.name for info in infos if info.available]
    rows = []
    for info in infos:
        row = dict.fromkeys(COLUMNS, "") | {"method": info.name, "status": "ok", "description": info.description}
        if not info.available:
            rows.append({**row, "status": f"unavailable: {info.reason}"})
            continue
        step = runnable.index(info.name)
        desc = f"{info.name} ({step + 1}/{len(runnable)})"
        progress(step / len(runnable), desc=desc)
        try:
            upscaler = load_method(info.name)
        except MethodUnavailable as exc:
            rows.append({**row, "status": f"unavailable: {exc}"})
            continue
        start = time.perf_counter()
        sr = upscaler.upscale(
            prepared.lr, progress=lambda done, s=step, d=desc: progress((s + done) / len(runnable), desc=d)
        )
        seconds = time.perf_counter() - start
        comparison.outputs[info.name] = sr
        row["run time (s)"] = f"{seconds:.2f}"
        caption = f"{info.name} · {seconds:.2f} s"
        if prepared.hr is not None:
            row["PSNR (dB)"], row["SSIM"] = f"{psnr_y(sr, prepared.hr):.2f}", f"{ssim_y(sr, prepared.hr):.4f}"
            caption = f"{info.name} · {row['PSNR (dB)']} dB / {row['SSIM']} · {seconds:.2f} s"
        comparison.captions[info.name] = caption
        rows.append(row)
    comparison.captions[ORIGINAL] = "original (high resolution)"
    gallery, slider, knob = render_views(comparison, px, py, zoom, left, right)
    status = summary(comparison, [r for r in rows if r["status"] != "ok"])
    table = pd.DataFrame(rows, columns=COLUMNS)
    return comparison, table, gallery, slider, write_downloads(comparison), status, knob, knob_hint(prepared)


def summary(comparison: Comparison, unavailable: list[dict]) -> str:
    prepared = comparison.prepared
    h, w = prepared.lr.shape[:2]
    lines = [*prepared.notes, f"Low-resolution input {w}x{h} -> outputs {4 * w}x{4 * h}."]
    if unavailable:
        names = ", ".join(f"**{r['method']}**" for r in unavailable)
        lines.append(f"Not available on this server (the table says why): {names}.")
    return "\n\n".join(lines)


def knob_hint(prepared: Prepared) -> str:
    scored = "with PSNR/SSIM against the original" if prepared.hr is not None else "(no original, so no scores)"
    return f"Release the alpha slider to upscale this input with the blended network, {scored}."


def render_views(comparison: Comparison | None, px: float, py: float, zoom: float, left: str, right: str):
    """The zoomed crops of every panel, the two-method slider, and the knob's crop, all at one window
    centred at (px, py) percent of the width and height."""
    if comparison is None:
        return [], None, None
    panels = comparison.panels()
    zoom = int(zoom)
    shape = next(iter(panels.values())).shape if panels else (1, 1)
    box = crop_box(shape, (px / 100, py / 100), zoom)
    gallery = [(zoomed(image, box, zoom), comparison.captions[name]) for name, image in panels.items()]
    missing = [name for name in (left, right) if name not in panels]
    if missing:
        slider = gr.ImageSlider(value=None, label=f"{' and '.join(missing)}: no output in this run")
    else:
        pair = (zoomed(panels[left], box, zoom), zoomed(panels[right], box, zoom))
        slider = gr.ImageSlider(value=pair, label=f"left: {left} | right: {right}")
    knob = zoomed(comparison.knob, box, zoom) if comparison.knob is not None else None
    return gallery, slider, knob


def select_crop(
    source: Source | None, comparison: Comparison | None, zoom: float, left: str, right: str, evt: gr.SelectData
):
    """A click on the input image moves the window of every view there."""
    if source is None:
        raise gr.Error("Upload an image or pick an example first.")
    fx, fy = centre_from_click(tuple(evt.index), source.preview.shape)
    px, py = round(fx * 100, 1), round(fy * 100, 1)
    return (px, py, *render_views(comparison, px, py, zoom, left, right))


def knob_upscaler(alpha: float) -> Upscaler:
    """The blended generator for `alpha`, kept for the few alphas used last (rebuilt when weights change)."""
    stamps = tuple(weights_path(n).stat().st_mtime if weights_path(n).is_file() else 0.0 for n in KNOB_ENDS)
    return _knob_cached(round(float(alpha), 2), stamps)


@lru_cache(maxsize=4)
def _knob_cached(alpha: float, stamps: tuple[float, ...]) -> Upscaler:
    return interpolated_upscaler(alpha)


def run_knob(
    comparison: Comparison | None,
    alpha: float,
    px: float,
    py: float,
    zoom: float,
    progress: gr.Progress = gr.Progress(),
):
    """Upscale the compared input with the generator blended at `alpha`; PSNR/SSIM when the original is known."""
    if comparison is None:
        raise gr.Error("Run the comparison first: the knob upscales the same input.")
    try:
        upscaler = knob_upscaler(alpha)
    except MethodUnavailable as exc:
        raise gr.Error(f"The knob needs both {' and '.join(KNOB_ENDS)}: {exc}") from None
    start = time.perf_counter()
    sr = upscaler.upscale(comparison.prepared.lr, progress=lambda done: progress(done, desc=f"alpha {alpha:.2f}"))
    seconds = time.perf_counter() - start
    comparison.knob = sr
    text = f"alpha = {alpha:.2f} ({KNOB_ENDS[0]} at 0, {KNOB_ENDS[1]} at 1) · {seconds:.2f} s"
    hr = comparison.prepared.hr
    if hr is not None:
        text += f" · PSNR {psnr_y(sr, hr):.2f} dB · SSIM {ssim_y(sr, hr):.4f}"
    box = crop_box(sr.shape, (px / 100, py / 100), int(zoom))
    return comparison, zoomed(sr, box, int(zoom)), text


def default_right_panel() -> str:
    """The slider's default partner for bicubic: the paper's SRGAN, else the best learned method there is."""
    available = {info.name for info in list_methods() if info.available}
    return next((name for name in PREFERRED_RIGHT if name in available), "nearest")


def knob_unavailable_reason() -> str | None:
    missing = [f"{i.name}: {i.reason}" for i in list_methods() if i.name in KNOB_ENDS and not i.available]
    return "; ".join(missing) or None


def write_downloads(comparison: Comparison) -> list[str]:
    """Every full-size output (and the low-resolution input) as a lossless PNG, named after the image."""
    prune_downloads()
    folder = Path(tempfile.mkdtemp(dir=DOWNLOAD_ROOT))
    images = {f"{comparison.name}_{name}_x4": sr for name, sr in comparison.outputs.items()}
    if comparison.prepared.hr is not None:
        images[f"{comparison.name}_lr_input"] = comparison.prepared.lr
    paths = []
    for stem, image in images.items():
        save_png(image, folder / f"{stem}.png")
        paths.append(str(folder / f"{stem}.png"))
    return paths


def prune_downloads() -> None:
    """Remove download folders older than KEEP_DOWNLOADS_SECONDS (the app has served them by then)."""
    DOWNLOAD_ROOT.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_DOWNLOADS_SECONDS
    for folder in DOWNLOAD_ROOT.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def build_tab(data_root: Path | None) -> None:
    """The Compare tab's components and events; call inside `with gr.Tab(...)`."""
    gr.Markdown(INTRO)
    source = gr.State(None)
    comparison = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Your image", file_types=["image"], type="filepath", elem_id="compare-upload")
            example = gr.Dropdown(example_choices(data_root), value=None, label="... or an example")
            mode = gr.Radio(MODE_CHOICES, value=HR_MODE, label="How to read it")
            run = gr.Button("Compare", variant="primary", elem_id="compare-run")
            status = gr.Markdown(elem_id="compare-status")
        with gr.Column(scale=2):
            preview = gr.Image(
                label="Input: click to choose where to look", interactive=False, height=420, elem_id="compare-preview"
            )
            with gr.Row():
                cx = gr.Slider(0, 100, 50, step=0.1, label="Crop centre x (% of width)", elem_id="compare-crop-x")
                cy = gr.Slider(0, 100, 50, step=0.1, label="Crop centre y (% of height)", elem_id="compare-crop-y")
                zoom = gr.Slider(1, MAX_ZOOM, value=4, step=1, label=f"Zoom (a {VIEW}-pixel view)")
    gallery = gr.Gallery(
        label="Every method at the same crop (lossless PNG; captions: PSNR / SSIM, run time)",
        format="png",
        columns=4,
        height="fit-content",  # "auto" would cap it at 55% of the window and scroll
        object_fit="contain",
        elem_id="compare-gallery",
    )
    table = gr.Dataframe(
        headers=COLUMNS, label="Per method", interactive=False, wrap=True, elem_id="compare-table",
        column_widths=["13%", "27%", "8%", "8%", "8%", "36%"],
    )
    with gr.Row():
        with gr.Column(scale=1):
            choices = [*METHODS, ORIGINAL]
            left = gr.Dropdown(choices, value="bicubic", label="Slider: left")
            right = gr.Dropdown(choices, value=default_right_panel(), label="Slider: right")
        slider = gr.ImageSlider(label="Two methods at the same crop", format="png", scale=3)
    downloads = gr.File(label="Full-size outputs (lossless PNG)", file_count="multiple", interactive=False)
    with gr.Accordion("Perception-distortion knob", open=True):
        reason = knob_unavailable_reason()
        gr.Markdown(
            f"Network interpolation: every weight is (1 - alpha) x {KNOB_ENDS[0]} + alpha x {KNOB_ENDS[1]}."
            + (f" **Unavailable here**: {reason}." if reason else "")
        )
        alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="alpha", interactive=reason is None)
        knob_text = gr.Markdown()
        knob_image = gr.Image(label="Blended network at the same crop", format="png", interactive=False)

    views = [gallery, slider, knob_image]
    upload.upload(load_upload, upload, [source, preview, example, status], api_name="compare_load_file")
    example.input(
        lambda choice: choose_example(choice, data_root),
        example,
        [source, preview, mode, status],
        api_name="compare_load_example",
    )
    run.click(
        run_comparison,
        [source, mode, cx, cy, zoom, left, right],
        [comparison, table, gallery, slider, downloads, status, knob_image, knob_text],
        api_name="compare_run",
        concurrency_limit=1,
        concurrency_id=UPSCALE_QUEUE,
    )
    preview.select(select_crop, [source, comparison, zoom, left, right], [cx, cy, *views], api_visibility="private")
    gr.on(
        [cx.release, cy.release, zoom.release, left.input, right.input],
        render_views,
        [comparison, cx, cy, zoom, left, right],
        views,
        api_name="compare_view",
    )
    alpha.release(
        run_knob,
        [comparison, alpha, cx, cy, zoom],
        [comparison, knob_image, knob_text],
        api_name="compare_knob",
        concurrency_limit=1,
        concurrency_id=UPSCALE_QUEUE,
    )
