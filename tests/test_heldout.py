"""tools.heldout: the held-out images written and scored as evaluate --folders scores them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from srgan_core.images import load_image
from tools import heldout


def test_heldout_writes_the_sets_and_scores_them(tmp_path: Path) -> None:
    out = tmp_path / "report"
    heldout.main(["--methods", "bicubic", "--images-to", str(tmp_path / "images"), "--out", str(out), "--no-niqe"])
    for name, images in heldout.HELD_OUT.items():
        assert sorted(p.stem for p in (tmp_path / "images" / name).iterdir()) == sorted(images)
    gravel = load_image(tmp_path / "images" / "textures" / "gravel.png")
    assert gravel.shape[2] == 3 and (gravel[..., 0] == gravel[..., 2]).all()  # a grey texture, stored as RGB
    astronaut = load_image(tmp_path / "images" / "photos" / "astronaut.png")
    assert np.abs(astronaut[..., 0].astype(int) - astronaut[..., 2]).mean() > 10  # a colour photo stays in colour
    per_image = pd.read_csv(out / "benchmarks_per_image.csv")
    assert per_image.groupby("dataset").image.count().to_dict() == {n: len(i) for n, i in heldout.HELD_OUT.items()}
    report = (out / "benchmarks.md").read_text()
    assert report.startswith("# Held-out images (4x)\n") and "# Benchmarks" not in report
    assert f"`python -m srgan_core.evaluate --methods bicubic --folders {tmp_path}/images/photos" in report
    assert "### photos" in report and "### textures" in report and "| bicubic |" in report
