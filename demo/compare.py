"""The Compare tab: every 4x method on the user's image, side by side at the same zoomed crop."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from demo.crops import MAX_ZOOM, VIEW, centre_from_click, crop_box, zoomed
from demo.examples import example_choices, load_example
from demo.inputs import (
    HR_MODE,
    LR_MODE,
    MAX_LR_PIXELS,
    MIN_LR_SIDE,
    Prepared,
    file_notes,
    fitting_mode,
    output_shape,
    prepare,
    shrink_to,
)
from demo.view_slider import ViewSlider
from srgan_core.colour_fix import SUFFIX as COLOUR_FIX_SUFFIX
from srgan_core.colour_fix import ColourFixedUpscaler
from srgan_core.data import BENCHMARKS
from srgan_core.device import default_precision, pick_device
from srgan_core.images import ImageError, load_image, save_png
from srgan_core.method_specs import KNOB_ENDS, METHODS, ORIGINAL_LABEL, SPECS
from srgan_core.methods import (
    MethodUnavailable,
    Upscaler,
    interpolated_upscaler,
    knob_problem,
    knob_start,
    list_methods,
    load_method,
)
from srgan_core.metrics import psnr_y, ssim_y
from srgan_core.paths import GET_DATA

UPSCALE_QUEUE = "upscale"  # concurrency group of the heavy events: one upscaling at a time uses the CPU best
DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "srgan-lab-downloads"
VIEW_ROOT = Path(tempfile.gettempdir()) / "srgan-lab-views"  # every image the tab shows, as a file (`view_file`)
KEEP_DOWNLOADS_SECONDS = 3600
PRUNE_VIEWS_SECONDS = 60  # drawing views prunes VIEW_ROOT at most this often (per process); Compare always does
PREFERRED_RIGHT = ("srgan-vgg54", "srgan-vgg22", "srgan-mse", "srresnet-vgg22", "srresnet-mse")
COLUMNS = ["method", "status", "run time (s)", "precision", "PSNR (dB)", "SSIM", "description"]
WAITING = "waiting"
NO_IMAGE = "No image loaded: upload one or pick an example."
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
FRAME_COLOUR = (255, 214, 0)  # the zoomed window's outline on the preview (with a black edge: visible on any image)


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
    knob_alpha: float | None = None
    downloads: list[str] = field(default_factory=list)  # the run's files (`write_downloads`), the knob's apart
    colour_fix: bool = False  # the learned methods' outputs (and the knob's) went through srgan_core.colour_fix

    def fixed(self, name: str) -> bool:
        """Whether `name`'s output in this run went through the colour fix (learned methods only)."""
        return self.colour_fix and name in SPECS and SPECS[name].learned

    def label(self, name: str) -> str:
        """How `name`'s output is named on screen: with "+ colour fix" when the fix touched it."""
        return f"{name} + colour fix" if self.fixed(name) else name

    def panels(self) -> dict[str, np.ndarray]:
        """What is shown side by side: each method's output, then the original when it is known."""
        if self.prepared.hr is None:
            return dict(self.outputs)
        return {**self.outputs, ORIGINAL_LABEL: self.prepared.hr}


