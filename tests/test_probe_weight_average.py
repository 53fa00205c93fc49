"""The weight-averaging probe: snapshots of a run, scored one by one and averaged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from srgan_core.models import Generator
from tools import probe_weight_average as probe


def snapshots(folder: Path, iterations: list[int]) -> list[dict[str, torch.Tensor]]:
    folder.mkdir(parents=True, exist_ok=True)
    states = []
    for i in iterations:
        torch.manual_seed(i)
        generator = Generator()
        for module in generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.num_batches_tracked.fill_(i)
        state = generator.state_dict()
        save_file(state, str(folder / f"{i:07d}.safetensors"), metadata={"method": "srgan-vgg54", "iterations": str(i)})
        states.append(state)
    return states


def test_average_means_every_float_tensor_and_keeps_the_last_counter() -> None:
    a, b = ({"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(2)}, {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(7)})
    averaged = probe.average([a, b])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0])) and averaged["n"].item() == 7


def test_probe_scores_each_snapshot_and_the_averages_of_the_last_ones(tiny_set5: Path, tmp_path: Path) -> None:
    states = snapshots(tmp_path / "snaps", [50, 100, 150])
    out = tmp_path / "report.md"
    assert probe.main([str(tmp_path / "snaps"), "--windows", "2", "9", "--datasets", "Set5", "--data-root", str(tiny_set5), "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| weights")]
    assert [r.split(" | ")[0] for r in rows] == [
        "| snapshot 50", "| snapshot 100", "| snapshot 150", "| snapshots: mean (sd)",
        "| average of the last 2 (100-150)", "| average of the last 3 (50-150)",  # a window beyond the snapshots takes them all
    ]
    expected = probe.scores(probe.average(states[1:]), ["Set5"], tiny_set5)
    assert rows[4].split(" | ")[1] == f"{expected['Set5 psnr']:.2f}"  # the averaged weights themselves were scored
    single = probe.scores(states[0], ["Set5"], tiny_set5)
    assert rows[0].split(" | ")[4] == f"{single['Set5 grid']:.2f}"
    assert re.fullmatch(r"\d\.\d{4} \(\d\.\d{4}\)", rows[3].split(" | ")[2])  # SSIM's mean and sd both to 4 decimals
    assert text.startswith("# Averaging the recent weights of srgan-vgg54\n") and "python -m tools.probe_weight_average" in text


def test_probe_refuses_a_folder_without_two_snapshots_and_can_stop_at_an_iteration(tmp_path: Path) -> None:
    snapshots(tmp_path / "snaps", [50, 100, 150])
    with pytest.raises(SystemExit, match="not a folder of snapshots"):
        probe.main([str(tmp_path / "missing")])
    snapshots(tmp_path / "one", [50])
    (tmp_path / "one" / "notes.safetensors").write_text("not a snapshot")
    with pytest.raises(SystemExit, match="holds 1 snapshot"):
        probe.main([str(tmp_path / "one")])
    assert list(probe.snapshot_files(tmp_path / "snaps", up_to=100)) == [50, 100]


def test_a_window_of_no_snapshots_and_an_unknown_dataset_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for flags, said in ((["--windows", "0"], "1 or more"), (["--datasets", "Foo"], "invalid choice")):
        with pytest.raises(SystemExit):
            probe.main([str(tmp_path), *flags])
        assert said in capsys.readouterr().err
