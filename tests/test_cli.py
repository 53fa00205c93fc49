"""The evaluate and upscale command lines, end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from srgan_core import evaluate, upscale
from srgan_core.images import load_image
from srgan_core.metrics import colour_shift
from srgan_core.models import Generator


def test_evaluate_writes_paper_table(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srgan_core import method_specs

    monkeypatch.setattr(method_specs, "MODELS_DIR", tmp_path / "no-weights")  # srgan-mse is then skipped, not scored
    evaluate.main(["--methods", "nearest", "bicubic", "srgan-mse", "--datasets", "Set5", "--data-root", str(data_root),
                   "--out", str(tmp_path), "--save-images", str(tmp_path / "sr")])
    table = pd.read_csv(tmp_path / "benchmarks.csv")
    bicubic = table[table.method == "bicubic"].iloc[0]
    assert abs(bicubic.psnr - 28.43) < 0.03 and bicubic.paper_psnr == 28.43
    assert table[table.method == "nearest"].iloc[0].psnr < bicubic.psnr
    per_image = pd.read_csv(tmp_path / "benchmarks_per_image.csv")
    assert len(per_image) == 15  # 5 images x (nearest, bicubic, hr)
    assert table.set_index("method")["colour_shift"]["bicubic"] < 1.0  # interpolation keeps the mean colour
    assert table.set_index("method")["grid"]["bicubic"] < 1.0  # nor does it leave a sub-pixel grid
    niqe = table.set_index("method")["niqe"]
    assert niqe["nearest"] > niqe["hr"] and niqe["bicubic"] > niqe["hr"]  # blur and blockiness look less natural
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| bicubic |" in report and "Skipped: srgan-mse" in report
    assert Image.open(tmp_path / "sr" / "bicubic" / "Set5" / "baby.png").size == (512, 512)


def test_evaluate_scores_folders_of_own_images(photo: np.ndarray, tmp_path: Path) -> None:
    from srgan_core.images import downscale_x4, to_tensor, to_uint8
    from srgan_core.imresize import imresize
    from srgan_core.metrics import psnr_y

    photos = tmp_path / "my photos"
    photos.mkdir()
    Image.fromarray(photo).save(photos / "astronaut.png")
    Image.fromarray(photo[:, ::-1]).convert("L").save(photos / "mirrored grey.jpg", quality=95)
    out = tmp_path / "out"
    evaluate.main(["--methods", "nearest", "bicubic", "--folders", str(photos), "--no-niqe", "--out", str(out),
                   "--save-images", str(out / "sr")])
    per_image = pd.read_csv(out / "benchmarks_per_image.csv")
    assert set(per_image.dataset) == {"my photos"}  # no benchmark scored unless asked for
    assert sorted(per_image.image) == ["astronaut", "astronaut", "mirrored grey", "mirrored grey"]
    hr = photo  # 64x48: already a multiple of 4
    bicubic = to_uint8(imresize(to_tensor(downscale_x4(hr)).double(), 4))
    scored = per_image.set_index(["method", "image"]).psnr
    assert scored["bicubic", "astronaut"] == pytest.approx(psnr_y(bicubic, hr), abs=1e-3)
    assert scored["bicubic", "astronaut"] > scored["nearest", "astronaut"]
    table = pd.read_csv(out / "benchmarks.csv")
    assert table.paper_psnr.isna().all()  # the paper scored no such set
    report = (out / "benchmarks.md").read_text()
    assert "### my photos" in report and "paper PSNR" not in report  # no column of dashes for what the paper never scored
    assert Image.open(out / "sr" / "bicubic" / "my photos" / "mirrored grey.png").size == (64, 48)


def test_evaluate_leaves_an_exact_output_out_of_the_mean_and_names_what_reading_changed(tmp_path: Path, capsys) -> None:
    """A flat image comes back exactly (PSNR infinite): the mean PSNR stays that of the others; an image read with a
    change (here its transparency flattened) is named in the report, as upscale and the app name it."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photos / "noise.png")
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(photos / "flat.png")
    rgba = np.dstack([rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), np.full((48, 64), 255, np.uint8)])
    rgba[:24, :, 3] = 0
    Image.fromarray(rgba).save(photos / "half clear.png")
    evaluate.main(["--methods", "nearest", "--folders", str(photos), "--no-niqe", "--out", str(tmp_path / "out")])
    per_image = pd.read_csv(tmp_path / "out" / "benchmarks_per_image.csv").set_index("image").psnr
    assert np.isinf(per_image["flat"]) and np.isfinite(per_image["noise"])
    mean = pd.read_csv(tmp_path / "out" / "benchmarks.csv").set_index("method").psnr["nearest"]
    assert mean == pytest.approx(per_image[np.isfinite(per_image)].mean(), abs=1e-3)
    report = (tmp_path / "out" / "benchmarks.md").read_text()
    assert "exactly (nearest on photos/flat): left out of the mean PSNR" in report
    assert f"Read with a change: {photos / 'half clear.png'} has transparency (50% of its pixels)" in report
    assert f"note: {photos / 'half clear.png'} has transparency" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--out", "--save-images"])
