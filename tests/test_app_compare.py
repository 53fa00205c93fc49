"""The Compare tab, served in-process and driven over HTTP with gradio_client, plus its crop and input logic."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image
from safetensors.torch import save_file
from skimage import data as skdata

from app import create_app
from demo import compare
from demo.crops import crop_box, zoomed
from demo.inputs import HR_MODE, LR_MODE, MAX_LR_PIXELS, output_shape, prepare
from srgan_core import method_specs, methods
from srgan_core.download import sha256_file
from srgan_core.evaluate import score_images
from srgan_core.images import ImageError, downscale_x4, modcrop
from srgan_core.method_specs import KNOB_ENDS
from srgan_core.metrics import psnr_y, ssim_y
from srgan_core.models import Generator
from srgan_core.paths import default_data_root

RANDOM_WEIGHTS = ("srresnet-mse", "srgan-vgg54")  # the knob's two ends, so learned methods and the knob run too


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(tmp: Path, random_weights: tuple[str, ...] = RANDOM_WEIGHTS) -> Iterator[str]:
    """The whole app on a free localhost port; yields its URL.

    With `random_weights`, the learned methods see a models folder holding only those (random) generators;
    with none, they see the project's real results/models. The views it draws go to `tmp`/views."""
    with pytest.MonkeyPatch.context() as patch:
        if random_weights:
            models_dir = tmp / "models"
            models_dir.mkdir()
            torch.manual_seed(0)
            for name in random_weights:
                save_file(Generator().state_dict(), str(models_dir / f"{name}.safetensors"))
            if set(KNOB_ENDS) <= set(random_weights):  # the knob's alpha-1 end says it was fine-tuned from the other
                init = {"method": KNOB_ENDS[0], "sha256": sha256_file(models_dir / f"{KNOB_ENDS[0]}.safetensors"), "iterations": 10}
                (models_dir / f"{KNOB_ENDS[1]}.json").write_text(json.dumps({"method": KNOB_ENDS[1], "init": init}))
            patch.setattr(method_specs, "MODELS_DIR", models_dir)
        patch.setattr(compare, "VIEW_ROOT", tmp / "views")
        app = create_app(default_data_root(), tmp / "study.sqlite", "test-token", tmp / "results")
        app.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            yield app.local_url
        finally:
            app.close()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_app(tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture
def client(app_url: str) -> Client:
    """A fresh session per test, so one test's loaded image never leaks into another."""
    return Client(app_url, verbose=False)


@pytest.fixture
def view_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of its own for the views a test draws (not the app's shared one in the system's temporary folder)."""
    root = tmp_path_factory.mktemp("views")
    monkeypatch.setattr(compare, "VIEW_ROOT", root)
    return root


@pytest.fixture(scope="module")
def photo_hr() -> np.ndarray:
    """A 128x96 crop of a sample photo: 32x24 low-resolution pixels in high-resolution mode."""
    return np.ascontiguousarray(skdata.astronaut()[40:136, 160:288])


def save(image: np.ndarray | Image.Image, path: Path, **kwargs) -> Path:
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **kwargs)
    return path


def load(client: Client, path: Path, mode: str = HR_MODE) -> tuple[str | None, str, str]:
    """Upload a file as the browser does: (preview, mode as the app now reads it, status line)."""
    preview, _, mode, status, *_ = client.predict(handle_file(str(path)), mode, 50, 50, 4, api_name="/compare_load_file")
    return preview, mode, status


def run(
    client: Client, mode: str, left: str = "bicubic", right: str = "nearest", crop=(50, 50, 4), float32=False, colour_fix=False
) -> dict:
    """Press Compare with the crop centred at (x %, y %) and zoomed as `crop` says; the last of its updates."""
    table, gallery, slider, downloads, status, knob_image, knob_text = client.predict(
        mode, *crop, left, right, float32, colour_fix, api_name="/compare_run"
    )
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    return {"rows": rows, "gallery": gallery, "slider": slider, "downloads": downloads, "status": status, "knob": knob_text}


def read(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_every_available_method_returns_a_4x_image_and_the_rest_say_why(client: Client, tmp_path: Path) -> None:
    lr = np.ascontiguousarray(skdata.chelsea()[100:130, 200:240])  # 40x30, read as the low-resolution input
    load(client, save(lr, tmp_path / "cat.png"))
    result = run(client, LR_MODE)
    available = {info.name for info in methods.list_methods() if info.available}
    assert available == {"nearest", "bicubic", *RANDOM_WEIGHTS}
    for name, row in result["rows"].items():
        if name in available:
            assert row["status"] == "ok" and float(row["run time (s)"]) >= 0 and row["PSNR (dB)"] == ""
        else:
            assert row["status"].startswith("unavailable: no trained weights at ") and f"{name}.safetensors" in row["status"]
            assert "git checkout -- " in row["status"]
    outputs = {Path(p).name: read(p) for p in result["downloads"]}
    assert set(outputs) == {f"cat_{name}_x4.png" for name in available} | {"cat_lr_input.png"}
    assert np.array_equal(outputs.pop("cat_lr_input.png"), lr)  # the input as the methods saw it
    assert all(image.shape == (120, 160, 3) for image in outputs.values())
    # The download is lossless: exactly the array the method produced.
    assert np.array_equal(outputs["cat_bicubic_x4.png"], methods.load_method("bicubic").upscale(lr))
    assert [item["caption"].split(" · ")[0] for item in result["gallery"]] == [
        n for n in method_specs.METHODS if n in available
    ]


def test_scores_shown_equal_the_metrics_of_the_paper_protocol(client: Client, tmp_path: Path, photo_hr) -> None:
    load(client, save(photo_hr, tmp_path / "astronaut.png"))
    result = run(client, HR_MODE, left="bicubic", right="original", float32=True)  # as load_method's default
    for name in ("nearest", "bicubic", *RANDOM_WEIGHTS):
        sr = methods.load_method(name).upscale(downscale_x4(photo_hr))
        assert float(result["rows"][name]["PSNR (dB)"]) == pytest.approx(psnr_y(sr, photo_hr), abs=0.005)
        assert float(result["rows"][name]["SSIM"]) == pytest.approx(ssim_y(sr, photo_hr), abs=0.00005)
    assert result["gallery"][-1]["caption"] == "original (high resolution)"
    assert {Path(p).name for p in result["downloads"]} >= {"astronaut_lr_input.png", "astronaut_bicubic_x4.png"}
    left, right = (read(p) for p in result["slider"]["value"])
    assert left.shape == right.shape and not np.array_equal(left, right)


def test_psnr_shown_equals_evaluate_on_a_benchmark_image(client: Client, data_root: Path) -> None:
    loaded = client.predict("Set5 / baby", HR_MODE, 50, 50, 4, api_name="/compare_load_example")
    assert loaded[-1] is None  # the upload box is emptied, not left showing an earlier file
    result = run(client, HR_MODE)
    expected = score_images(["nearest", "bicubic"], "Set5", data_root, images=["baby"]).set_index("method")
    for name in ("nearest", "bicubic"):
        assert float(result["rows"][name]["PSNR (dB)"]) == pytest.approx(expected.loc[name, "psnr"], abs=0.005)
        assert float(result["rows"][name]["SSIM"]) == pytest.approx(expected.loc[name, "ssim"], abs=0.00005)


def test_the_crop_is_the_same_window_of_every_output(client: Client, tmp_path: Path, photo_hr) -> None:
    load(client, save(photo_hr, tmp_path / "a.png"))
    first = run(client, HR_MODE, crop=(0, 100, 8))  # the bottom-left corner, 8x
    _, gallery, slider, _ = client.predict(HR_MODE, 100, 0, 4, "nearest", "original", api_name="/compare_view")  # top right, 4x
    # A 384 / zoom pixel window, clipped to the 128x96 outputs: 48x48 at 8x, 96x96 at 4x.
    for items, expected, zoom in [(first["gallery"], photo_hr[-48:, :48], 8), (gallery, photo_hr[:, -96:], 4)]:
        crops = [read(item["image"]) for item in items]
        assert all(crop.shape == (len(expected) * zoom, expected.shape[1] * zoom, 3) for crop in crops)
        assert np.array_equal(crops[-1], np.repeat(np.repeat(expected, zoom, 0), zoom, 1))
    assert np.array_equal(read(slider["value"][1]), crops[-1])


@pytest.mark.parametrize(
    ("typed", "used"),
    [((50, 50, 9), (50, 50, 8)), ((50, 50, 0), (50, 50, 1)), ((50, 50, 2.5), (50, 50, 3)), ((50, 50, None), (50, 50, 1)),
     ((150, -5, 4), (100, 0, 4)), ((33.36, None, 4), (33.4, 0, 4))],
)
def test_typed_crop_and_zoom_numbers_are_clamped_to_the_range_and_rounded_to_the_step(
    client: Client, tmp_path: Path, photo_hr, typed: tuple, used: tuple
) -> None:
    load(client, save(photo_hr, tmp_path / "a.png"))
    run(client, HR_MODE)
    _, gallery, _, _ = client.predict(HR_MODE, *typed, "nearest", "original", api_name="/compare_view")  # no error
    x, y, zoom = used
    expected = zoomed(photo_hr, crop_box(photo_hr.shape, (x / 100, y / 100), zoom), zoom)
    assert np.array_equal(read(gallery[-1]["image"]), expected)


def test_a_typed_number_the_views_cannot_use_is_shown_as_the_one_they_use() -> None:
    import gradio as gr

    from demo.view_slider import ViewSlider

    zoom, x = ViewSlider(1, 8, value=4, step=1), ViewSlider(0, 100, value=50, step=0.1)
    assert [zoom.shown(typed) for typed in (9, 0, 2.5, None)] == [8, 1, 3, 1]
    assert x.shown(150) == 100 and x.shown(33.36) == 33.4 and x.shown(-0.04) == 0
    assert zoom.shown(8) == x.shown(33.4) == gr.skip()  # a usable number stays as typed


def test_knob_at_alpha_0_is_srresnet_mse(client: Client, tmp_path: Path, photo_hr) -> None:
    load(client, save(photo_hr, tmp_path / "a.png"))
    result = run(client, HR_MODE)
    _, text, _ = client.predict(0.0, 50, 50, 4, False, api_name="/compare_knob")
    assert re.search(r"PSNR ([\d.]+) dB", text).group(1) == result["rows"]["srresnet-mse"]["PSNR (dB)"]
    image, text, files = client.predict(0.5, 50, 50, 4, False, api_name="/compare_knob")
    assert "alpha = 0.50" in text and read(image).shape == (384, 384, 3)  # a 96-px window of the 96x128 output, 4x
    downloads = {Path(f).name: read(f) for f in files}  # the blended output, full size, beside every method's
    assert set(downloads) == {Path(f).name for f in result["downloads"]} | {"a_knob-alpha0.50_x4.png"}
    assert downloads["a_knob-alpha0.50_x4.png"].shape == (96, 128, 3)
    assert np.array_equal(np.repeat(np.repeat(downloads["a_knob-alpha0.50_x4.png"], 4, 0), 4, 1)[:, 64:448], read(image))


@pytest.mark.parametrize(
    ("name", "make", "size"),
    [
        ("gray.png", lambda rgb: Image.fromarray(rgb[:, :, 0]), "40x30"),
        ("rgba.png", lambda rgb: Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])), "40x30"),
        ("deep.png", lambda rgb: Image.fromarray(rgb[:, :, 1].astype(np.uint16) * 257), "40x30"),
        ("cmyk.jpg", lambda rgb: Image.fromarray(rgb).convert("CMYK"), "40x30"),
    ],
)
def test_unusual_images_load(client: Client, tmp_path: Path, name: str, make, size: str) -> None:
    rgb = np.ascontiguousarray(skdata.coffee()[100:130, 100:140])
    _, _, status = load(client, save(make(rgb), tmp_path / name))
    assert f"({size})" in status


@pytest.mark.parametrize("name", ["photo.tga", "photo"])
def test_an_image_gradio_does_not_know_by_its_name_is_read_by_the_app(client: Client, tmp_path: Path, name: str) -> None:
    """Gradio's own file-type check goes by the extension: it refused these with a bare "Error"."""
    rgb = np.ascontiguousarray(skdata.coffee()[100:130, 100:140])
    _, _, status = load(client, save(rgb, tmp_path / name, format="TGA" if name.endswith(".tga") else "PNG"))
    assert f"Loaded **{name}** (40x30)" in status


def test_exif_rotation_is_applied(client: Client, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(np.ascontiguousarray(skdata.coffee()[:30, :40]), tmp_path / "phone.jpg", exif=exif)
    preview, _, status = load(client, path)
    assert "(30x40)" in status and Image.open(preview).size == (30, 40)


def test_the_preview_shows_the_input_losslessly(client: Client, tmp_path: Path) -> None:
    """In low-resolution mode the preview is the only view of the input: PNG, not lossy WebP."""
    lr = np.ascontiguousarray(skdata.astronaut()[100:148, 180:244])  # 64x48: only the outline is drawn over it
    preview, mode, _ = load(client, save(lr, tmp_path / "small.png"), LR_MODE)
    box = crop_box(output_shape(48, 64, mode), (0.5, 0.5), 4)  # the outline, in 4x output pixels
    untouched = slice(0, box.left // 4 - 1)  # the columns left of the outline
    assert Image.open(preview).format == "PNG"
    assert np.array_equal(read(preview)[:, untouched], lr[:, untouched])


def test_a_large_image_is_shown_smaller_but_kept_whole(client: Client, tmp_path: Path) -> None:
    big = np.tile(skdata.coffee(), (3, 2, 1))  # 1200x1200: beyond the 1024x1024 preview
    preview, _, status = load(client, save(big, tmp_path / "big.png"))
    assert "(1200x1200)" in status and Image.open(preview).size == (1024, 1024)


def test_bad_inputs_are_refused_in_the_status_line_and_clear_the_old_results(client: Client, tmp_path: Path, photo_hr) -> None:
    assert "Upload an image or pick an example first" in run(client, HR_MODE)["status"]
    _, text, _ = client.predict(0.5, 50, 50, 4, False, api_name="/compare_knob")
    assert "Run the comparison first" in text
    png = save(photo_hr, tmp_path / "good.png").read_bytes()
    refusals = {
        "notes.txt": (b"just text", "notes.txt is not an image"),
        "fake.png": (b"just text", "fake.png is not an image"),
        "empty.png": (b"", "empty.png is not an image"),
        "cut.png": (png[:200], "cut.png could not be read"),
    }
    for name, (content, message) in refusals.items():
        load(client, tmp_path / "good.png")
        assert run(client, HR_MODE)["rows"]["bicubic"]["status"] == "ok"
        (tmp_path / name).write_bytes(content)
        preview, _, _, status, table, gallery, slider, downloads, knob_image, _ = client.predict(
            handle_file(str(tmp_path / name)), HR_MODE, 50, 50, 4, api_name="/compare_load_file"
        )
        assert status.startswith("**Cannot use this:**") and message in status
        assert preview is None and table["data"] in ([], [[""] * len(table["headers"])]) and gallery in ([], None)
        assert slider is None and downloads is None and knob_image is None
        # Nothing is left loaded: Compare says so instead of running on the previous image.
        assert "Upload an image or pick an example first" in run(client, HR_MODE)["status"]


def test_an_image_too_small_for_any_mode_is_refused_at_upload(client: Client, tmp_path: Path) -> None:
    preview, mode, status = load(client, save(np.zeros((1, 1, 3), np.uint8), tmp_path / "dot.png"))
    assert preview is None and "1x1 pixels: too small" in status and "8x8" in status


def test_an_image_too_elongated_to_shrink_to_the_limit_is_refused_at_upload(client: Client, tmp_path: Path) -> None:
    preview, _, status = load(client, save(np.full((32, 40000, 3), 90, np.uint8), tmp_path / "strip.png"), HR_MODE)
    assert preview is None and "40000x32 pixels: too elongated" in status and "srgan_core.upscale" in status


def test_an_image_too_small_for_a_photo_is_read_as_the_low_resolution_input(client: Client, tmp_path: Path) -> None:
    _, mode, status = load(client, save(np.full((20, 24, 3), 90, np.uint8), tmp_path / "small.png"), HR_MODE)
    assert mode == LR_MODE and "upscaled as the low-resolution input" in status
    assert run(client, mode)["rows"]["bicubic"]["status"] == "ok"


def test_an_automatic_switch_to_low_resolution_applies_to_that_image_only(client: Client, tmp_path: Path, photo_hr) -> None:
    _, mode, _ = load(client, save(np.full((20, 24, 3), 90, np.uint8), tmp_path / "small.png"), HR_MODE)
    assert mode == LR_MODE
    # The next image comes with the mode shown, the switch: it is read as the user chose, a photo.
    _, mode, status = load(client, save(photo_hr, tmp_path / "photo.png"), mode)
    assert mode == HR_MODE and "low-resolution" not in status
    _, mode, _ = load(client, tmp_path / "photo.png", LR_MODE)  # the user's own choice is kept
    assert mode == LR_MODE
    _, _, mode, *_ = client.predict("scikit-image / camera", LR_MODE, 50, 50, 4, api_name="/compare_load_example")
    assert mode == HR_MODE  # an example is an original: read as a photo, and this example only
    assert load(client, tmp_path / "photo.png", HR_MODE)[1] == LR_MODE


def test_transparency_is_reported_and_opaque_images_say_nothing(client: Client, tmp_path: Path) -> None:
    rgb = np.ascontiguousarray(skdata.coffee()[100:160, 100:180])
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:30] = 0  # the top half is transparent
    _, _, status = load(client, save(Image.fromarray(np.dstack([rgb, alpha])), tmp_path / "half.png"))
    assert "transparency (50% of its pixels)" in status and "white background" in status
    _, _, status = load(client, save(Image.fromarray(np.dstack([rgb, np.full_like(alpha, 255)])), tmp_path / "opaque.png"))
    assert "transparency" not in status


def test_clearing_the_upload_forgets_the_image() -> None:
    from demo.compare import load_upload

    outputs = load_upload(None, HR_MODE)
    assert outputs[0] is None and outputs[2] is None and "No image loaded" in outputs[5]


def test_each_result_is_shown_as_soon_as_it_is_ready(tmp_path: Path, photo_hr, view_root: Path) -> None:
    from demo.compare import Source, run_comparison

    updates = list(run_comparison(Source.of("a.png", photo_hr), HR_MODE, 50, 50, 4, "bicubic", "nearest"))
    available = [info.name for info in methods.list_methods() if info.available]
    assert len(updates) == len(available) + 1  # an empty one at once, then one per method
    shown = [[item[1].split(" · ")[0] for item in update[2]] for update in updates]
    assert shown[0] == ["original (high resolution)"]
    for count, names in enumerate(shown[1:], 1):
        assert names == [*available[:count], "original (high resolution)"]
    assert all(update[4] is None for update in updates[:-1]) and len(updates[-1][4]) == len(available) + 1
    assert "running" in updates[1][5] and "outputs 128x96" in updates[-1][5]


def test_precision_is_shown_per_result_and_float32_can_be_forced(client: Client, tmp_path: Path, photo_hr, monkeypatch) -> None:
    from demo import compare

    load(client, save(photo_hr, tmp_path / "a.png"))
    default = compare.default_precision(compare.pick_device())
    for float32, learned in [(False, default), (True, "float32")]:
        result = run(client, HR_MODE, float32=float32)
        assert result["rows"]["bicubic"]["precision"] == "float64"
        assert result["rows"]["srresnet-mse"]["precision"] == learned
        assert result["gallery"][2]["caption"].endswith(f"· {learned}")
        _, text, _ = client.predict(0.5, 50, 50, 4, float32, api_name="/compare_knob")
        assert f"· {learned}" in text



def test_colour_fix_applies_to_the_learned_methods_and_says_so(client: Client, tmp_path: Path, photo_hr) -> None:
    from srgan_core.colour_fix import ColourFixedUpscaler

    load(client, save(photo_hr, tmp_path / "a.png"))
    result = run(client, HR_MODE, float32=True, colour_fix=True)
    assert result["rows"]["bicubic"]["status"] == "ok" and result["rows"]["srresnet-mse"]["status"] == "ok, colour fix"
    captions = [item["caption"] for item in result["gallery"]]
    assert captions[1].startswith("bicubic · ") and captions[2].startswith("srresnet-mse + colour fix · ")
    outputs = {Path(p).name: read(p) for p in result["downloads"]}
    assert "a_bicubic_x4.png" in outputs and "a_srresnet-mse_x4.png" not in outputs  # a fixed output is named so
    fixed = ColourFixedUpscaler(methods.load_method("srresnet-mse", precision="float32")).upscale(downscale_x4(photo_hr))
    assert np.array_equal(outputs["a_srresnet-mse+colour-fix_x4.png"], fixed)
    _, text, files = client.predict(0.5, 50, 50, 4, True, api_name="/compare_knob")
    assert "a_knob-alpha0.50+colour-fix_x4.png" in {Path(f).name for f in files}
    assert text.endswith("· colour fix") or "· colour fix ·" in text


def test_slider_names_a_colour_fixed_side(photo_hr, view_root: Path) -> None:
    from demo.compare import Comparison, render_views

    prepared = prepare(photo_hr, HR_MODE)
    image = np.zeros_like(photo_hr)
    comparison = Comparison("a", prepared, {"bicubic": image, "srgan-vgg54": image}, colour_fix=True)
    comparison.captions |= {"bicubic": "b", "srgan-vgg54": "s", "original": "o"}
    _, slider, _ = render_views(comparison, 50, 50, 4, "bicubic", "srgan-vgg54")
    assert slider["label"] == "left: bicubic | right: srgan-vgg54 + colour fix"


def test_drawing_the_views_leaves_nothing_unsent_in_gradios_cache(photo_hr, tmp_path: Path, monkeypatch, view_root: Path) -> None:
    """The views are files of the app's own (in `view_root`); a gr.ImageSlider built with a value would also encode it
    to (lossy WebP) files in Gradio's cache that no one is sent."""
    from demo.compare import Comparison, render_views

    comparison = Comparison("a", prepare(photo_hr, HR_MODE), {"bicubic": photo_hr, "nearest": photo_hr})
    comparison.captions |= {"bicubic": "b", "nearest": "n", "original": "o"}
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    gallery, slider, _ = render_views(comparison, 50, 50, 4, "bicubic", "nearest")
    assert list(tmp_path.iterdir()) == []
    assert all(Path(path).parent == view_root for path in [*(tile for tile, _ in gallery), *slider["value"]])
    assert slider["label"] == "left: bicubic | right: nearest" and len(slider["value"]) == 2


def test_views_sent_again_leave_the_files_already_sent_untouched(photo_hr, tmp_path: Path, monkeypatch, view_root: Path) -> None:
    """Every Compare step sends every tile again. Gradio rewrote an image array's file in place, at the same address,
    each time: a browser reading it meanwhile got a broken tile, and never reloaded it (the address was the same)."""
    import gradio as gr
    from gradio.processing_utils import move_files_to_cache

    from demo.compare import Comparison, render_views

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # Gradio's cache, for the components made below
    comparison = Comparison("a", prepare(photo_hr, HR_MODE), {"bicubic": photo_hr, "nearest": photo_hr[::-1]})
    comparison.captions |= {"bicubic": "b", "nearest": "n", "original": "o"}
    gallery, slider = gr.Gallery(format="png"), gr.ImageSlider(format="png")

    def send() -> list[Path]:
        """The files the browser is sent for the gallery and the slider, as Gradio makes them from the event's output."""
        tiles, pair, _ = render_views(comparison, 50, 50, 4, "bicubic", "nearest")
        sent = [*move_files_to_cache(gallery.postprocess(tiles), gallery, postprocess=True),
                *move_files_to_cache(slider.postprocess(pair["value"]), slider, postprocess=True)]
        return [Path(item.get("image", item)["path"]) for item in sent]

    first = send()
    assert len(first) == 5 and all(path.is_relative_to(tmp_path) for path in first)
    for path in first:
        path.write_bytes(b"as the browser read it")
    assert send() == first
    assert all(path.read_bytes() == b"as the browser read it" for path in first)


def test_a_view_pruned_while_it_is_drawn_again_is_written_again(photo_hr, view_root: Path, monkeypatch) -> None:
    """Another session's Compare may prune an hour-old view just as this one draws it again: it is written anew."""
    import os

    from demo.compare import view_file

    path = Path(view_file(photo_hr))
    utime = os.utime

    def pruned_first(target, *args, **kwargs) -> None:  # os.utime, after another session pruned the view
        if Path(target).parent == view_root:
            Path(target).unlink(missing_ok=True)
        utime(target, *args, **kwargs)

    monkeypatch.setattr(compare.os, "utime", pruned_first)
    assert view_file(photo_hr) == str(path) and np.array_equal(read(str(path)), photo_hr)


def test_drawing_views_prunes_old_ones_at_most_once_a_minute(photo_hr, view_root: Path, monkeypatch) -> None:
    """A session that only moves the crop writes views without ever pressing Compare (which prunes them too)."""
    import os
    import time

    from demo.compare import KEEP_DOWNLOADS_SECONDS, PRUNE_VIEWS_SECONDS, view_file

    def old_view(name: str) -> Path:
        path = view_root / name
        path.write_bytes(b"a view drawn long ago")
        os.utime(path, (time.time() - KEEP_DOWNLOADS_SECONDS - 1,) * 2)
        return path

    monkeypatch.setattr(compare, "_views_pruned_at", -float("inf"))  # this process has not pruned yet
    first = old_view("first.png")
    view_file(photo_hr)
    assert not first.exists()
    second = old_view("second.png")
    view_file(photo_hr[::-1])
    assert second.exists()  # pruned less than a minute ago
    monkeypatch.setattr(compare, "_views_pruned_at", time.monotonic() - PRUNE_VIEWS_SECONDS)
    view_file(photo_hr)
    assert not second.exists() and len(list(view_root.iterdir())) == 2


def test_inputs_beyond_the_limit_are_downscaled_saying_so() -> None:
    big = np.zeros((1000, 600, 3), np.uint8)  # 600,000 pixels as a low-resolution input
    prepared = prepare(big, LR_MODE)
    h, w = prepared.lr.shape[:2]
    assert h * w <= MAX_LR_PIXELS and abs(w / h - 0.6) < 0.01
    assert "downscaled" in prepared.notes[0] and f"{w}x{h}" in prepared.notes[0]
    assert prepare(big, HR_MODE).notes == []  # 1000x600 is within the high-resolution limit (1024x1024)


def test_high_resolution_mode_crops_to_a_multiple_of_4_and_downscales_the_matlab_way(photo_hr) -> None:
    odd = np.ascontiguousarray(skdata.astronaut()[:99, :130])
    prepared = prepare(odd, HR_MODE)
    assert np.array_equal(prepared.hr, modcrop(odd)) and np.array_equal(prepared.lr, downscale_x4(modcrop(odd)))
    assert "cropped to 128x96" in prepared.notes[0]
    with pytest.raises(ImageError, match="A high-resolution photo must be at least 32x32"):
        prepare(odd[:31], HR_MODE)


def test_crop_window_stays_inside_the_image() -> None:
    box = crop_box((100, 200, 3), (1.0, 0.0), zoom=4)  # 96-pixel window pushed to the top-right corner
    assert (box.top, box.left, box.height, box.width) == (0, 104, 96, 96)
    small = crop_box((20, 30, 3), (0.5, 0.5), zoom=1)
    assert (small.top, small.left, small.height, small.width) == (0, 0, 20, 30)
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    assert zoomed(image, crop_box(image.shape, (0.5, 0.5), zoom=8), 8).shape == (160, 240, 3)
    with pytest.raises(ValueError, match="zoom must be between 1 and 8"):
        crop_box((10, 10), (0.5, 0.5), zoom=9)


def test_without_data_the_examples_say_how_to_get_the_benchmarks(tmp_path: Path) -> None:
    import gradio as gr

    from demo import compare

    with gr.Blocks() as blocks:
        compare.build_tab(tmp_path / "no-data")
    assert "Set5, Set14 and BSD100 too once `python -m srgan_core.data download`" in str(blocks.get_config_file())
    outputs = compare.choose_example("Set5 / baby", HR_MODE, 50, 50, 4, tmp_path / "no-data")
    assert outputs[0] is None and "python -m srgan_core.data download" in outputs[5]


def test_a_damaged_benchmark_example_says_how_to_replace_it(tmp_path: Path) -> None:
    from demo import compare

    (tmp_path / "benchmarks" / "Set5").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "benchmarks" / "Set5" / "baby.png")
    (tmp_path / "benchmarks" / "Set5" / "baby.png").write_bytes((tmp_path / "benchmarks" / "Set5" / "baby.png").read_bytes()[:60])
    outputs = compare.choose_example("Set5 / baby", HR_MODE, 50, 50, 4, tmp_path)
    assert outputs[0] is None and f"python -m srgan_core.data download --check --to {tmp_path}" in outputs[5]


def test_the_footer_says_where_weights_and_data_come_from(tmp_path: Path) -> None:
    import app

    assert "results/models/*.safetensors" in app.footer(None) and "git checkout -- " in app.footer(None)
    assert "`python -m srgan_core.data download`" in app.footer(tmp_path)  # no benchmarks there
    (tmp_path / "benchmarks").mkdir()
    assert f"read from `{tmp_path / 'benchmarks'}`" in app.footer(tmp_path)


def test_the_knob_says_what_it_blends_or_why_it_cannot(models_dir: Path) -> None:
    from demo.compare import knob_explained
    from tests.test_methods import write_fine_tuned

    write_fine_tuned(models_dir, Generator())
    assert "(1 - alpha) x srresnet-mse at 100 iterations + alpha x srgan-vgg54" in knob_explained(methods.knob_problem())
    (models_dir / "starts" / "srresnet-mse-100.safetensors").unlink()
    unavailable = knob_explained(methods.knob_problem())
    assert "**Unavailable here**: the srresnet-mse weights srgan-vgg54 was fine-tuned from" in unavailable


@pytest.mark.parametrize("mode", [HR_MODE, LR_MODE])
@pytest.mark.parametrize("size", [(2048, 2048), (1023, 770), (600, 41), (300, 300), (64, 33)])
def test_the_outline_before_compare_has_the_size_the_outputs_will_have(mode: str, size: tuple[int, int]) -> None:
    image = np.zeros((*size, 3), np.uint8)
    assert output_shape(*size, mode) == tuple(4 * side for side in prepare(image, mode).lr.shape[:2])


def test_a_new_image_stops_runs_on_the_old_one_and_each_run_redraws_at_the_current_window(tmp_path: Path) -> None:
    blocks = create_app(None, tmp_path / "study.sqlite", None, tmp_path / "results")
    deps = blocks.config["dependencies"]
    named = {d["api_name"]: d for d in deps}
    runs = {named["compare_run"]["id"], named["compare_knob"]["id"]}
    for loading in ("compare_load_file", "compare_load_example"):  # Gradio cancels through a twin event on the same trigger
        assert any(set(d["cancels"]) >= runs and d["targets"] == named[loading]["targets"] for d in deps), loading
    for run in runs:  # a run drew at the window of its start: the views are redrawn where the window is now
        (after,) = [d for d in deps if d["trigger_after"] == run]
        assert blocks.fns[after["id"]].name == "update_views"
