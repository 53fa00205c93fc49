"""The GPU campaign's bundle (`srgan_core.pack`) and script (`tools/gpu_train.sh`), run on the CPU at tiny sizes."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from srgan_core import pack
from srgan_core.compact import read_weights, write_compact_bf16
from srgan_core.download import sha256_file
from srgan_core.evaluate import score_images
from srgan_core.models import Generator
from srgan_core.niqe import MODEL_FILE as NIQE_MODEL
from srgan_core.niqe import model_path
from srgan_core.paths import MODELS_DIR, REPO_ROOT
from srgan_core.train_config import schedule_for
from tools import gpu_results, gpu_train

START = MODELS_DIR / "srresnet-mse.safetensors"
CARRIED_SRGAN = MODELS_DIR / "srgan-vgg54.safetensors"  # the campaign continues it; SRGAN-VGG22 starts from SRResNet-MSE
MIB = 2**20


@pytest.fixture(scope="module")
def tiny_data_root(tmp_path_factory: pytest.TempPathFactory, vgg_weights: Path) -> Path:
    """A data folder of a few synthetic images, with the real VGG19 and NIQE model."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for folder, count, size, suffix in [("train/T91", 3, 48, "png"), ("train/BSDS500_train", 2, 40, "jpg"), ("benchmarks/Set5", 2, 32, "png")]:
        (root / folder).mkdir(parents=True)
        for i in range(count):
            smooth = np.kron(rng.integers(0, 256, (size // 8, size // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
            Image.fromarray(smooth).save(root / folder / f"img{i}.{suffix}")
    (root / "vgg19").mkdir()
    (root / "vgg19" / vgg_weights.name).symlink_to(vgg_weights)
    (root / NIQE_MODEL).parent.mkdir()
    (root / NIQE_MODEL).symlink_to(model_path(vgg_weights.parents[1]))  # the real data folder's
    return root


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_data_root: Path) -> Path:
    """A bundle made from the tiny data folder and the shipped SRResNet-MSE and SRGAN-VGG54."""
    bundle = tmp_path_factory.mktemp("bundles") / "bundle"
    assert pack.main([str(bundle), "--data-root", str(tiny_data_root), "--weights", str(START), str(CARRIED_SRGAN)]) == 0
    return bundle


def test_bundle_holds_what_a_bare_machine_needs_and_verifies(tiny_bundle: Path, tmp_path: Path) -> None:
    files = json.loads((tiny_bundle / pack.MANIFEST).read_text())["files"]
    assert {"vgg19/vgg19_features_bf16.npz", "weights/srresnet-mse.npz", "weights/srresnet-mse.json", "weights/srgan-vgg54.npz",
            NIQE_MODEL, "benchmarks/Set5/img0.png", "train/T91/img0.jpg", "train/BSDS500_train/img1.jpg"} <= set(files)
    carried, shipped = read_weights(tiny_bundle / "weights/srgan-vgg54.npz"), load_file(str(CARRIED_SRGAN))
    assert set(carried) == set(shipped) and all(torch.equal(carried[k], v.to(torch.bfloat16).to(v.dtype)) for k, v in shipped.items())
    assert files["weights/srgan-vgg54.json"]["sha256"] == sha256_file(CARRIED_SRGAN.with_suffix(".json"))
    assert pack.verify(tiny_bundle) == []
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(tiny_bundle), str(copy)], check=True)
    (copy / "train/T91/img0.jpg").write_bytes(b"not the same")
    (copy / "benchmarks/Set5/img1.png").unlink()
    (copy / "extra.txt").write_text("stray")
    assert sorted(pack.verify(copy)) == ["changed: train/T91/img0.jpg", "missing: benchmarks/Set5/img1.png", "not in the manifest: extra.txt"]
    assert pack.main(["--verify", str(copy)]) == 1 and pack.main([str(copy)]) == 2  # exists: never overwritten