def safe_stem(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", Path(name).stem)[:64] or "image"


def no_results() -> tuple:
    """Empty values for the result components (table, gallery, slider, downloads, knob image, knob text)."""
    return pd.DataFrame(columns=COLUMNS), [], None, None, None, ""


def refused(message: str) -> str:
    return f"**Cannot use this:** {message}"


def loaded(source: Source, mode: str, view: tuple[float, float, float], example: str | None, shown_name: str,
           notes: list[str | None], own_mode: str | None = None):
    """After a successful load: the new source, no comparison yet, its preview outlined, a status line, and the
    user's `own_mode` when `mode` is one the app chose for this image."""
    lines = [loaded_status(shown_name, source.image), *(note for note in notes if note)]
    preview = framed_preview(source, None, mode, *view)
    return (source, None, preview, example, mode, "\n\n".join(lines), *no_results(), own_mode)


def not_loaded(message: str, example: str | None, mode: str):
    """After a refused load: nothing loaded, nothing compared, the reason in the status line (no error badges)."""
    return (None, None, None, example, mode, refused(message), *no_results(), None)


def load_upload(path: str | None, mode: str, px: float = 50, py: float = 50, zoom: float = 4, own_mode: str | None = None):
    """An uploaded file -> (source, comparison, preview, example, mode, status, *results, own mode): the old results
    are cleared; a file that cannot be used is refused here, in the status line, not later at Compare.

    `own_mode` is the user's choice while `mode` shows the one the app switched to for the previous image (a small
    one is read as the low-resolution input): that switch applied to that image only."""
    mode = own_mode or mode
    if not path:
        return (None, None, None, None, mode, NO_IMAGE, *no_results(), None)
    name = Path(path).name
    try:
        image = load_image(path)
        fitted, mode_note = fitting_mode(image, mode)
    except ImageError as exc:
        return not_loaded(str(exc).replace(path, name), None, mode)
    view, notes = (px, py, zoom), [*file_notes(path), mode_note]
    return loaded(Source.of(name, image), fitted, view, None, name, notes, switched_from(mode, fitted))


def choose_example(
    choice: str | None, mode: str, px: float, py: float, zoom: float, data_root: Path | None, own_mode: str | None = None
):
    """An example -> like `load_upload`; examples are originals, so high-resolution mode (for this image only)."""
    mode = own_mode or mode
    if not choice:
        return not_loaded("pick an example from the list.", None, mode)
    try:
        image = load_example(choice, data_root)
    except (ValueError, FileNotFoundError) as exc:
        return not_loaded(str(exc), choice, mode)
    source = Source.of(choice.replace(" / ", "_"), image)
    return loaded(source, HR_MODE, (px, py, zoom), choice, choice, [], switched_from(mode, HR_MODE))


def switched_from(own_mode: str, used: str) -> str | None:
    """The user's own mode to return to with the next image, when the app read this one in another mode."""
    return own_mode if used != own_mode else None


def loaded_status(name: str, image: np.ndarray) -> str:
    return f"Loaded **{name}** ({image.shape[1]}x{image.shape[0]}). Choose how to read it and press **Compare**."


def compare_precision(force_float32: bool) -> str:
    return "float32" if force_float32 else default_precision(pick_device())


def run_comparison(
    source: Source | None,
    mode: str,
    px: float,
    py: float,
    zoom: float,
    left: str,
    right: str,
    force_float32: bool = False,
    colour_fix: bool = False,
):
    """Upscale the input with every available method, time and score each, and show each as soon as it is ready.

    Yields (comparison, table, gallery, slider, downloads, status, knob image, knob text) after every method;
    the full-size downloads come with the last."""
    if source is None:
        yield None, *no_results()[:4], "**Upload an image or pick an example first.**", *no_results()[4:]
        return
    try:
        prepared = prepare(source.image, mode)
    except ImageError as exc:
        yield None, *no_results()[:4], refused(str(exc)), *no_results()[4:]
        return
    precision = compare_precision(force_float32)
    prune(VIEW_ROOT)
    comparison = Comparison(source.name, prepared, colour_fix=colour_fix)
    comparison.captions[ORIGINAL_LABEL] = f"{ORIGINAL_LABEL} (high resolution)"
    infos = list_methods()
    rows = {info.name: dict.fromkeys(COLUMNS, "") | {"method": info.name, "description": info.description} for info in infos}
    for info in infos:
        rows[info.name]["status"] = WAITING if info.available else f"unavailable: {info.reason}"
    runnable = [info.name for info in infos if info.available]

    def shown(status: str, downloads: list[str] | None = None):
        gallery, slider, knob = render_views(comparison, px, py, zoom, left, right)
        table = pd.DataFrame(list(rows.values()), columns=COLUMNS)
        return comparison, table, gallery, slider, downloads, status, knob, knob_hint(prepared)

    yield shown(f"Running **{runnable[0]}** ..." if runnable else "No method is available on this server.")
    for step, name in enumerate(runnable):
        row = rows[name]
        try:
            upscaler = load_method(name, precision=precision)
        except MethodUnavailable as exc:
            row["status"] = f"unavailable: {exc}"
            continue
        fixed, label = comparison.fixed(name), comparison.label(name)
        if fixed:
            upscaler = ColourFixedUpscaler(upscaler)
        start = time.perf_counter()
        sr = upscaler.upscale(prepared.lr)
        seconds = time.perf_counter() - start
        used = upscaler.precision
        comparison.outputs[name] = sr
        row |= {"status": "ok, colour fix" if fixed else "ok", "run time (s)": f"{seconds:.2f}", "precision": used}
        caption = f"{label} · {seconds:.2f} s · {used}"
        if prepared.hr is not None:
            row["PSNR (dB)"], row["SSIM"] = f"{psnr_y(sr, prepared.hr):.2f}", f"{ssim_y(sr, prepared.hr):.4f}"
            caption = f"{label} · {row['PSNR (dB)']} dB / {row['SSIM']} · {seconds:.2f} s · {used}"
        comparison.captions[name] = caption
        if step + 1 < len(runnable):
            yield shown(f"{step + 1} of {len(runnable)} methods done; running **{runnable[step + 1]}** ...")
    unavailable = [r for r in rows.values() if r["status"].startswith("unavailable")]
    yield shown(summary(comparison, unavailable), write_downloads(comparison))


def summary(comparison: Comparison, unavailable: list[dict]) -> str:
    prepared = comparison.prepared
    h, w = prepared.lr.shape[:2]
    lines = [*prepared.notes, f"Low-resolution input {w}x{h} -> outputs {4 * w}x{4 * h}."]
    if unavailable:
        names = ", ".join(f"**{r['method']}**" for r in unavailable)
        lines.append(f"Not available on this server (the table says why): {names}.")
    return "\n\n".join(lines)


def knob_hint(prepared: Prepared) -> str:
    scored = " and score it against the original" if prepared.hr is not None else " (no original, so no scores)"
    return f"Release the alpha slider to upscale this input with the blended network{scored}."


def render_views(comparison: Comparison | None, px: float, py: float, zoom: float, left: str, right: str):
    """The zoomed crops of every panel, the two-method slider, and the knob's crop, all at one window
    centred at (px, py) percent of the width and height."""
    if comparison is None:
        return [], None, None
    panels = comparison.panels()
    zoom = int(zoom)
    shape = next(iter(panels.values())).shape if panels else (1, 1)
    box = crop_box(shape, (px / 100, py / 100), zoom)

    def view(image: np.ndarray) -> str:
        return view_file(zoomed(image, box, zoom))

    gallery = [(view(image), comparison.captions[name]) for name, image in panels.items()]
    missing = [name for name in (left, right) if name not in panels]
    # An update, not a gr.ImageSlider(value=...), which would write the pair to Gradio's cache as WebP (unsent) first.
    if missing:
        slider = gr.update(value=None, label=f"{' and '.join(missing)}: no output in this run")
    else:
        pair = (view(panels[left]), view(panels[right]))
        slider = gr.update(value=pair, label=f"left: {comparison.label(left)} | right: {comparison.label(right)}")
    knob = view(comparison.knob) if comparison.knob is not None else None
    return gallery, slider, knob


def view_file(image: np.ndarray) -> str:
    """`image` as a lossless PNG named after its content, written once (whole, then renamed into place) for Gradio.

    Gradio copies a file into its cache once and, sent again, serves that copy untouched. An image array it encodes
    and rewrites in place, at the same address, every time it is sent (and every Compare step sends every tile again):
    a browser reading it meanwhile got a broken tile, and never asked again, the address being the same."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(repr(image.shape).encode())
    digest.update(image.data)
    path = VIEW_ROOT / f"{digest.hexdigest()[:32]}.png"
    VIEW_ROOT.mkdir(parents=True, exist_ok=True)
    prune_views_now_and_then()
    try:
        os.utime(path)  # in use: not pruned for another KEEP_DOWNLOADS_SECONDS
    except FileNotFoundError:  # never written, or pruned (by any session) since
        save_png(image, path)
    return str(path)


_views_pruned_at = -math.inf  # time.monotonic() of the last `prune_views_now_and_then` that pruned


def prune_views_now_and_then() -> None:
    """Prune VIEW_ROOT if this process has not for PRUNE_VIEWS_SECONDS: every crop, zoom or mode change writes views
    (up to 1024x1024 each), and a session that only moves the crop would otherwise fill it until the next Compare."""
    global _views_pruned_at
    now = time.monotonic()
    if now - _views_pruned_at >= PRUNE_VIEWS_SECONDS:
        _views_pruned_at = now
        prune(VIEW_ROOT)


def framed_preview(
    source: Source | None, comparison: Comparison | None, mode: str, px: float, py: float, zoom: float
) -> str | None:
    """The input's preview with the zoomed window outlined (where every view is looking), as a `view_file`."""
    if source is None:
        return None
    if comparison is not None and comparison.panels():
        shape = next(iter(comparison.panels().values())).shape
    else:  # before a comparison: the size the outputs will have
        shape = output_shape(*source.image.shape[:2], mode)
    box = crop_box(shape, (px / 100, py / 100), int(zoom))
    height, width = source.preview.shape[:2]
    sy, sx = height / shape[0], width / shape[1]
    x0, y0 = box.left * sx, box.top * sy
    x1, y1 = (box.left + box.width) * sx - 1, (box.top + box.height) * sy - 1
    framed = Image.fromarray(source.preview)
    draw = ImageDraw.Draw(framed)
    line = max(2, round(max(height, width) / 300))
    draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=(0, 0, 0), width=line + 2)
    draw.rectangle((x0 + 1, y0 + 1, max(x0 + 1, x1 - 1), max(y0 + 1, y1 - 1)), outline=FRAME_COLOUR, width=line)
    return view_file(np.asarray(framed))


