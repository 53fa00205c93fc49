"""The figure CLI: training curves (with the GAN panel and learning-rate drops) and the method comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tools import figures


def write_log(path: Path, gan: bool) -> None:
    iterations = np.arange(10, 210, 10)
    log = pd.DataFrame({
        "iteration": iterations,
        "lr": np.where(iterations < 100, 1e-4, 1e-5),
        "loss_g": np.linspace(1.0, 0.5, len(iterations)),
        "loss_content": np.linspace(0.9, 0.4, len(iterations)),
        "d_real": np.full(len(iterations), 0.8) if gan else np.nan,
        "d_fake": np.full(len(iterations), 0.2) if gan else np.nan,
        "set5_psnr": np.where(iterations % 50 == 0, 28.0 + iterations / 100, np.nan),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    log.to_csv(path, index=False)


@pytest.mark.parametrize("gan, panels", [(False, 2), (True, 3)])
def test_curves_draw_a_discriminator_panel_only_for_gans(tmp_path: Path, gan: bool, panels: int, monkeypatch) -> None:
    log = tmp_path / "results" / "training" / "srgan-vgg54_log.csv"
    write_log(log, gan)
    drawn = {}
    monkeypatch.setattr(figures.plt.Figure, "savefig", lambda fig, out, **kw: drawn.update(fig=fig) or Path(out).touch())
    figures.plot_curves(log, tmp_path / "curves.png")
    fig = drawn["fig"]
    assert len(fig.axes) == panels
    assert fig._suptitle.get_text() == "srgan-vgg54"
    labels = fig.axes[1].get_legend_handles_labels()[1]
    assert labels.count("learning-rate change") == 1  # the drop is marked on the PSNR panel, with its new rate
    assert "1e-05" in [text.get_text() for text in fig.axes[1].texts]


def test_curves_plot_the_logged_artefacts_beside_psnr(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "srgan-vgg54_log.csv"
    write_log(log, gan=True)
    frame = pd.read_csv(log)
    validated = frame["set5_psnr"].notna()
    frame["set5_colour_shift"] = np.where(validated, 5.0, np.nan)
    frame["set5_grid"] = np.where(validated & (frame["iteration"] > 100), 2.0, np.nan)  # a column added mid-run
    frame.to_csv(log, index=False)
    drawn = {}
    monkeypatch.setattr(figures.plt.Figure, "savefig", lambda fig, out, **kw: drawn.update(fig=fig) or Path(out).touch())
    figures.plot_curves(log, tmp_path / "curves.png")
    twin = [ax for ax in drawn["fig"].axes if ax.get_ylabel().startswith("artefacts")]
    assert len(twin) == 1
    lines = {line.get_label(): line.get_ydata().tolist() for line in twin[0].lines}
    assert lines == {"Set5 colour shift": [5.0] * 4, "Set5 sub-pixel grid": [2.0] * 2}


def test_curves_write_a_png_and_refuse_an_empty_log(tmp_path: Path) -> None:
    log = tmp_path / "runs" / "srresnet-mse" / "log.csv"
    write_log(log, gan=False)
    assert figures.method_of_log(log) == "srresnet-mse"
    figures.main(["curves", str(log), "-o", str(tmp_path / "out" / "curves.png")])
    assert Image.open(tmp_path / "out" / "curves.png").size[0] > 500
    log.write_text(log.read_text().splitlines()[0] + "\n")
    with pytest.raises(SystemExit, match="no rows"):
        figures.plot_curves(log, tmp_path / "empty.png")


def test_comparison_shows_available_methods_and_reports_the_rest(tmp_path: Path, monkeypatch) -> None:
    real = figures.load_method

    def load(name: str):
        if name == "srgan-vgg54":
            raise figures.MethodUnavailable(f"{name}: no trained weights")
        return real(name)

    monkeypatch.setattr(figures, "load_method", load)
    out = tmp_path / "comparison.png"
    skipped = figures.plot_comparison("astronaut", (140, 40, 96), out, ["nearest", "bicubic", "srgan-vgg54"])
    assert len(skipped) == 1 and "srgan-vgg54" in skipped[0]
    assert Image.open(out).size[0] > 500
    with pytest.raises(SystemExit, match="outside"):
        figures.plot_comparison("astronaut", (480, 0, 96), out, ["bicubic"])
    with pytest.raises(SystemExit, match="--image"):
        figures.plot_comparison("lena", (0, 0, 96), out, ["bicubic"])


def test_comparison_wraps_many_methods_into_rows(tmp_path: Path) -> None:
    out = tmp_path / "comparison.png"
    figures.plot_comparison("astronaut", (140, 40, 32), out, ["nearest", "bicubic"] * 3)  # 6 methods + HR
    width, height = Image.open(out).size
    assert width == pytest.approx(figures.PANELS_PER_ROW * 2.6 * 110, abs=5) and height == pytest.approx(2 * 3.0 * 110, abs=5)


def test_comparison_adds_a_colour_fixed_panel_per_learned_method(tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import save_file

    from srgan_core import method_specs
    from srgan_core.models import Generator

    monkeypatch.setattr(method_specs, "MODELS_DIR", tmp_path)
    save_file(Generator().state_dict(), str(tmp_path / "srresnet-mse.safetensors"))
    widths = {}
    for fix in (False, True):
        out = tmp_path / f"fix-{fix}.png"
        figures.plot_comparison("astronaut", (140, 40, 32), out, ["bicubic", "srresnet-mse"], colour_fix=fix)
        widths[fix] = Image.open(out).size[0]
    assert widths[False] == pytest.approx(3 * 2.6 * 110, abs=5)  # bicubic, srresnet-mse, HR
    assert widths[True] == pytest.approx(4 * 2.6 * 110, abs=5)  # + srresnet-mse with the fix; bicubic needs none