def test_compact_weights_are_exactly_bfloat16_and_keep_counters_as_they_are(tmp_path: Path) -> None:
    state = {"0.weight": torch.randn(4, 3, 3, 3), "0.bias": torch.randn(4) * 1e-3, "1.scale": torch.tensor(0.7),
             "1.num_batches_tracked": torch.tensor(12345)}
    write_compact_bf16(state, tmp_path / "w.npz")
    back = read_weights(tmp_path / "w.npz")
    assert set(back) == set(state)
    for name, tensor in state.items():
        expected = tensor.to(torch.bfloat16).float() if tensor.is_floating_point() else tensor
        assert back[name].dtype == expected.dtype and back[name].shape == tensor.shape and torch.equal(back[name], expected), name


def test_the_bundle_takes_only_a_methods_weights_with_their_card(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stray = tmp_path / "mine.safetensors"
    save_file(load_file(str(START)), str(stray))
    uncarded = tmp_path / "srgan-vgg22.safetensors"
    save_file(load_file(str(START)), str(uncarded))
    for weights in (stray, uncarded):  # the campaign could not tell which method, or from which iteration
        assert pack.main([str(tmp_path / "bundle"), "--data-root", str(data_root), "--weights", str(weights)]) == 1
        assert f"starting weights {weights}: the campaign continues" in capsys.readouterr().err
        assert not (tmp_path / "bundle").exists()


def test_a_failed_pack_leaves_no_half_bundle(tiny_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    damaged = tmp_path / "srgan-vgg54.safetensors"
    damaged.write_bytes(CARRIED_SRGAN.read_bytes()[:5000])
    shutil.copyfile(CARRIED_SRGAN.with_suffix(".json"), damaged.with_suffix(".json"))
    data = tiny_data_root
    assert pack.main([str(tmp_path / "bundle"), "--data-root", str(data), "--weights", str(damaged)]) == 1
    assert f"starting weights {damaged} cannot be read" in capsys.readouterr().err

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pack, "write_compact_bf16", disk_full)
    with pytest.raises(OSError, match="No space"):
        pack.pack(tmp_path / "bundle", data, [START], 90, "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([damaged.name, damaged.with_suffix(".json").name])
    monkeypatch.undo()
    assert pack.main([str(tmp_path / "bundle"), "--data-root", str(data), "--weights", str(START)]) == 0  # nothing in the way
    assert pack.verify(tmp_path / "bundle") == []


def test_a_campaign_needs_srresnet_mse_for_an_srgan_the_bundle_does_not_carry(tmp_path: Path) -> None:
    bundle, work = tmp_path / "bundle", tmp_path / "work"
    (bundle / "weights").mkdir(parents=True)
    work.mkdir()
    write_compact_bf16(load_file(str(CARRIED_SRGAN)), bundle / "weights" / "srgan-vgg54.npz")
    shutil.copyfile(CARRIED_SRGAN.with_suffix(".json"), bundle / "weights" / "srgan-vgg54.json")
    with pytest.raises(SystemExit, match="no weights for srgan-vgg22 and no SRResNet-MSE"):
        gpu_train.starting_points(bundle, work)
    shutil.copyfile(START.with_suffix(".json"), bundle / "weights" / "srresnet-mse.json")
    write_compact_bf16(load_file(str(START)), bundle / "weights" / "srresnet-mse.npz")
    shipped = {m: json.loads((MODELS_DIR / f"{m}.json").read_text())["iterations"] for m in ("srresnet-mse", "srgan-vgg54")}
    assert gpu_train.starting_points(bundle, work) == {**shipped, "srgan-vgg22": 0}
    assert torch.equal(load_file(str(work / "srgan-vgg54.safetensors"))["head.0.weight"], read_weights(bundle / "weights" / "srgan-vgg54.npz")["head.0.weight"])


def test_the_real_bundle_and_the_tree_fit_the_lent_machine(data_root: Path, vgg_weights: Path, tmp_path: Path) -> None:
    """The machine takes the working tree plus the bundle, 64 MiB in all; the run leaves the shipped weights out of
    the tree (the bundle carries the ones it continues, by default both SRGANs), and everything must stay under 60 MiB."""
    bundle = tmp_path / "bundle"
    assert pack.main([str(bundle), "--data-root", str(data_root)]) == 0
    assert {p.name for p in (bundle / "weights").iterdir()} == {"srgan-vgg54.npz", "srgan-vgg54.json", "srgan-vgg22.npz", "srgan-vgg22.json"}
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    tree = sum((REPO_ROOT / name).stat().st_size for name in tracked if name and not name.endswith(".safetensors") and (REPO_ROOT / name).is_file())
    bundled = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert (tree + bundled) / MIB < 60, f"tree {tree / MIB:.1f} MiB + bundle {bundled / MIB:.1f} MiB"


def test_pick_batch_prefers_a_smaller_batch_within_ten_percent() -> None:
    assert gpu_train.pick_batch({64: 100.0, 128: 48.0, 256: 24.0}) == 64  # 6400 samples/s is the best already
    assert gpu_train.pick_batch({64: 100.0, 128: 70.0, 256: 37.0}) == 128  # 8960 is within 10 % of 9472
    assert gpu_train.pick_batch({64: 100.0, 128: 90.0, 256: 60.0}) == 256


def test_srgan_stages_average_over_a_tenth_of_their_iterations_at_most_a_thousand() -> None:
    assert gpu_train.ema_decay(5000) == pytest.approx(1 - 1 / 501)  # a time constant of 1 + 500 iterations
    assert gpu_train.ema_decay(10**6) == gpu_train.EMA_MAX_DECAY
    assert 0 < gpu_train.ema_decay(2) < 0.2  # a tiny stage averages little, but still averages
    stages = gpu_train.plan({"batch": {m: 64 for m in gpu_train.STAGES}, "rates_it_per_s": {m: {"64": 10.0} for m in gpu_train.STAGES}}, 600,
                            {"srresnet-mse": 27000, "srgan-vgg54": 0, "srgan-vgg22": 0})
    assert stages["srresnet-mse"]["ema_decay"] == 0.0
    assert stages["srgan-vgg54"]["ema_decay"] == gpu_train.ema_decay(stages["srgan-vgg54"]["iters"]) > 0.99


def test_srgans_train_at_the_short_budget_rate_without_a_drop_and_srresnet_drops_for_its_last_fifth() -> None:
    stages = gpu_train.plan({"batch": {m: 256 for m in gpu_train.STAGES}, "rates_it_per_s": {m: {"256": 10.0} for m in gpu_train.STAGES}}, 600,
                            {"srresnet-mse": 27000, "srgan-vgg54": 0, "srgan-vgg22": 0})
    srresnet = stages["srresnet-mse"]
    assert srresnet["lr"] == pytest.approx(4e-4)  # the paper's 1e-4 at batch 16, x sqrt(256 / 16)
    assert srresnet["decay_at"] == 27000 + int(0.8 * (srresnet["iters"] - 27000))
    for method in ("srgan-vgg54", "srgan-vgg22"):  # the paper's 1e-4 left a grid of 10 levels in minutes
        assert stages[method]["lr"] == pytest.approx(4e-5) and stages[method]["decay_at"] == 0


def test_a_campaign_without_srresnet_mse_gives_its_time_to_the_srgans_it_continues() -> None:
    probed = {"batch": {m: 256 for m in gpu_train.STAGES}, "rates_it_per_s": {m: {"256": 10.0} for m in gpu_train.STAGES}}
    stages = gpu_train.plan(probed, 600, {"srgan-vgg54": 8034, "srgan-vgg22": 6706})
    assert list(stages) == ["srgan-vgg54", "srgan-vgg22"]
    training = 600 - 2 * gpu_train.STAGE_OVERHEAD_S
    share = {m: gpu_train.SHARES[m] / (gpu_train.SHARES["srgan-vgg54"] + gpu_train.SHARES["srgan-vgg22"]) for m in stages}
    for method, start in (("srgan-vgg54", 8034), ("srgan-vgg22", 6706)):
        assert stages[method]["seconds"] == pytest.approx(share[method] * training, abs=0.1)
        assert stages[method]["from"] == start and stages[method]["iters"] == start + int(10.0 * share[method] * training)


@pytest.fixture(scope="module")
def campaign(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The OUTDIR of the campaign script run on the CPU in a 30-second budget at tiny sizes."""
    tmp_path = tmp_path_factory.mktemp("campaign")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(REPO_ROOT / "tools" / "gpu_train.sh"), str(tiny_bundle), str(out), "--budget", "30",
           "--probe-seconds", "2", "--batch-sizes", "1", "2", "--crop", "16", "--work", str(tmp_path / "work")]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_the_campaign_runs_end_to_end_on_the_cpu_in_a_tiny_budget(campaign: Path, tmp_path: Path) -> None:
    out = campaign
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cards_and_logs.tar.gz", "console.log", "srgan-vgg22.safetensors", "srgan-vgg54.safetensors", "srresnet-mse.safetensors"]
    assert ": whole" in (out / "console.log").read_text()  # the bundle was checked against its manifest first
    with tarfile.open(out / "cards_and_logs.tar.gz") as tar:
        tar.extractall(tmp_path / "cards", filter="data")
    cards = {m: json.loads((tmp_path / "cards" / f"{m}.json").read_text()) for m in gpu_train.STAGES}
    plan = json.loads((tmp_path / "cards" / "plan.json").read_text())
    assert plan["outcome"] == {m: "done" for m in gpu_train.STAGES}
    start = json.loads(START.with_suffix(".json").read_text())["iterations"]
    assert cards["srresnet-mse"]["iterations"] > start  # continued the bundle's SRResNet-MSE
    assert cards["srresnet-mse"]["runs"][-1]["from_iteration"] == start
    assert plan["stages"]["srgan-vgg54"]["start"] == f"the bundle's bfloat16 copy of srgan-vgg54 at iteration {plan['stages']['srgan-vgg54']['from']}"
    assert plan["stages"]["srgan-vgg22"]["start"] == "the campaign's SRResNet-MSE"
    carried, started = cards["srgan-vgg54"], cards["srgan-vgg22"]
    shipped = json.loads(CARRIED_SRGAN.with_suffix(".json").read_text())
    assert carried["iterations"] > shipped["iterations"] == carried["runs"][-1]["from_iteration"]  # continued the bundle's
    assert carried["samples_seen"] == shipped["samples_seen"] + (carried["iterations"] - shipped["iterations"]) * carried["schedule"]["batch_size"]
    assert carried["init"] == shipped["init"] and carried["runs"][:-1] == shipped["runs"]
    assert (tmp_path / "cards" / "srgan-vgg54_log.csv").read_text().startswith((REPO_ROOT / shipped["log"]).read_text())  # its log kept
    assert started["iterations"] > 0 and started["samples_seen"] == started["iterations"] * started["schedule"]["batch_size"]
    assert started["init"]["sha256"] == sha256_file(out / "srresnet-mse.safetensors")  # started from the continued one
    for card in cards.values():
        assert card["runs"][-1]["hardware"] in card["hardware"] and card["runs"][-1]["precision"] in card["precision"]
    for method in gpu_train.STAGES:
        assert (tmp_path / "cards" / f"{method}_log.csv").read_text().startswith("iteration,")
    assert cards["srresnet-mse"]["ema_decay"] is None
    for method in ("srgan-vgg54", "srgan-vgg22"):  # the SRGANs export a moving average, as planned
        assert cards[method]["ema_decay"] == plan["stages"][method]["ema_decay"] > 0
    for method in gpu_train.STAGES:  # each trained at its planned rate
        assert cards[method]["schedule"]["lr"] == pytest.approx(plan["stages"][method]["lr"])


def test_an_srgan_stage_continues_from_its_checkpoint_on_the_campaign_machine(campaign: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    work, out = campaign.parent / "work", tmp_path / "out"  # the campaign's work folder, as a warm machine keeps it
    before = json.loads((work / "srgan-vgg54.json").read_text())
    assert gpu_train.main([str(tiny_bundle), str(out), "--continue", "srgan-vgg54", "--budget", "30", "--crop", "16", "--work", str(work)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cards_and_logs.tar.gz", "srgan-vgg22.safetensors", "srgan-vgg54.safetensors", "srresnet-mse.safetensors"]
    with tarfile.open(out / "cards_and_logs.tar.gz") as tar:
        tar.extractall(tmp_path / "cards", filter="data")
    card, plan = (json.loads((tmp_path / "cards" / name).read_text()) for name in ("srgan-vgg54.json", "plan.json"))
    assert card["iterations"] > before["iterations"] and card["runs"][-1]["from_iteration"] == before["iterations"]
    assert card["runs"][-1]["lr"] == before["runs"][-1]["lr"] and card["ema_decay"] == before["ema_decay"]  # as planned
    assert card["init"] == before["init"]  # the same starting weights as before the continuation
    assert plan["outcome"]["srgan-vgg54"] == "done, continued" and plan["outcome"]["srgan-vgg22"] == "done"
    assert [c["from"] for c in plan["stages"]["srgan-vgg54"]["continued"]] == [before["iterations"]]
    with pytest.raises(SystemExit, match="--continue needs the --work folder"):
        gpu_train.main([str(tiny_bundle), str(tmp_path / "out2"), "--continue", "srgan-vgg54", "--work", str(tmp_path / "no-work")])


def test_a_campaign_cut_off_mid_stage_has_already_written_the_stages_before(tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    real_stage = gpu_train.run_stage

    def cut_off(method: str, *args) -> None:  # the lent machine's time limit, in the second stage
        if method != "srresnet-mse":
            raise KeyboardInterrupt
        real_stage(method, *args)

    monkeypatch.setattr(gpu_train, "run_stage", cut_off)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        gpu_train.main([str(tiny_bundle), str(out), "--budget", "20", "--probe-seconds", "1", "--batch-sizes", "1", "--crop", "16",
                        "--work", str(tmp_path / "work")])
    assert sorted(p.name for p in out.iterdir()) == ["cards_and_logs.tar.gz", "srresnet-mse.safetensors"]
    with tarfile.open(out / "cards_and_logs.tar.gz") as tar:
        plan = json.load(tar.extractfile("plan.json"))
    assert plan["outcome"] == {"srresnet-mse": "done"}


def test_a_stage_the_trainer_exits_on_fails_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """train.main exits (SystemExit) on a diverged loss or a refused flag: that stage fails, the campaign goes on."""

    def diverged(*args: object) -> None:
        raise SystemExit(1)

    monkeypatch.setattr(gpu_train, "run_stage", diverged)
    args = argparse.Namespace(bundle=tmp_path, work=tmp_path, crop=96)
    assert gpu_train.attempt_stage("srgan-vgg54", {}, args).startswith("failed: SystemExit")


def test_the_results_tool_says_what_came_back_cut_off(campaign: Path, tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(campaign, out)
    weights = out / "srgan-vgg54.safetensors"
    weights.write_bytes(weights.read_bytes()[:4000])
    report = tmp_path / "report.md"
    assert gpu_results.main([str(out), "--datasets", "Set5", "--data-root", str(tiny_bundle), "--report", str(report), "--no-niqe"]) == 0
    assert "srgan-vgg54.safetensors cannot be read" in capsys.readouterr().err
    assert "| srgan-vgg54 | returned |" not in report.read_text()
    archive = out / "cards_and_logs.tar.gz"
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(SystemExit, match="cannot be read .* cut off"):
        gpu_results.main([str(out), "--datasets", "Set5", "--data-root", str(tiny_bundle), "--report", str(report), "--no-niqe"])
    assert not list(campaign.glob(".*.partial"))  # the campaign left no half-written file


def test_the_results_tool_reports_speed_stages_scores_and_targets(campaign: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(campaign, out)
    (out / "srgan-vgg22.safetensors").unlink()  # as if that stage had brought nothing back
    path, performance = tmp_path / "gpu_campaign.md", tmp_path / "performance.md"
    performance.write_text("# Performance\n\n## CUDA\n\nSkipped: no CUDA device here.\n")
    for _ in range(2):  # the second run replaces the performance report's lent-GPU section
        assert gpu_results.main([str(out), "--datasets", "Set5", "--data-root", str(tiny_bundle), "--report", str(path),
                                 "--performance", str(performance)]) == 0
    text = path.read_text()
    speed = text.split("## Training speed")[1].split("\n## ")[0].strip()
    assert performance.read_text().startswith("# Performance\n\n## CUDA\n\nSkipped: no CUDA device here.\n\n## Lent GPU: training speed\n")
    assert performance.read_text().count("## Lent GPU") == 1 and performance.read_text().rstrip().endswith(speed.splitlines()[-1])
    probe = json.loads((out / "unpacked" / "probe.json").read_text())
    assert set(probe["rates_it_per_s"]) == set(gpu_train.STAGES)
    for method, rates in probe["rates_it_per_s"].items():
        for batch, rate in rates.items():
            samples = int(batch) * rate
            hours = schedule_for(method, "paper").iters * 16 / samples / 3600  # the paper's samples at this speed
            assert f"| {method} | {batch} | {rate:.2f} | {samples:.0f} |" in text and f"| {hours:.1f} |" in text
    plan = json.loads((out / "unpacked" / "plan.json").read_text())
    for method, stage in plan["stages"].items():
        assert f"| {method} | done | {stage['batch']} |" in text
    shipped = score_images(["srresnet-mse"], "Set5", tiny_bundle).mean(numeric_only=True)  # as `evaluate` scores it
    assert f"| srresnet-mse | shipped | {shipped['psnr']:.2f} | {shipped['ssim']:.4f} |" in text
    assert "| srresnet-mse | returned |" in text and "| srgan-vgg54 | returned |" in text and "srgan-vgg22" not in text.split("## Scores")[1]
    verdict = "met" if shipped["psnr"] >= 31.5 else "missed"
    assert f"- srresnet-mse (shipped): Set5 PSNR >= 31.5: {shipped['psnr']:.2f} ({verdict})." in text
    assert "- srresnet-mse (returned): Set5 PSNR >= 31.5: " in text and "- srgan-vgg54 (returned): Set5 colour <= 1: " in text
    assert re.search(r"- srgan-vgg54: \*\*(better|worse|mixed|no clear change)\*\*", text.split("## Returned against shipped")[1])
    card = json.loads((out / "unpacked" / "srgan-vgg54.json").read_text())
    assert card["log"] == "results/training/srgan-vgg54_log.csv"  # where it goes when shipped, not the lent machine's path
    with pytest.raises(SystemExit, match="not found"):
        gpu_results.main([str(tmp_path / "nothing-here")])


def test_the_results_tool_keeps_each_campaign_in_a_folder_of_its_own(campaign: Path, tiny_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """By default the report goes to results/training/gpu_<date>/campaign.md with the console log, probe and plan, and
    the performance report quotes the latest campaign's speed, not an earlier one's."""
    training, performance = tmp_path / "training", tmp_path / "performance.md"
    (training / "gpu_2000-01-01").mkdir(parents=True)
    (training / "gpu_2000-01-01" / "campaign.md").write_text("# GPU campaign\n\n## Training speed\n\nan earlier campaign's\n")
    monkeypatch.setattr(gpu_results, "TRAINING", training)
    monkeypatch.setattr(gpu_results, "PERFORMANCE", performance)
    out = tmp_path / "out"
    shutil.copytree(campaign, out)
    os.utime(out / "cards_and_logs.tar.gz", (0, 0))  # as a copy that does not keep file times (1970)
    assert gpu_results.main([str(out), "--datasets", "Set5", "--data-root", str(tiny_bundle), "--no-niqe"]) == 0
    plan = json.loads((out / "unpacked" / "plan.json").read_text())
    folder = training / f"gpu_{plan['started'][:10]}"  # the day the campaign began, not the copy's file times
    assert sorted(p.name for p in folder.iterdir()) == ["campaign.md", "console.log", "plan.json", "probe.json"]
    assert gpu_results.latest_report() == folder / "campaign.md"
    assert str(folder / "campaign.md") in performance.read_text() and "an earlier campaign's" not in performance.read_text()
    assert (training / "gpu_2000-01-01" / "campaign.md").is_file()  # the earlier report stays


def test_a_returned_generator_is_judged_on_its_targets_beyond_the_noise() -> None:
    def means(**metrics: float) -> dict:
        return {"Set5": metrics, "Set14": metrics}

    scores = {
        ("srgan-vgg54", "returned"): means(psnr=29.5, colour_shift=2.0, grid=1.03, niqe=5.2),  # psnr is no SRGAN target
        ("srgan-vgg54", "shipped"): means(psnr=28.8, colour_shift=3.0, grid=1.0, niqe=5.6),
        ("srgan-vgg22", "returned"): means(colour_shift=1.5, grid=0.9, niqe=6.0),
        ("srgan-vgg22", "shipped"): means(colour_shift=1.54, grid=0.88, niqe=5.7),
        ("srresnet-mse", "returned"): means(psnr=31.70, niqe=7.0),
        ("srresnet-mse", "shipped"): means(psnr=31.73, niqe=7.5),
    }
    lines = gpu_results.verdict_lines(scores, ["Set5", "Set14"])
    assert lines[0] == "- srgan-vgg54: **better**; better: Set5 colour_shift 3.00 -> 2.00, Set5 niqe 5.60 -> 5.20, Set14 colour_shift 3.00 -> 2.00, Set14 niqe 5.60 -> 5.20."
    assert lines[1] == "- srgan-vgg22: **worse**; worse: Set5 niqe 5.70 -> 6.00, Set14 niqe 5.70 -> 6.00."
    assert lines[2] == "- srresnet-mse: **no clear change**."
    scores["srgan-vgg54", "returned"] = means(colour_shift=2.0, grid=1.2, niqe=5.6)
    assert gpu_results.verdict_lines(scores, ["Set5"])[0] == "- srgan-vgg54: **mixed**; better: Set5 colour_shift 3.00 -> 2.00; worse: Set5 grid 1.00 -> 1.20."


def test_srgans_returned_alone_are_held_to_the_shipped_srresnet_niqe(monkeypatch, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    save_file(Generator().state_dict(), str(out / "srgan-vgg54.safetensors"))
    monkeypatch.setattr(gpu_results, "dataset_means", lambda upscale, datasets, data_root, with_niqe: {d: {"niqe": 5.0} for d in datasets})
    scored = gpu_results.score_all(out, ["Set14"], None, with_niqe=True)
    assert set(scored) == {("srgan-vgg54", "returned"), ("srgan-vgg54", "shipped"), ("srresnet-mse", "shipped")}
    assert set(gpu_results.score_all(out, ["Set14"], None, with_niqe=False)) == {("srgan-vgg54", "returned"), ("srgan-vgg54", "shipped")}


# The lent GPU machine has only these of the project's requirements (and no pip); every other one must stay out of the
# campaign's imports. Import names of the requirements that differ from their package names:
ON_THE_GPU_MACHINE = {"torch", "torchvision", "numpy", "scipy", "pandas", "scikit-image", "safetensors", "tqdm", "matplotlib", "psutil", "pillow"}
IMPORT_NAMES = {"scikit-image": "skimage", "pillow": "PIL", "scikit-video": "skvideo", "gradio_client": "gradio_client",
                "markdown-it-py": "markdown_it"}


def test_the_campaign_imports_nothing_the_gpu_machine_lacks() -> None:
    names = [line.split(";")[0].split("=")[0].split("<")[0].split(">")[0].strip()
             for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    missing = sorted(IMPORT_NAMES.get(name, name.replace("-", "_")) for name in names if name not in ON_THE_GPU_MACHINE)
    probe = (
        "import importlib.abc, sys\n"
        f"BLOCKED = {missing!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('not on the GPU machine: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tools.gpu_train, srgan_core.evaluate, srgan_core.pack, srgan_core.niqe\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