def mode_chosen(source: Source | None, comparison: Comparison | None, mode: str, px: float, py: float, zoom: float):
    """The user picked `mode`: the preview outlined for it, and no automatic switch left to undo (see `load_upload`)."""
    return framed_preview(source, comparison, mode, px, py, zoom), None


def update_views(
    source: Source | None, comparison: Comparison | None, mode: str, px: float, py: float, zoom: float, left: str, right: str
):
    """The framed preview and every zoomed view, after the window moved or the slider's methods changed."""
    return (framed_preview(source, comparison, mode, px, py, zoom), *render_views(comparison, px, py, zoom, left, right))


def select_crop(
    source: Source | None, comparison: Comparison | None, mode: str, zoom: float, left: str, right: str, evt: gr.SelectData
):
    """A click on the input image moves the window of every view there."""
    if source is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    fx, fy = centre_from_click(tuple(evt.index), source.preview.shape)
    px, py = round(fx * 100, 1), round(fy * 100, 1)
    return (px, py, *update_views(source, comparison, mode, px, py, zoom, left, right))


def knob_upscaler(alpha: float, precision: str) -> Upscaler:
    """The blended generator for the slider's `alpha` (steps of 0.01; `interpolated_upscaler` keeps the last few)."""
    return interpolated_upscaler(round(float(alpha), 2), precision=precision)


