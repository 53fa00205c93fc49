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
    assert [caption for _, caption in figures] == ["alpha: distribution of scores per method"]
    assert figures[0][0].size == (40, 30)


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
        dropdown, markdown, gallery = client.predict(None, api_name="/results_refresh")
        assert dropdown["value"] == "alpha" and [c[1] for c in dropdown["choices"]] == ["alpha", "zeta"]
        assert "| bicubic | 2.00 |" in markdown and len(gallery) == 1
        (results_dir / "study" / "zeta" / "report.md").write_text("# MOS study `zeta`\n\nrerun\n")
        markdown, gallery = client.predict("zeta", api_name="/results_show")
        assert "rerun" in markdown and gallery == []
    finally:
        demo.close()
