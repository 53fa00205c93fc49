"""End to end in real headless Chromium: upload an image, pick the crop by clicking, compare, screenshot."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from demo.crops import VIEW, crop_box
from demo.inputs import HR_MODE, LR_MODE
from srgan_core.methods import list_methods
from tests.test_app_compare import running_app

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# The README's picture; `SRGAN_RECORD_RESULTS=1 python -m pytest tests/test_app_browser.py` refreshes the committed one.
SCREENSHOT = Path("figures") / "app_compare.png"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_upload_click_and_compare_in_chromium(tmp_path: Path, results_dir: Path) -> None:
    screenshot = results_dir / SCREENSHOT
    photo = tmp_path / "astronaut.png"
    Image.fromarray(np.ascontiguousarray(skdata.astronaut()[16:272, 96:352])).save(photo)
    shown = [info.name for info in list_methods() if info.available] + ["original"]
    with running_app(tmp_path, random_weights=()) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.locator("#compare-upload input[type=file]").set_input_files(str(photo))
            status = page.locator("#compare-status")
            sync_api.expect(status).to_contain_text("Loaded astronaut.png (256x256)", timeout=30_000)
            # A click on the input image moves the crop there: the left part of the face, near the top.
            page.locator("#compare-preview img").click(position=_at(page, "#compare-preview img", 0.35, 0.3))
            crop_x = page.locator("#compare-crop-x input[type=number]")
            sync_api.expect(crop_x).to_have_value(re.compile(r"3[3-7](\.\d)?"), timeout=20_000)
            page.locator("#compare-run").click()
            sync_api.expect(status).to_contain_text("outputs 256x256", timeout=120_000)
            gallery = page.locator("#compare-gallery img")
            sync_api.expect(gallery).to_have_count(len(shown), timeout=30_000)
            for name in shown:
                sync_api.expect(page.locator("#compare-gallery")).to_contain_text(name)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            # Everything from the top of the page down to the per-method table.
            # In whole pixels: the table's bottom can fall between two, and Chromium rounds a fractional clip its own way.
            bottom = page.locator("#compare-table").evaluate("e => Math.ceil(e.getBoundingClientRect().bottom + window.scrollY)")
            clip = {"x": 0, "y": 0, "width": 1400, "height": bottom + 16}
            page.screenshot(path=str(screenshot), full_page=True, clip=clip)
        finally:
            browser.close()
    assert Image.open(screenshot).size == (1400, bottom + 16)


def _at(page, selector: str, fx: float, fy: float) -> dict[str, float]:
    """A click position at fractions of the picture drawn inside an <img> (drawn centred, never enlarged).

    Waits until the picture has loaded: before that its natural size reads 0."""
    page.wait_for_function(
        "sel => { const img = document.querySelector(sel); return img && img.complete && img.naturalWidth > 0; }",
        arg=selector, timeout=30_000,
    )
    width, height, natural_w, natural_h = page.locator(selector).evaluate(
        "img => [img.clientWidth, img.clientHeight, img.naturalWidth, img.naturalHeight]"
    )
    scale = min(width / natural_w, height / natural_h, 1)  # Gradio never enlarges the picture
    left, top = (width - natural_w * scale) / 2, (height - natural_h * scale) / 2
    return {"x": left + natural_w * scale * fx, "y": top + natural_h * scale * fy}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium on one app with random weights for the knob's two ends (fast; what is drawn is tested)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    with running_app(tmp_path_factory.mktemp("browser-app")) as url, sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium, url
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page (and so a fresh app session) per test."""
    chromium, url = browser
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    yield page
    context.close()


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(np.ascontiguousarray(skdata.astronaut()[16:272, 96:352])).save(path)  # 256x256: 64x64 LR
    return path


def upload(page, path: Path, expected: str) -> None:
    page.locator("#compare-upload input[type=file]").set_input_files(str(path))
    sync_api.expect(page.locator("#compare-status")).to_contain_text(expected, timeout=30_000)


def compare(page) -> None:
    page.locator("#compare-run").click()
    sync_api.expect(page.locator("#compare-status")).to_contain_text("Low-resolution input", timeout=120_000)


def preview_pixels(page) -> np.ndarray:
    """The preview picture as the browser got it (waits for the outlined one to arrive)."""
    page.wait_for_function(
        "() => { const img = document.querySelector('#compare-preview img'); return img && img.complete && img.naturalWidth > 0; }",
        timeout=30_000,
    )
    src = page.locator("#compare-preview img").get_attribute("src")
    return np.asarray(Image.open(__import__("io").BytesIO(page.request.get(src).body())).convert("RGB"))


