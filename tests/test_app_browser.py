"""End to end in real headless Chromium: upload an image, pick the crop by clicking, compare, screenshot."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

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
            bottom = page.locator("#compare-table").evaluate("e => e.getBoundingClientRect().bottom + window.scrollY")
            clip = {"x": 0, "y": 0, "width": 1400, "height": bottom + 16}
            page.screenshot(path=str(screenshot), full_page=True, clip=clip)
        finally:
            browser.close()
    assert Image.open(screenshot).size == (1400, round(bottom + 16))


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
