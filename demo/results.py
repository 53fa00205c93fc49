"""The "Results" tab: the latest `python -m study.analyze` report of a chosen study, its tables and figures."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
from PIL import Image

FIGURE_LINE = re.compile(r"^!\[(?P<caption>[^\]]*)\]\((?P<file>[^)/\\]+\.png)\)\s*$")
Figures = list[tuple[Image.Image, str]]


def list_studies(results_dir: Path) -> list[str]:
    """Names of the studies under `results_dir/study` that have a report, sorted."""
    root = Path(results_dir) / "study"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "report.md").is_file())


def load_report(results_dir: Path, study: str | None) -> tuple[str, Figures]:
    """The report's Markdown (figure lines taken out) and its figures with captions, in report order."""
    studies = list_studies(results_dir)
    if not studies:
        return (
            f"No study reports yet under `{Path(results_dir) / 'study'}`. Collect ratings in the Rate tab, "
            "then run `python -m study.analyze --study NAME`.",
            [],
        )
    if study not in studies:
        return f"Choose a study: {', '.join(studies)}.", []
    folder = Path(results_dir) / "study" / study
    text, figures = [], []
    for line in (folder / "report.md").read_text(encoding="utf-8").splitlines():
        match = FIGURE_LINE.match(line)
        if match is None:
            text.append(line)
        elif (folder / match["file"]).is_file():
            with Image.open(folder / match["file"]) as image:
                figures.append((image.convert("RGB"), match["caption"]))
    return "\n".join(text), figures


def build_tab(results_dir: Path) -> None:
    """The tab's components and events; call inside `with gr.Tab("Results"):` of the app's Blocks."""
    gr.Markdown(
        "MOS results of the rating study: screening of the raters, MOS with confidence intervals next to "
        "PSNR / SSIM, significance tests and figures, as written by `python -m study.analyze`."
    )
    with gr.Row():
        study = gr.Dropdown(choices=[], value=None, label="Study", scale=4)
        refresh = gr.Button("Refresh", scale=1)
    report = gr.Markdown()
    gallery = gr.Gallery(label="Figures", format="png", columns=2, height="auto", interactive=False)

    def show(name: str | None) -> tuple[str, Figures]:
        return load_report(results_dir, name)

    def reload(current: str | None) -> tuple[gr.Dropdown, str, Figures]:
        studies = list_studies(results_dir)
        chosen = current if current in studies else (studies[0] if studies else None)
        return gr.Dropdown(choices=studies, value=chosen), *load_report(results_dir, chosen)

    gr.on(triggers=None, fn=lambda: reload(None), inputs=[], outputs=[study, report, gallery],
          api_name="results_load")
    refresh.click(reload, inputs=study, outputs=[study, report, gallery], api_name="results_refresh")
    study.input(show, inputs=study, outputs=[report, gallery], api_name="results_show")
