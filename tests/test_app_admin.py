"""The study admin view is apart from raters in the Gradio app: the rating page (`app.py --rate-only`, as
Chromium shows it) has no admin element and no "Use via API" link; in the full app the admin view is a tab
of its own, there only with an admin token, and a short admin token is refused at start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import app
from srgan_core.paths import REPO_ROOT
from tests.test_rate_app import CHROMIUM, CHROMIUM_ARGS, free_port

TOKEN = "a-long-enough-admin-token"


def _labels_under(config: dict, tab_label: str) -> list[str]:
    """Labels (and ids) of every component inside the tab labelled `tab_label`."""
    components = {c["id"]: c for c in config["components"]}
    found: list[str] = []

    def walk(node: dict, inside: bool) -> None:
        props = components.get(node["id"], {}).get("props", {})
        inside = inside or (components.get(node["id"], {}).get("type") == "tabitem" and props.get("label") == tab_label)
        if inside:
            found.extend(str(props[k]) for k in ("label", "elem_id", "value") if props.get(k))
        for child in node.get("children", []):
            walk(child, inside)

    walk(config["layout"], False)
    return found


def test_full_app_has_the_admin_view_in_its_own_tab_only_with_a_token(tmp_path: Path) -> None:
    with_token = app.create_app(None, tmp_path / "study.sqlite", TOKEN, tmp_path / "results").get_config_file()
    rate_tab = " ".join(_labels_under(with_token, "Rate")).lower()
    admin_tab = _labels_under(with_token, "Study admin")
    assert "rate-tab" in rate_tab and "admin" not in rate_tab
    assert "Admin token" in admin_tab and "study-admin" in admin_tab
    assert "rate_admin" in {d.get("api_name") for d in with_token["dependencies"]}
    without = app.create_app(None, tmp_path / "study.sqlite", None, tmp_path / "results").get_config_file()
    assert not _labels_under(without, "Study admin")
    assert "rate_admin" not in {d.get("api_name") for d in without["dependencies"]}  # no admin endpoint at all
    rate_only = app.create_app(None, tmp_path / "study.sqlite", TOKEN, tmp_path / "results", rate_only=True).get_config_file()
    assert "rate_admin" not in {d.get("api_name") for d in rate_only["dependencies"]}
    assert not any("admin" in str(c["props"].get("label", "")).lower() for c in rate_only["components"])


def test_a_short_admin_token_is_refused_at_start(capsys) -> None:
    with pytest.raises(SystemExit, match="at least 16"):
        app.main(["--admin-token", "short"])


def test_the_rating_page_in_chromium_has_no_admin_element_and_no_api_link(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    port = free_port()
    command = [sys.executable, "app.py", "--rate-only", "--port", str(port), "--study-db", str(tmp_path / "study.sqlite"),
               "--admin-token", TOKEN]
    url = f"http://127.0.0.1:{port}/"
    with open(tmp_path / "app.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            assert process.poll() is None, (tmp_path / "app.log").read_text()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"app.py did not answer at {url} within 600 tries:\n" + (tmp_path / "app.log").read_text())
        config = httpx.get(url + "config", timeout=30).json()
        assert config["footer_links"] == app.FOOTER_LINKS and "api" not in config["footer_links"]
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(url)
            page.wait_for_selector("#rate-tab", timeout=60_000)
            page.wait_for_selector("footer", timeout=60_000)
            footer = page.inner_text("footer")
            assert "Settings" in footer  # the footer is there: the check below can fail
            text, html = page.inner_text("body"), page.content()
            browser.close()
        assert "Use via API" not in text and "admin" not in text.lower()
        assert "Admin token" not in html and 'type="password"' not in html
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert "No admin view with --rate-only" in (tmp_path / "app.log").read_text()


def test_the_admin_tab_slows_down_a_client_after_three_wrong_tokens(tmp_path: Path) -> None:
    from tests.test_rate_app import Api, Refused

    blocks = app.create_app(None, tmp_path / "study.sqlite", TOKEN, tmp_path / "results")
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, run_history=False)
    try:
        with Api(blocks.local_url) as api:
            summary, *_ = api.raw("rate_admin", TOKEN, None)  # a database without a study yet says so
            assert summary.startswith("No study has been prepared yet")
            for _ in range(3):
                with pytest.raises(Refused, match="Wrong admin token"):
                    api.raw("rate_admin", "wrong-but-long-enough-token", None)
            with pytest.raises(Refused, match=r"too many wrong admin tokens: try again in \d+ s"):
                api.raw("rate_admin", TOKEN, None)  # even the right one waits now
    finally:
        blocks.close()
