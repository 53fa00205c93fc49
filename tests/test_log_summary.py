"""The training-log summary the training notes quote: ranges and means over a resumed stretch of a log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tools import log_summary


def write_log(path: Path) -> pd.DataFrame:
    iterations = np.arange(10, 410, 10)
    log = pd.DataFrame({
        "iteration": iterations,
        "lr": np.where(iterations <= 200, 1e-4, 1e-5),
        "loss_content": iterations / 1000,
        "d_real": 0.4 + iterations * 1.1e-3,
        "d_fake": 0.6 - iterations * 1.1e-3,
        "set5_psnr": np.where(iterations % 100 == 0, 28.0 + iterations / 100, np.nan),
        "set5_grid": np.where(iterations % 100 == 0, iterations / 50, np.nan),
    })
    log.to_csv(path, index=False)
    return log


def test_summary_covers_only_the_rows_after_the_resume(tmp_path: Path, capsys) -> None:
    write_log(tmp_path / "log.csv")
    assert log_summary.main([str(tmp_path / "log.csv"), "--from", "200"]) == 0
    table = dict(line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines()[2:])
    assert table["log rows"] == "20 (iterations 210-400)"
    assert table["learning rate"] == "1e-05"
    # first 100 iterations after the resume: 210..300 -> mean 0.255; last 100: 310..400 -> 0.355
    assert table["content loss, first / last 100 iterations"] == "0.255 -> 0.355"
    assert table["D(x) over the log rows: mean (range)"] == "0.74 (0.63-0.84)"
    assert table["D(G(z)) over the log rows: mean (range)"] == "0.26 (0.16-0.37)"
    assert table["Set5 psnr at 2 validations: range (last)"] == "31.00-32.00 (32.00)"
    assert table["Set5 grid at 2 validations: range (last)"] == "6.00-8.00 (8.00)"
    assert not any(key.startswith("Set5 niqe") for key in table)  # a column the log lacks is left out


def test_summary_leaves_out_the_discriminator_for_a_generator_alone(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log.csv").assign(d_real=np.nan, d_fake=np.nan)
    rows = dict(log_summary.summarise(log, end=200))
    assert rows["log rows"] == "20 (iterations 10-200)"
    assert rows["learning rate"] == "0.0001"
    assert not any(key.startswith("D(") for key in rows)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("iteration,lr\n10,1e-4\n", "no d_fake, d_real, loss_content column"),
    ("", "not a training log CSV"),
])
def test_summary_refuses_what_is_not_a_log(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "log.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit, match=message):
        log_summary.main([str(path)])


def test_summary_refuses_an_empty_stretch(tmp_path: Path) -> None:
    write_log(tmp_path / "log.csv")
    with pytest.raises(SystemExit, match="no rows after iteration 400"):
        log_summary.main([str(tmp_path / "log.csv"), "--from", "400"])


def test_extract_writes_the_stretch_byte_for_byte_and_never_over_a_file(tmp_path: Path, capsys) -> None:
    write_log(tmp_path / "log.csv")
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert log_summary.main([str(tmp_path / "log.csv"), "--from", "200", "--to", "300", "--extract", str(tmp_path / "part.csv")]) == 0
    assert "wrote 10 rows" in capsys.readouterr().out
    assert (tmp_path / "part.csv").read_text().splitlines() == [lines[0], *lines[21:31]]  # iterations 210..300, as written
    with pytest.raises(SystemExit):
        log_summary.main([str(tmp_path / "log.csv"), "--extract", str(tmp_path / "part.csv")])
    assert (tmp_path / "part.csv").read_text().splitlines() == [lines[0], *lines[21:31]]