def run_knob(
    comparison: Comparison | None,
    alpha: float,
    px: float,
    py: float,
    zoom: float,
    force_float32: bool = False,
    progress: gr.Progress = gr.Progress(),
):
    """Upscale the compared input with the generator blended at `alpha`; PSNR/SSIM when the original is known, and
    the downloads again with the blended output among them."""
    if comparison is None:
        return comparison, None, "**Run the comparison first**: the knob upscales the same input.", gr.skip()
    precision = compare_precision(force_float32)
    try:
        blended_from = knob_start()
        upscaler = knob_upscaler(alpha, precision)
    except MethodUnavailable as exc:
        return comparison, None, f"**The knob is unavailable here**: {exc}", gr.skip()
    if comparison.colour_fix:
        upscaler = ColourFixedUpscaler(upscaler)
    start = time.perf_counter()
    sr = upscaler.upscale(comparison.prepared.lr, progress=lambda done: progress(done, desc=f"alpha {alpha:.2f}"))
    seconds = time.perf_counter() - start
    comparison.knob, comparison.knob_alpha = sr, round(float(alpha), 2)
    text = f"alpha = {alpha:.2f} (0: {blended_from.label}, {KNOB_ENDS[1]}'s start; 1: {KNOB_ENDS[1]}) · {seconds:.2f} s · {precision}"
    if comparison.colour_fix:
        text += " · colour fix"
    hr = comparison.prepared.hr
    if hr is not None:
        text += f" · PSNR {psnr_y(sr, hr):.2f} dB · SSIM {ssim_y(sr, hr):.4f}"
    box = crop_box(sr.shape, (px / 100, py / 100), int(zoom))
    return comparison, view_file(zoomed(sr, box, int(zoom))), text, with_knob_download(comparison)