def test_evaluate_refuses_a_folder_it_cannot_write_into_before_scoring(
    option: str, photo: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    photos, out, locked = tmp_path / "photos", tmp_path / "out", tmp_path / "locked"
    for folder in (photos, locked):
        folder.mkdir()
    Image.fromarray(photo).save(photos / "shot.png")
    real = tempfile.NamedTemporaryFile

    def refused(*args, dir=None, **kwargs):  # what a read-only folder does to this user (root could write anyway)
        if Path(dir) == locked:
            raise PermissionError(13, "Permission denied", str(Path(dir) / "x"))
        return real(*args, dir=dir, **kwargs)

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored before checking the output folders")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refused)
    monkeypatch.setattr(evaluate, "score_paths", no_scoring)
    outputs = ["--out", str(locked)] if option == "--out" else ["--out", str(out), "--save-images", str(locked)]
    argv = ["--methods", "bicubic", "--folders", str(photos), "--no-niqe", *outputs]
    with pytest.raises(SystemExit, match=f"cannot write to {re.escape(str(locked))}: Permission denied; give {option}"):
        evaluate.main(argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked", "photos"]  # no --out folder made and left behind


def test_evaluate_removes_the_output_folders_it_made_when_it_fails(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    with pytest.raises(SystemExit, match="no such folder"):
        evaluate.main(["--methods", "bicubic", "--folders", str(tmp_path / "nowhere"), "--no-niqe", "--out", str(out),
                       "--save-images", str(out / "sr")])
    assert list(tmp_path.iterdir()) == []


def test_evaluate_stopped_while_reporting_keeps_the_reports_before_whole(photo: np.ndarray, tmp_path: Path, monkeypatch) -> None:
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    Image.fromarray(photo).save(photos / "astronaut.png")
    argv = ["--methods", "nearest", "--folders", str(photos), "--no-niqe", "--out", str(out)]
    evaluate.main(argv)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def stopped(table: pd.DataFrame) -> str:  # a Ctrl-C while the markdown table is made
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "to_markdown", stopped)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main([*argv[:1], "bicubic", *argv[2:]])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nearest's reports, and nothing half-written


def test_the_report_shows_the_paper_columns_only_for_its_benchmarks() -> None:
    scores = pd.DataFrame({"dataset": ["Set5", "my photos"], "method": ["bicubic", "bicubic"], "image": ["a", "b"],
                           "psnr": [28.4, 30.0], "ssim": [0.81, 0.85], "colour_shift": [0.0, 0.1], "grid": [0.5, 0.4]})
    sections = evaluate.to_markdown(evaluate.paper_table(scores)).split("### ")[1:]
    assert sections[0].startswith("Set5") and "| paper PSNR | paper SSIM |" in sections[0] and "| 28.43 |" in sections[0]
    assert sections[1].startswith("my photos") and "paper" not in sections[1]


def test_evaluate_scores_niqe_on_the_matlab_scale(data_root: Path, tmp_path: Path) -> None:
    from srgan_core.niqe import FETCH_COMMAND, MODEL_FILE, niqe

    baboon, model = data_root / "niqe" / "baboon.png", data_root / MODEL_FILE
    if not (baboon.is_file() and model.is_file()):
        pytest.skip("needs niqe/baboon.png and the NIQE model in the data folder")
    root = tmp_path / "data"  # a data folder whose Set5 is baboon.png alone (480x492: modcrop keeps it whole)
    (root / "benchmarks" / "Set5").mkdir(parents=True)
    (root / "benchmarks" / "Set5" / "baboon.png").symlink_to(baboon)
    with pytest.raises(SystemExit, match=re.escape(FETCH_COMMAND) + ".*--no-niqe"):
        evaluate.main(["--methods", "bicubic", "--datasets", "Set5", "--data-root", str(root), "--out", str(tmp_path)])

    (root / "niqe").mkdir()
    (root / "niqe" / "niqe_pris_params.npz").symlink_to(model)
    out = tmp_path / "out"
    evaluate.main(["--methods", "bicubic", "--datasets", "Set5", "--data-root", str(root), "--out", str(out),
                   "--save-images", str(out / "sr")])
    per_image = pd.read_csv(out / "benchmarks_per_image.csv").set_index("method")["niqe"]
    assert per_image["hr"] == pytest.approx(5.72957338, abs=1e-3)  # MATLAB's value for this image
    sr = load_image(out / "sr" / "bicubic" / "Set5" / "baboon.png")
    assert per_image["bicubic"] == pytest.approx(niqe(sr, root), abs=1e-4) and per_image["bicubic"] > per_image["hr"]
    report = (out / "benchmarks.md").read_text()
    assert "MATLAB scale of the official LIVE release" in report
    assert "The original HR images score a mean NIQE of 5.73 on Set5." in report


def test_training_budget_counts_the_initial_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srgan_core import method_specs

    monkeypatch.setattr(method_specs, "MODELS_DIR", tmp_path)
    init = {"method": "srresnet-mse", "iterations": 14500, "samples_seen": 232000, "wall_seconds": 17455.5}
    (tmp_path / "srgan-vgg54.json").write_text(json.dumps({"iterations": 1200, "samples_seen": 19200, "wall_seconds": 5400.0, "init": init}))
    # 3600 of its iterations at batch 256: 3600 x 256 + 10900 x 16 samples
    (tmp_path / "srresnet-mse.json").write_text(json.dumps({"iterations": 14500, "samples_seen": 1096000, "wall_seconds": 17455.5}))
    scores = pd.DataFrame({"dataset": "Set5", "image": "baby", "method": ["bicubic", "srresnet-mse", "srgan-vgg54"], "psnr": 30.0, "ssim": 0.9, "colour_shift": 1.5, "grid": 0.5})
    report = evaluate.to_markdown(evaluate.paper_table(scores))
    assert "| 1200 (+14500) | 0.02 (+0.23) | 1.50 (+4.85) |" in report
    assert "| 14500 | 1.10 | 4.85 |" in report and "| bicubic | 30.00 | 0.9000 | 1.50 | 0.50 | 28.43 | 0.8211 | – | – | – |" in report


def test_upscale_refuses_outputs_that_overwrite_each_other_or_an_input(photo: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo).save(src / "shot.png")
    Image.fromarray(photo[::-1]).save(src / "shot.jpg")
    with pytest.raises(SystemExit, match="would both be written to"):
        upscale.main([str(src), "--method", "bicubic", "-o", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # refused before anything was written
    before = (src / "shot.png").read_bytes()
    with pytest.raises(SystemExit, match="is the input itself"):
        upscale.main([str(src / "shot.png"), "--method", "bicubic", "-o", str(src / "shot.png")])
    assert (src / "shot.png").read_bytes() == before


def test_upscale_files_and_folders(photo: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo).convert("L").save(src / "gray.png")
    Image.fromarray(photo).convert("RGBA").save(src / "rgba.png")
    (src / "notes.png").write_bytes(b"not really a png")
    code = upscale.main([str(src), "--method", "bicubic", "-o", str(tmp_path / "out")])
    assert code == 1  # one input was refused, the others written
    for name in ("gray", "rgba"):
        out = load_image(tmp_path / "out" / f"{name}_bicubic_x4.png")
        assert out.shape == (photo.shape[0] * 4, photo.shape[1] * 4, 3)


def test_upscale_says_when_transparency_is_flattened(photo: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, : photo.shape[1] // 4, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    Image.fromarray(photo).convert("RGBA").save(tmp_path / "opaque.png")
    assert upscale.main([str(tmp_path / "logo.png"), str(tmp_path / "opaque.png"), "--method", "nearest", "-o", str(tmp_path / "out")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "logo.png has transparency (25% of its pixels)" in notes[0]


def test_upscale_interrupted_while_saving_keeps_the_file_it_would_replace_and_exits_130(
    photo: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    Image.fromarray(photo).save(tmp_path / "shot.png")
    dest = tmp_path / "out.png"
    dest.write_bytes(b"an earlier output")

    def stopped(im: Image.Image, fp, filename) -> None:  # Ctrl-C after the first bytes of the PNG
        fp.write(b"\x89PNG")
        raise KeyboardInterrupt

    monkeypatch.setitem(Image.SAVE, "PNG", stopped)
    assert upscale.main([str(tmp_path / "shot.png"), "--method", "nearest", "-o", str(dest)]) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("interrupted: ") and "Traceback" not in err
    assert dest.read_bytes() == b"an earlier output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "shot.png"]


def test_upscale_single_file_to_named_output(photo: np.ndarray, tmp_path: Path) -> None:
    Image.fromarray(photo).save(tmp_path / "a.jpg")
    assert upscale.main([str(tmp_path / "a.jpg"), "--method", "nearest", "-o", str(tmp_path / "big.png")]) == 0
    assert Image.open(tmp_path / "big.png").size == (photo.shape[1] * 4, photo.shape[0] * 4)


def test_upscale_bfloat16_option(photo: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from srgan_core import method_specs

    monkeypatch.setattr(method_specs, "MODELS_DIR", tmp_path)
    save_file(Generator().state_dict(), str(tmp_path / "srresnet-mse.safetensors"))
    Image.fromarray(photo).save(tmp_path / "a.png")
    monkeypatch.setattr(upscale, "cpu_has_native_bf16", lambda: False)
    argv = [str(tmp_path / "a.png"), "--method", "srresnet-mse", "--device", "cpu", "--precision", "bfloat16", "-o", str(tmp_path / "o.png")]
    assert upscale.main(argv) == 0
    assert "no native bfloat16" in capsys.readouterr().err
    assert Image.open(tmp_path / "o.png").size == (photo.shape[1] * 4, photo.shape[0] * 4)


def test_upscale_colour_fix_takes_the_coarse_colour_from_the_input(photo: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srgan_core import method_specs

    monkeypatch.setattr(method_specs, "MODELS_DIR", tmp_path)
    torch.manual_seed(0)
    save_file(Generator().state_dict(), str(tmp_path / "srresnet-mse.safetensors"))  # untrained: a strong cast
    Image.fromarray(photo).save(tmp_path / "a.png")
    common = [str(tmp_path / "a.png"), "--method", "srresnet-mse", "--device", "cpu", "--precision", "float32"]
    assert upscale.main([*common, "-o", str(tmp_path / "out")]) == 0
    assert upscale.main([*common, "--colour-fix", "-o", str(tmp_path / "out")]) == 0
    reference = load_image(tmp_path / "out" / "a_srresnet-mse_x4.png")
    fixed = load_image(tmp_path / "out" / "a_srresnet-mse+colour-fix_x4.png")  # named apart: both kept
    assert upscale.main([str(tmp_path / "a.png"), "--method", "bicubic", "-o", str(tmp_path / "out")]) == 0
    bicubic = load_image(tmp_path / "out" / "a_bicubic_x4.png")
    assert colour_shift(reference, bicubic, border=0) > 5
    assert colour_shift(fixed, bicubic, border=0) < 0.5


def test_upscale_unavailable_method_says_why(photo: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    from srgan_core import method_specs

    monkeypatch.setattr(method_specs, "MODELS_DIR", tmp_path / "none")
    Image.fromarray(photo).save(tmp_path / "a.png")
    assert upscale.main([str(tmp_path / "a.png"), "--method", "srgan-vgg54", "-o", str(tmp_path / "o.png")]) == 2
    assert "no trained weights" in capsys.readouterr().err


@pytest.mark.parametrize("d_batch, wording", [("joint", "as one batch"), ("separate", "in separate batches")])
def test_discriminator_probe_reports_every_cue(data_root: Path, vgg_weights: Path, tmp_path: Path, d_batch: str, wording: str) -> None:
    from tools import probe_discriminator

    out = tmp_path / "probe.md"
    argv = ["--steps", "2", "--batch", "2", "--crop", "32", "--eval-batches", "1", "--log-every", "1", "--out", str(out),
            "--discriminator-batch", d_batch]
    assert probe_discriminator.main(argv) == 0
    text = out.read_text()
    assert f"HR and SR {wording}" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "|---" not in line]
    verdict = {cells[0]: float(cells[1]) for cells in (r.strip("| ").split(" | ") for r in rows) if len(cells) == 2 and cells[0] not in ("images", "term")}
    assert {"HR (real)", "SRResNet-MSE output (fake)", "bicubic upscale of the LR", "SR rounded to 8 bit", "HR inside, SR 8px border"} <= set(verdict)
    assert all(0 <= verdict[name] <= 1 for name in verdict if not name.startswith(("content", "adversarial")))
    assert verdict["content (VGG54)"] > 0
    summed, averaged = verdict["adversarial, batch sum (x 0.016)"], verdict["adversarial, batch mean (x 0.001)"]
    assert averaged > 0 and summed == pytest.approx(16 * averaged, rel=1e-2)  # the sum over the paper's 16, at any batch
    assert "| 1 |" in text and "| 2 |" in text


def test_upscale_skips_an_image_whose_output_would_not_fit_in_memory(photo: np.ndarray, tmp_path: Path, monkeypatch, capsys) -> None:
    """Rather than being killed by the system halfway (no output, no message), it says what it needs and goes on."""
    import psutil

    from srgan_core.colour_fix import ColourFixedUpscaler
    from srgan_core.methods import load_method

    Image.fromarray(photo).save(tmp_path / "shot.png")  # 64x48: its 256x192 output needs about 2 MB as bicubic
    bicubic = load_method("bicubic")
    assert bicubic.memory_needed(48, 64) == 48 * 64 * 16 * 33 < ColourFixedUpscaler(bicubic).memory_needed(48, 64)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=1_000_000))
    assert upscale.main(["--method", "bicubic", str(tmp_path / "shot.png"), "-o", str(tmp_path / "out.png")]) == 1
    assert "needs about 2 MiB of memory and 1 MiB is free" in capsys.readouterr().err and not (tmp_path / "out.png").exists()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=3_000_000))
    assert upscale.main(["--method", "bicubic", str(tmp_path / "shot.png"), "-o", str(tmp_path / "out.png")]) == 0


def test_upscale_and_evaluate_take_weights_of_your_own(photo: np.ndarray, tmp_path: Path, data_root: Path) -> None:
    """A generator trained with `train --out FILE` is used by its file, named after it, beside the shipped methods."""
    torch.manual_seed(0)
    mine = tmp_path / "my-run.safetensors"
    save_file(Generator().state_dict(), str(mine))
    Image.fromarray(photo).save(tmp_path / "shot.png")
    assert upscale.main([str(tmp_path / "shot.png"), "--weights", str(mine), "-o", str(tmp_path / "out"), "--precision", "float32"]) == 0
    assert Image.open(tmp_path / "out" / "shot_my-run_x4.png").size == (256, 192)
    evaluate.main(["--weights", str(mine), "--methods", "bicubic", "--datasets", "Set5", "--no-niqe", "--data-root", str(data_root),
                   "--out", str(tmp_path / "scores")])
    table = pd.read_csv(tmp_path / "scores" / "benchmarks.csv").set_index("method")
    assert list(table.index) == ["bicubic", "my-run"] and table.loc["my-run", "psnr"] < table.loc["bicubic", "psnr"]  # untrained
    clash = tmp_path / "bicubic.safetensors"
    clash.write_bytes(mine.read_bytes())
    with pytest.raises(SystemExit, match="its name 'bicubic' is a method's"):
        evaluate.main(["--weights", str(clash), "--datasets", "Set5", "--no-niqe", "--out", str(tmp_path / "x")])
