"""The "Results" tab: the latest `python -m study.analyze` report of a chosen study, tables and figures whole.

The tab follows the study database and the results folder the app was started with: it lists the reports
under ``<results dir>/study``, names the studies of the database that have no report yet (with the command
that writes one), and says when a report was made from another database than the app's.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import gradio as gr
from markdown_it import MarkdownIt

from study.ratings import read_study_names

FIGURE_LINE = re.compile(r"^!\[(?P<caption>[^\]]*)\]\((?P<file>[^)/\\]+\.png)\)\s*$")
FIGURE_MARK = "@figure-{}@"  # where a figure stood in the report: `report_html` puts it back there
SOURCE = re.compile(r"^Ratings from `(?P<source>[^`]+)`", re.MULTILINE)
Figures = list[tuple[Path, str]]
# Raw HTML, links and images in a report are shown as text: only the study's own figures are embedded.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table").disable(["image", "link", "autolink"])
# Tables scroll sideways instead of breaking words ("MO S"); figures keep their aspect and fit the width.
REPORT_CSS = """
.results-report .table-scroll { overflow-x: auto; max-width: 100%; }
.results-report th, .results-report td { overflow-wrap: normal; word-break: normal; hyphens: none; white-space: nowrap; }
.results-report figure { margin: 1em 0; }
.results-report figure img { display: block; max-width: 100%; height: auto; object-fit: contain; }
"""


def reports_dir(results_dir: Path) -> Path:
    """Where `python -m study.analyze` writes the reports: one folder per study under `results_dir/study`."""
    return Path(results_dir) / "study"


def list_studies(results_dir: Path) -> list[str]:
    """Names of the studies under `reports_dir` that have a report, sorted."""
    root = reports_dir(results_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "report.md").is_file())


def analyze_command(study: str, study_db: Path, results_dir: Path) -> str:
    return f"python -m study.analyze --db {study_db} --study {study} --out {reports_dir(results_dir) / study}"


def load_report(results_dir: Path, study: str | None, study_db: Path | None = None) -> tuple[str, Figures]:
    """The report's Markdown (each figure line replaced by `FIGURE_MARK`) and its figures with captions, in report
    order. With `study_db`, notes first: when the report was made from another database, and the database's studies
    that have no report yet."""
    studies = list_studies(results_dir)
    in_db = read_study_names(study_db) if study_db is not None else []
    waiting = _waiting(results_dir, study_db, in_db, studies)
    if not studies:
        command = analyze_command("NAME", study_db, results_dir) if study_db else f"python -m study.analyze --study NAME --out {reports_dir(results_dir)}/NAME"
        text = f"No study reports yet under `{reports_dir(results_dir)}`. Collect ratings, then run `{command}`."
        return "\n\n".join([text, *waiting]), []
    if study not in studies:
        return "\n\n".join([f"Choose a study: {', '.join(studies)}.", *waiting]), []
    folder = reports_dir(results_dir) / study
    try:
        report = (folder / "report.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return "\n\n".join([f"The report of study `{study}` cannot be read ({err}): run `study.analyze` again.", *waiting]), []
    text, figures, fenced = [], [], False
    for line in report.splitlines():
        fenced ^= line.lstrip().startswith(("```", "~~~"))
        match = None if fenced else FIGURE_LINE.match(line)
        if match is None:
            text.append(line)
        else:
            text.append(f"\n{FIGURE_MARK.format(len(figures))}\n")
            figures.append((folder / match["file"], match["caption"]))
    source = SOURCE.search(report)
    notes = list(waiting)
    if study_db is not None and source and Path(source["source"]).resolve() != Path(study_db).resolve():
        # a report made from a CSV may name a study the database lacks
        remedy = f"To report on it: `{analyze_command(study, study_db, results_dir)}`" if study in in_db else f"It holds no study `{study}`."
        notes.insert(0, f"> This report was made from `{source['source']}`; this app's study database is `{study_db}`. {remedy}")
    return "\n\n".join([*notes, "\n".join(text)]), figures


def _waiting(results_dir: Path, study_db: Path | None, in_db: list[str], reported: list[str]) -> list[str]:
    """A line per study of the database (`in_db`) without a report, with the command that writes it."""
    missing = [s for s in in_db if s not in reported]
    return [f"Study `{s}` of `{study_db}` has no report yet: `{analyze_command(s, study_db, results_dir)}`" for s in missing]


def report_html(markdown: str, figures: Figures) -> str:
    """The report as HTML: wide tables scroll, figures whole (embedded, at most the page's width)."""
    body = re.sub(r"(<table>.*?</table>)", r'<div class="table-scroll">\1</div>', _MARKDOWN.render(markdown), flags=re.S)
    left = []  # figures whose place the Markdown does not mark: after the report
    for k, (path, caption) in enumerate(figures):
        alt = html.escape(caption, quote=True)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data, problem = b"", f"{path.name} was not written"
        except OSError as err:
            data, problem = b"", str(err)
        else:
            problem = None if data.startswith(b"\x89PNG\r\n\x1a\n") else "not a PNG file"
        if problem:
            figure = f"<p>Figure <em>{alt}</em> cannot be shown: {html.escape(problem)}.</p>"
        else:
            figure = f'<figure><img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
        mark = f"<p>{FIGURE_MARK.format(k)}</p>"
        if mark in body:
            body = body.replace(mark, figure, 1)
        else:
            left.append(figure)
    return f'<div class="results-report">{body}{"".join(left)}</div>'


def build_tab(results_dir: Path, study_db: Path | None = None) -> None:
    """The tab's components and events; call inside `with gr.Tab("Results"):` of the app's Blocks, with the
    app's results folder and study database."""
    gr.Markdown(
        "MOS results of the rating study: completion and screening of the raters, MOS with confidence intervals "
        "next to PSNR / SSIM, significance tests, agreement and figures, as written by `python -m study.analyze` "
        f"into `{reports_dir(results_dir)}`."
    )
    with gr.Row():
        study = gr.Dropdown(choices=[], value=None, label="Study", scale=4)
        refresh = gr.Button("Refresh", scale=1)
    report = gr.HTML(css_template=REPORT_CSS, js_on_load=None, elem_id="results-report")

    def show(name: str | None) -> str:
        return report_html(*load_report(results_dir, name, study_db))

    def reload(current: str | None) -> tuple[gr.Dropdown, str]:
        studies = list_studies(results_dir)
        chosen = current if current in studies else (studies[0] if studies else None)
        return gr.Dropdown(choices=studies, value=chosen), show(chosen)

    gr.on(triggers=None, fn=lambda: reload(None), inputs=[], outputs=[study, report], api_name="results_load")
    refresh.click(reload, inputs=study, outputs=[study, report], api_name="results_refresh")
    study.input(show, inputs=study, outputs=report, api_name="results_show")