def warm_up() -> None:
    """Load every available learned method at the default precision and run it once on a tiny input, so the
    first Compare does not wait for weights to load (the app runs this in a thread at start)."""
    precision = default_precision(pick_device())
    for info in list_methods():
        if info.learned and info.available:
            try:
                load_method(info.name, precision=precision).upscale(np.zeros((MIN_LR_SIDE, MIN_LR_SIDE, 3), np.uint8))
            except MethodUnavailable:  # replaced or damaged since list_methods looked: Compare will say so
                continue


def default_right_panel() -> str:
    """The slider's default partner for bicubic: the paper's SRGAN, else the best learned method there is."""
    available = {info.name for info in list_methods() if info.available}
    return next((name for name in PREFERRED_RIGHT if name in available), "nearest")


def knob_explained(problem: str | None) -> str:
    """The knob's line: what it blends, or why it is unavailable here (`problem`, from `knob_problem`)."""
    if problem:
        return f"Network interpolation of {KNOB_ENDS[1]} with its start. **Unavailable here**: {problem}."
    return (
        f"Network interpolation: every weight is (1 - alpha) x {knob_start().label} + alpha x {KNOB_ENDS[1]}, "
        f"which was fine-tuned from those weights (blending two networks works only when they share a start)."
    )


def write_downloads(comparison: Comparison) -> list[str]:
    """Every full-size output and the low-resolution input the methods saw, as lossless PNGs named after the image."""
    prune(DOWNLOAD_ROOT)
    folder = Path(tempfile.mkdtemp(dir=DOWNLOAD_ROOT))
    images = {
        f"{comparison.name}_{name}{COLOUR_FIX_SUFFIX if comparison.fixed(name) else ''}_x4": sr
        for name, sr in comparison.outputs.items()
    }
    images[f"{comparison.name}_lr_input"] = comparison.prepared.lr
    for stem, image in images.items():
        save_png(image, folder / f"{stem}.png")
    comparison.downloads = [str(folder / f"{stem}.png") for stem in images]
    return comparison.downloads


def with_knob_download(comparison: Comparison) -> list[str]:
    """The run's downloads and the knob's latest output, written beside them (replacing the one before)."""
    folder = Path(comparison.downloads[0]).parent if comparison.downloads else None
    if folder is None or not folder.is_dir():  # pruned since the run: write them again
        folder = Path(write_downloads(comparison)[0]).parent
    for earlier in folder.glob(f"{comparison.name}_knob-alpha*"):
        earlier.unlink()
    fix = COLOUR_FIX_SUFFIX if comparison.colour_fix else ""
    path = folder / f"{comparison.name}_knob-alpha{comparison.knob_alpha:.2f}{fix}_x4.png"
    save_png(comparison.knob, path)
    return [*comparison.downloads, str(path)]


def prune(root: Path) -> None:
    """Remove the folders and files in `root` older than KEEP_DOWNLOADS_SECONDS (the app has served them by then)."""
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_DOWNLOADS_SECONDS
    for entry in root.iterdir():
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile by another session
            if entry.stat().st_mtime >= cutoff:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()


