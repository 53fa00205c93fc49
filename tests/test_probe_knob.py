"""The knob probe: each alpha-0 end's blends scored, the app's series first, blends worse than both ends named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from srgan_core.evaluate import dataset_means, generator_upscale
from srgan_core.models import Generator
from tests.test_methods import write_fine_tuned
from tests.test_models import randomise_batchnorm
from tools import probe_knob as probe


def random_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    generator = Generator()
    randomise_batchnorm(generator)
    return generator.eval()


def table_rows(text: str, dataset: str) -> list[list[str]]:
    section = text.split(f"## {dataset}\n")[1].split("\n## ")[0]
    return [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ") and not line.startswith("| A ")]


def test_both_series_are_scored_and_the_start_series_is_the_apps(models_dir: Path, tiny_set5: Path) -> None:
    start = random_generator(1)
    write_fine_tuned(models_dir, start)
    save_file(random_generator(2).state_dict(), str(models_dir / "srresnet-mse.safetensors"))
    out = models_dir / "report" / "knob.md"
    assert probe.main(["--alphas", "1", "0", "0.5", "--datasets", "Set5", "--data-root", str(tiny_set5), "--out", str(out)]) == 0
    text = out.read_text()
    rows = table_rows(text, "Set5")
    assert [(r[0], r[1]) for r in rows] == [(e, a) for e in (probe.START, probe.SHIPPED) for a in ("0.00", "0.50", "1.00")]
    alone = dataset_means(generator_upscale(start), ["Set5"], tiny_set5)["Set5"]
    assert rows[0][2] == f"{alone['psnr']:.2f}" and rows[0][5] == f"{alone['grid']:.2f}"  # alpha 0 is the start itself
    assert rows[2][2:] == rows[5][2:]  # alpha 1 is srgan-vgg54 whichever the other end
    assert text.startswith("# The perception-distortion knob") and "python -m tools.probe_knob --alphas 1 0 0.5" in text
    assert "starts/srresnet-mse-100.safetensors" in text


def test_without_both_ends_no_verdict_is_given(models_dir: Path, tiny_set5: Path) -> None:
    write_fine_tuned(models_dir, random_generator(1))
    out = models_dir / "knob.md"
    assert probe.main(["--alphas", "0.5", "--datasets", "Set5", "--data-root", str(tiny_set5), "--out", str(out)]) == 0
    assert "- Not judged: it needs alpha 0 and 1 scored." in out.read_text() and "- None." not in out.read_text()


def test_one_series_when_the_shipped_base_is_the_start(models_dir: Path, tiny_set5: Path) -> None:
    copy = write_fine_tuned(models_dir, random_generator(1))
    (models_dir / "srresnet-mse.safetensors").write_bytes(copy.read_bytes())
    assert list(probe.alpha_zero_ends()) == [probe.START]


def test_a_blend_below_both_ends_is_named() -> None:
    rows = pd.DataFrame(
        {"end": ["a"] * 3 + ["b"] * 3, "alpha": [0.0, 0.5, 1.0] * 2, "Set5 psnr": [30.0, 29.0, 28.0, 31.0, 25.0, 28.0]}
    )
    assert probe.below_both_ends(rows, "Set5") == [
        "- Set5, A = b: PSNR 25.00 dB at alpha 0.5, below both ends (31.00 at 0, 28.00 at 1)."
    ]


def test_bad_alphas_and_a_missing_start_are_refused(models_dir: Path) -> None:
    with pytest.raises(SystemExit, match="alphas must lie in"):
        probe.main(["--alphas", "0", "1.5"])
    with pytest.raises(SystemExit, match="cannot be read"):
        probe.main([])