def outline(pixels: np.ndarray, photo: Path) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of what was drawn over the photo (the outline: far from the photo's colours)."""
    drawn = np.abs(pixels.astype(int) - np.asarray(Image.open(photo).convert("RGB"), dtype=int)).max(axis=2) > 80
    ys, xs = np.nonzero(drawn)
    assert len(ys), "no outline on the preview"
    return ys.min(), xs.min(), ys.max(), xs.max()


def test_gallery_draws_every_crop_at_its_own_size_with_the_caption_below(page, photo_file: Path) -> None:
    upload(page, photo_file, "Loaded astronaut.png")
    compare(page)
    images = page.locator("#compare-gallery img")
    sync_api.expect(images).to_have_count(5, timeout=30_000)  # nearest, bicubic, two learned, original
    page.wait_for_function("() => [...document.querySelectorAll('#compare-gallery img')].every(i => i.complete && i.naturalWidth)")
    drawn = images.evaluate_all("imgs => imgs.map(i => [i.clientWidth, i.clientHeight, i.naturalWidth, i.naturalHeight])")
    assert all(shown == (VIEW, VIEW, VIEW, VIEW) for shown in map(tuple, drawn))  # 96 px window at 4x, not shrunk
    for item in page.locator("#compare-gallery .thumbnail-item").all():
        image = item.locator("img").bounding_box()
        caption = item.locator(".caption-label").bounding_box()
        assert caption["y"] >= image["y"] + image["height"] - 0.5  # under the crop, not over it


def test_the_preview_outlines_the_window_every_view_shows(page, photo_file: Path) -> None:
    upload(page, photo_file, "Loaded astronaut.png")
    top, left, bottom, right = outline(preview_pixels(page), photo_file)
    box = crop_box((256, 256), (0.5, 0.5), 4)  # the default centre and zoom: a 96-pixel window in the middle
    assert abs(top - box.top) <= 3 and abs(left - box.left) <= 3
    assert abs(bottom - (box.top + box.height)) <= 3 and abs(right - (box.left + box.width)) <= 3
    # Typing a number and pressing Enter moves it (no need to leave the field).
    number = page.locator("#compare-crop-x input[type=number]")
    before = page.locator("#compare-preview img").evaluate("e => e.src")  # read first: the new preview may arrive at once
    number.fill("10")
    number.press("Enter")
    page.wait_for_function("old => document.querySelector('#compare-preview img').src !== old", arg=before, timeout=30_000)
    assert number.evaluate("e => document.activeElement !== e")
    _, moved_left, _, moved_right = outline(preview_pixels(page), photo_file)
    assert moved_left <= 3 and abs(moved_right - 96) <= 3  # 10 % of 256 is 26: the window stops at the left edge


def test_clearing_the_upload_clears_preview_status_and_results(page, photo_file: Path) -> None:
    upload(page, photo_file, "Loaded astronaut.png")
    compare(page)
    sync_api.expect(page.locator("#compare-gallery img")).to_have_count(5, timeout=30_000)
    page.locator("#compare-upload button[aria-label='Clear']").click()
    sync_api.expect(page.locator("#compare-status")).to_contain_text("No image loaded", timeout=30_000)
    sync_api.expect(page.locator("#compare-preview img")).to_have_count(0)
    sync_api.expect(page.locator("#compare-gallery img")).to_have_count(0)
    page.locator("#compare-run").click()
    sync_api.expect(page.locator("#compare-status")).to_contain_text("Upload an image or pick an example first")


def test_a_bad_file_says_why_in_the_status_without_error_badges(page, photo_file: Path, tmp_path: Path) -> None:
    upload(page, photo_file, "Loaded astronaut.png")
    compare(page)
    page.locator("#compare-upload button[aria-label='Clear']").click()  # (the file box takes one file at a time)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"just text")
    upload(page, fake, "fake.png is not an image")
    assert page.locator(".error").count() == 0  # Gradio's red "Error" badges (on the status, preview, examples)
    sync_api.expect(page.locator("#compare-preview img")).to_have_count(0)
    sync_api.expect(page.locator("#compare-gallery img")).to_have_count(0)  # the old results are gone


def test_a_new_image_stops_a_comparison_still_running_on_the_old_one(page, photo_file: Path, tmp_path: Path, monkeypatch) -> None:
    """Otherwise the old comparison's table, gallery and downloads come back beside the new image's preview."""
    from demo import compare as compare_tab

    load_method = compare_tab.load_method

    class Slow:  # every method takes 2 s more, so the run is still going when the next image comes
        def __init__(self, upscaler) -> None:
            self.upscaler, self.name, self.precision = upscaler, upscaler.name, upscaler.precision

        def upscale(self, lr: np.ndarray, *args, **kwargs) -> np.ndarray:
            __import__("time").sleep(2)
            return self.upscaler.upscale(lr, *args, **kwargs)

    monkeypatch.setattr(compare_tab, "load_method", lambda *args, **kwargs: Slow(load_method(*args, **kwargs)))
    upload(page, photo_file, "Loaded astronaut.png")
    page.locator("#compare-run").click()
    status = page.locator("#compare-status")
    sync_api.expect(status).to_contain_text("methods done", timeout=60_000)
    page.locator("#compare-upload button[aria-label='Clear']").click()
    other = tmp_path / "grey.png"
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(other)
    upload(page, other, "Loaded grey.png")
    page.wait_for_timeout(12_000)  # longer than the rest of the old run would have taken
    sync_api.expect(status).to_contain_text("Loaded grey.png")
    sync_api.expect(page.locator("#compare-gallery img")).to_have_count(0)
    assert page.locator("#compare-table").inner_text().count("ok") == 0


def test_an_automatic_switch_of_mode_is_for_its_image_only_and_the_users_own_choice_is_kept(page, photo_file: Path, tmp_path: Path) -> None:
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((31, 200, 3), 90, np.uint8)).save(strip)  # too short to downscale as a photo
    checked = page.locator("#compare-mode input:checked")
    upload(page, strip, "upscaled as the low-resolution input")
    sync_api.expect(checked).to_have_value(LR_MODE, timeout=30_000)
    clear_upload(page)
    upload(page, photo_file, "Loaded astronaut.png")
    sync_api.expect(checked).to_have_value(HR_MODE, timeout=30_000)  # the switch was for the strip
    clear_upload(page)
    upload(page, strip, "upscaled as the low-resolution input")
    for mode in (HR_MODE, LR_MODE):  # the user picks the mode the app had switched to, themselves
        before = page.locator("#compare-preview img").evaluate("e => e.src")
        page.locator(f"#compare-mode input[value='{mode}']").check()
        # Done once the preview is outlined for it (the window is another part of the strip in each mode).
        page.wait_for_function("old => document.querySelector('#compare-preview img').src !== old", arg=before, timeout=30_000)
    clear_upload(page)
    upload(page, photo_file, "Loaded astronaut.png")
    sync_api.expect(checked).to_have_value(LR_MODE, timeout=30_000)