# Gallery tiles at least one zoomed crop wide, with the caption under the crop instead of over it; Enter in a
# typed crop or zoom number applies it (Gradio applies typed slider numbers on blur only).
PAGE_HEAD = f"""
<style>
#compare-gallery .grid-container {{ grid-template-columns: repeat(auto-fill, minmax({VIEW + 8}px, 1fr)) !important; }}
#compare-gallery .thumbnail-item {{ aspect-ratio: auto !important; height: auto !important; display: flex;
  flex-direction: column; align-items: center; }}
#compare-gallery .thumbnail-item img {{ width: auto !important; height: auto !important; max-width: 100%; }}
#compare-gallery .caption-label {{ position: static !important; transform: none !important; max-width: 100% !important;
  white-space: normal !important; margin: 4px 0 0 0; }}
</style>
<script>
document.addEventListener("keydown", (event) => {{
  if (event.key === "Enter" && event.target.matches(".compare-view-number input[type=number]")) event.target.blur();
}});
</script>
"""


def build_tab(data_root: Path | None) -> None:
    """The Compare tab's components and events; call inside `with gr.Tab(...)`."""
    gr.HTML("", head=PAGE_HEAD, js_on_load=None, elem_id="compare-head", padding=False)
    gr.Markdown(INTRO)
    source = gr.State(None)
    comparison = gr.State(None)
    own_mode = gr.State(None)  # the user's choice while the mode shown was switched for the loaded image
    default = default_precision(pick_device())
    with gr.Row():
        with gr.Column(scale=1):
            # Any file: the app says itself what it cannot read. Gradio's file_types=["image"] goes by the name's
            # extension, refusing a TGA or a file without one with a bare "Error".
            upload = gr.File(label="Your image", type="filepath", elem_id="compare-upload")
            examples = example_choices(data_root)
            no_benchmarks = not any(choice.startswith(BENCHMARKS) for choice in examples)
            example = gr.Dropdown(
                examples, value=None, label="... or an example", elem_id="compare-example",
                info=f"Set5, Set14 and BSD100 too once `{GET_DATA}` has fetched them" if no_benchmarks else None,
            )
            mode = gr.Radio(MODE_CHOICES, value=HR_MODE, label="How to read it", elem_id="compare-mode")
            force_float32 = gr.Checkbox(
                value=False,
                label="Force float32 (the networks as trained, to rounding)",
                info=f"Default here: {default} for the learned methods"
                + (" (this hardware runs bfloat16 natively: about 2x faster, within a few 8-bit levels)." if default == "bfloat16" else "."),
                elem_id="compare-float32",
            )
            colour_fix = gr.Checkbox(
                value=False,
                label="Colour fix for the learned methods (not in the paper)",
                info="Takes each output's coarse colour from the input's bicubic upscale and keeps the network's detail: "
                "removes the colour cast of the briefly trained SRGANs (results/colour_fix.md).",
                elem_id="compare-colour-fix",
            )
            run = gr.Button("Compare", variant="primary", elem_id="compare-run")
            status = gr.Markdown(elem_id="compare-status")
        with gr.Column(scale=2):
            preview = gr.Image(
                label="Input: click to choose where to look (the outlined window)",
                format="png",  # lossless: in low-resolution mode it is the only view of the input
                interactive=False,
                height=420,
                elem_id="compare-preview",
            )
            with gr.Row():
                number = ["compare-view-number"]
                cx = ViewSlider(0, 100, 50, step=0.1, label="Crop centre x (% of width)", elem_id="compare-crop-x", elem_classes=number)
                cy = ViewSlider(0, 100, 50, step=0.1, label="Crop centre y (% of height)", elem_id="compare-crop-y", elem_classes=number)
                zoom = ViewSlider(1, MAX_ZOOM, value=4, step=1, label=f"Zoom (a {VIEW}-pixel view)", elem_id="compare-zoom", elem_classes=number)
    gallery = gr.Gallery(
        label="Every method at the same crop (lossless PNG; captions: PSNR / SSIM, run time, precision)",
        format="png",
        columns=3,
        height="fit-content",  # "auto" would cap it at 55% of the window and scroll
        object_fit="none",  # each crop at its own size: one screen pixel per pixel of the zoomed view
        elem_id="compare-gallery",
    )
    table = gr.Dataframe(
        headers=COLUMNS, label="Per method", interactive=False, wrap=True, elem_id="compare-table",
        column_widths=["12%", "24%", "8%", "8%", "8%", "8%", "32%"],
    )
    with gr.Row():
        with gr.Column(scale=1):
            choices = [*METHODS, ORIGINAL_LABEL]
            left = gr.Dropdown(choices, value="bicubic", label="Slider: left")
            right = gr.Dropdown(choices, value=default_right_panel(), label="Slider: right")
        slider = gr.ImageSlider(label="Two methods at the same crop", format="png", scale=3)
    downloads = gr.File(label="Full-size outputs (lossless PNG)", file_count="multiple", interactive=False)
    with gr.Accordion("Perception-distortion knob", open=True):
        problem = knob_problem()
        gr.Markdown(knob_explained(problem))
        alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="alpha", interactive=problem is None)
        knob_text = gr.Markdown(elem_id="compare-knob-text")
        knob_image = gr.Image(label="Blended network at the same crop", format="png", interactive=False)

    views = [gallery, slider, knob_image]
    results = [table, gallery, slider, downloads, knob_image, knob_text]
    loads = [source, comparison, preview, example, mode, status, *results, own_mode]
    comparing = run.click(
        run_comparison,
        [source, mode, cx, cy, zoom, left, right, force_float32, colour_fix],
        [comparison, table, gallery, slider, downloads, status, knob_image, knob_text],
        api_name="compare_run",
        concurrency_limit=1,
        concurrency_id=UPSCALE_QUEUE,
        show_progress="minimal",  # each method's result shows as soon as it is ready, not under a spinner
    )
    # The run drew its views at the window of its start: redraw them where the window is now.
    comparing.then(update_views, [source, comparison, mode, cx, cy, zoom, left, right], [preview, *views],
                   api_visibility="private", show_progress="hidden")
    knobbing = alpha.release(
        run_knob,
        [comparison, alpha, cx, cy, zoom, force_float32],
        [comparison, knob_image, knob_text, downloads],
        api_name="compare_knob",
        concurrency_limit=1,
        concurrency_id=UPSCALE_QUEUE,
    )
    # The knob drew its view at the window of its start too.
    knobbing.then(update_views, [source, comparison, mode, cx, cy, zoom, left, right], [preview, *views],
                  api_visibility="private", show_progress="hidden")
    # A new image stops a comparison or knob run still going on the old one, which would otherwise come back beside it.
    upload.upload(load_upload, [upload, mode, cx, cy, zoom, own_mode], loads, api_name="compare_load_file",
                  show_progress="minimal", cancels=[comparing, knobbing])
    upload.clear(lambda m, own: load_upload(None, m, own_mode=own), [mode, own_mode], loads, api_visibility="private",
                 show_progress="hidden", cancels=[comparing, knobbing])
    example.input(  # the upload box is emptied: it would go on showing the file the example replaced
        lambda choice, m, x, y, z, own: (*choose_example(choice, m, x, y, z, data_root, own), None),
        [example, mode, cx, cy, zoom, own_mode],
        [*loads, upload],
        api_name="compare_load_example",
        show_progress="minimal",
        cancels=[comparing, knobbing],
    )
    mode.input(mode_chosen, [source, comparison, mode, cx, cy, zoom], [preview, own_mode], api_visibility="private",
               show_progress="hidden")
    preview.select(
        select_crop, [source, comparison, mode, zoom, left, right], [cx, cy, preview, *views], api_visibility="private",
        show_progress="hidden",
    )
    for control in (cx, cy, zoom):  # a typed number the views cannot use shows as the one they use
        control.release(control.shown, control, control, preprocess=False, api_visibility="private", show_progress="hidden")
    gr.on(
        [cx.release, cy.release, zoom.release, left.input, right.input],
        update_views,
        [source, comparison, mode, cx, cy, zoom, left, right],
        [preview, *views],
        api_name="compare_view",
        show_progress="hidden",
    )
