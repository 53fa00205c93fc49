"""The Results tab: which studies it lists, what it shows of a report, and the tab served by Gradio."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from demo import results

REPORT = """# MOS study `alpha`

| Method | MOS |
|---|---|
| bicubic | 2.00 |

![alpha: distribution of scores per method](fig5_Set5.png)

![a figure that was not written](missing.png)

![outside the folder](../beta/fig.png)
"""


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    alpha = tmp_path / "study" / "alpha"
    alpha.mkdir(parents=True)
    (alpha / "report.md").write_text(REPORT)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(alpha / "fig5_Set5.png")
    (tmp_path / "study" / "beta").mkdir()  # a study folder without a report yet
    (tmp_path / "study" / "zeta").mkdir()
    (tmp_path / "study" / "zeta" / "report.md").write_text("# MOS study `zeta`\n")
    return tmp_path


def test_lists_only_studies_with_a_report(results_dir: Path, tmp_path: Path):
    assert results.list_studies(results_dir) == ["alpha", "zeta"]
    assert results.list_studies(tmp_path / "nowhere") == []


def test_report_tables_and_figures(results_dir: Path):
    markdown, figures = results.load_report(results_dir, "alpha")
    assert "| bicubic | 2.00 |" in markdown
    assert "fig5_Set5.png" not in markdown and "missing.png" not in markdown
    assert "../beta/fig.png" in markdown  # not a figure of this study: left as text, never opened
    assert [caption for _, caption in figures] == ["alpha: distribution of scores per method", "a figure that was not written"]
    assert figures[0][0] == results_dir / "study" / "alpha" / "fig5_Set5.png"
    page = results.report_html(markdown, figures)
    assert '<div class="table-scroll"><table>' in page and "<th>MOS</th>" in page
    assert page.count('<img src="data:image/png;base64,') == 1 and 'alt="alpha: distribution' in page
    assert "Figure <em>a figure that was not written</em> cannot be shown: missing.png was not written." in page


def test_html_in_a_report_is_shown_as_text(results_dir: Path):
    page = results.report_html("| Rater |\n|---|\n| <script>alert(1)</script> |\n", [])
    assert "<script>" not in page and "&lt;script&gt;" in page
    page = results.report_html("![outside the folder](../beta/fig.png) [a link](http://example.com)", [])
    assert "<img" not in page and "<a " not in page and "../beta/fig.png" in page


def test_the_tab_follows_the_apps_study_database(results_dir: Path, tmp_path: Path):
    from tests.test_study_store import make_study

    db = tmp_path / "elsewhere" / "study.sqlite"
    make_study(db, name="alpha")
    make_study(db, name="gamma")
    markdown, _ = results.load_report(results_dir, "alpha", db)
    out = results_dir / "study" / "gamma"
    assert f"Study `gamma` of `{db}` has no report yet: `python -m study.analyze --db {db} --study gamma --out {out}`" in markdown
    assert "alpha` of" not in markdown  # it has a report
    report = results_dir / "study" / "alpha" / "report.md"
    report.write_text(f"# MOS study `alpha`\n\nRatings from `{tmp_path / 'other.sqlite'}` (sha256 ...)\n")
    markdown, _ = results.load_report(results_dir, "alpha", db)
    assert markdown.startswith(f"> This report was made from `{tmp_path / 'other.sqlite'}`; this app's study database is `{db}`")
    assert f"To report on it: `python -m study.analyze --db {db} --study alpha" in markdown
    zeta = results_dir / "study" / "zeta" / "report.md"  # a study the app's database does not hold
    zeta.write_text(f"# MOS study `zeta`\n\nRatings from `{tmp_path / 'ratings.csv'}` (sha256 ...)\n")
    markdown, _ = results.load_report(results_dir, "zeta", db)
    assert f"this app's study database is `{db}`. It holds no study `zeta`." in markdown and "--study zeta" not in markdown
    report.write_text(f"# MOS study `alpha`\n\nRatings from `{db}` (sha256 ...)\n")
    assert "This report was made from" not in results.load_report(results_dir, "alpha", db)[0]
    markdown, _ = results.load_report(tmp_path / "no-results", None, db)
    assert markdown.startswith("No study reports yet") and "Study `alpha` of" in markdown
    assert results.load_report(results_dir, "alpha", tmp_path / "absent.sqlite")[0].count("no report yet") == 0


def test_figures_stay_in_place_and_a_bad_file_is_named_not_fatal(results_dir: Path, tmp_path: Path):
    from tests.test_study_store import make_study

    alpha = results_dir / "study" / "alpha"
    (alpha / "report.md").write_text("# MOS study `alpha`\n\n## Set5\n\n![scores on Set5](fig5_Set5.png)\n\n## Notes\n\n"
                                     "See <https://example.com>.\n\n![a broken figure](broken.png)\n\n```\n![quoted](fig5_Set5.png)\n```\n")
    (alpha / "broken.png").write_bytes(b"not a png")
    db = tmp_path / "db" / "study.sqlite"
    make_study(db, name="gamma")
    make_study(db, name="delta")
    markdown, figures = results.load_report(results_dir, "alpha", db)
    assert markdown.index("`delta`") < markdown.index("`gamma`") < markdown.index("# MOS study")  # notes first,
    assert "no report yet: " in markdown.split("\n\n")[0] and "no report yet: " in markdown.split("\n\n")[1]  # each its own
    page = results.report_html(markdown, figures)
    assert page.index("<h2>Set5</h2>") < page.index("<figure>") < page.index("<h2>Notes</h2>")  # where the report put it
    assert "Figure <em>a broken figure</em> cannot be shown: not a PNG file." in page and page.count("<figure>") == 1
    assert "<a " not in page and "https://example.com" in page  # an autolink is text too
    assert "<code>![quoted](fig5_Set5.png)\n</code>" in page  # a figure line quoted in a code block stays text
    (alpha / "report.md").write_bytes("# MOS study `alpha` \u2014 r\u00e9sum\u00e9\n".encode("latin-1", "replace"))
    markdown, figures = results.load_report(results_dir, "alpha")
    assert markdown.startswith("The report of study `alpha` cannot be read") and figures == []
    assert results.list_studies(results_dir) == ["alpha", "zeta"]  # the other reports stay reachable


def test_unknown_or_forged_study_names(results_dir: Path, tmp_path: Path):
    for name in ["beta", "../alpha", "/etc", None]:
        markdown, figures = results.load_report(results_dir, name)
        assert markdown == "Choose a study: alpha, zeta." and figures == []
    markdown, _ = results.load_report(tmp_path / "empty", "alpha")
    assert markdown.startswith("No study reports yet")


def test_tab_serves_the_latest_report(results_dir: Path):
    from gradio_client import Client

    with gr.Blocks() as demo:
        with gr.Tab("Results"):
            results.build_tab(results_dir)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        dropdown, page = client.predict(None, api_name="/results_refresh")
        assert dropdown["value"] == "alpha" and [c[1] for c in dropdown["choices"]] == ["alpha", "zeta"]
        assert "<td>bicubic</td>" in page and page.count("<img ") == 1
        (results_dir / "study" / "zeta" / "report.md").write_text("# MOS study `zeta`\n\nrerun\n")
        page = client.predict("zeta", api_name="/results_show")
        assert "rerun" in page and "<img " not in page
    finally:
        demo.close()


CHROMIUM = Path("/usr/bin/chromium")
WIDE = "| " + " | ".join(["Method", "MOS", "std", "95 % CI (t)", "95 % CI (bootstrap)", "95 % CI (raters resampled)", "Ratings", "Raters", "Images",
                          "PSNR [dB]", "SSIM", "NIQE", "Paper PSNR", "Paper SSIM", "Paper MOS"]) + " |"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_tab_in_chromium_has_whole_figures_and_unbroken_headers(results_dir: Path):
    """At 1366x768: a wide table's headers stay on one line (no "MO S") and a wide figure is shown whole."""
    sync_api = pytest.importorskip("playwright.sync_api")
    alpha = results_dir / "study" / "alpha"
    row = "| srresnet-mse | 2.76 | 0.74 | [2.60, 2.91] | [2.65, 2.95] | [2.41, 3.08] | 90 | 18 | 5 | 28.43 | 0.8211 | 7.12 | 32.05 | 0.9019 | 3.37 |"
    (alpha / "report.md").write_text(f"# MOS study `alpha`\n\n{WIDE}\n|{'---|' * 15}\n{row}\n\n![wide](fig5_Set5.png)\n")
    Image.new("RGB", (2400, 500), (10, 200, 10)).save(alpha / "fig5_Set5.png")
    with gr.Blocks() as demo:
        with gr.Tab("Results"):
            results.build_tab(results_dir)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.goto(demo.local_url)
                figure = page.locator(".results-report figure img")
                sync_api.expect(figure).to_have_count(1, timeout=60_000)
                page.wait_for_function("() => document.querySelector('.results-report figure img').complete")
                headers = page.locator(".results-report th").evaluate_all(
                    "cells => cells.map(c => [c.innerText, c.getClientRects().length, c.getBoundingClientRect().height])"
                )
                one_line = min(height for _, _, height in headers)
                assert [text for text, _, _ in headers] == WIDE.strip("| ").split(" | ")
                assert all(height == one_line for _, _, height in headers), headers
                shown = figure.evaluate(
                    "img => { const r = img.getBoundingClientRect(); const box = img.closest('.results-report').getBoundingClientRect();"
                    " return [r.width, r.height, img.naturalWidth, img.naturalHeight, r.left >= box.left && r.right <= box.right]; }"
                )
                width, height, natural_w, natural_h, inside = shown
                assert inside and natural_w == 2400 and width < 1366  # scaled down to fit, not cropped
                assert height / width == pytest.approx(natural_h / natural_w, rel=0.01)
            finally:
                browser.close()
    finally:
        demo.close()