def clear_upload(page) -> None:
    """Empty the upload box and wait until the app has (the next upload reads the mode that clearing restores)."""
    page.locator("#compare-upload button[aria-label='Clear']").click()
    sync_api.expect(page.locator("#compare-status")).to_contain_text("No image loaded", timeout=30_000)


def test_a_typed_zoom_or_crop_the_views_cannot_use_shows_as_the_one_they_use(page, photo_file: Path) -> None:
    upload(page, photo_file, "Loaded astronaut.png")
    preview = page.locator("#compare-preview img")
    for control, typed, used in [("zoom", "9", "8"), ("zoom", "2.5", "3"), ("crop-x", "150", "100"), ("zoom", "", "1")]:
        number = page.locator(f"#compare-{control} input[type=number]")
        before = preview.evaluate("e => e.src")
        number.fill(typed)
        number.press("Enter")
        # The views moved (they stay where they were when the number is refused), and the number is the one they use.
        page.wait_for_function("old => document.querySelector('#compare-preview img').src !== old", arg=before, timeout=30_000)
        sync_api.expect(number).to_have_value(used, timeout=30_000)
    assert page.locator(".error").count() == 0  # Gradio's red "Error" badges


def test_a_file_without_an_extension_is_read_by_the_app(page, photo_file: Path, tmp_path: Path) -> None:
    """The page itself refused it with an error toast, by its name, when the upload box took images only."""
    nameless = tmp_path / "photo"
    nameless.write_bytes(photo_file.read_bytes())
    upload(page, nameless, "Loaded photo (256x256)")
    assert page.locator(".error").count() == 0
