"""The trainer: exact resume, model card, DDP on CPU (gloo, 2 processes)."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from srgan_core import device, losses, provenance, train, train_config, training_log
from srgan_core.download import sha256_file
from srgan_core.method_specs import LEARNED
from srgan_core.models import Generator
from srgan_core.paths import REPO_ROOT


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with a few synthetic training images and a 2-image 'Set5'."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for folder, count, size in [("train/T91", 4, 48), ("benchmarks/Set5", 2, 32)]:
        (root / folder).mkdir(parents=True)
        for i in range(count):
            smooth = np.kron(rng.integers(0, 256, (size // 8, size // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
            Image.fromarray(smooth).save(root / folder / f"img{i}.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "train/T91/too_small.png")
    return root


def run(argv: list[str]) -> None:
    train.main(argv + ["--batch-size", "2", "--crop", "32", "--log-every", "1", "--no-final-eval", "--threads", "1"])


def stop_after(steps: int) -> type:
    """A `train.StopFlag` that asks the loop to stop, as SIGINT would, after `steps` steps."""

    class StopAfter:
        def __init__(self) -> None:
            self.checks = 0

        @property
        def requested(self) -> bool:
            self.checks += 1
            return self.checks > steps

        def restore(self) -> None:
            pass

    return StopAfter


def test_resume_continues_exactly(tiny_data: Path, vgg_weights: Path, tmp_path: Path) -> None:
    init = tmp_path / "init.safetensors"
    torch.manual_seed(3)
    save_file(Generator().state_dict(), str(init))
    common = ["--method", "srgan-vgg22", "--init", str(init), "--data-root", str(tiny_data), "--vgg-weights", str(vgg_weights), "--eval-every", "0"]

    run(common + ["--iters", "5", "--run-dir", str(tmp_path / "a"), "--out", str(tmp_path / "a.safetensors")])
    run(common + ["--iters", "3", "--run-dir", str(tmp_path / "b"), "--out", str(tmp_path / "b.safetensors")])
    run(common + ["--iters", "5", "--resume", "--run-dir", str(tmp_path / "b"), "--out", str(tmp_path / "b.safetensors")])

    straight, resumed = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert not torch.equal(straight["head.0.weight"], load_file(str(init))["head.0.weight"])  # it trained
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    disc_a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["discriminator"]
    disc_b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["discriminator"]
    assert all(torch.equal(disc_a[k], disc_b[k]) for k in disc_a)

    card = json.loads((tmp_path / "b.json").read_text())
    assert card["iterations"] == 5 and card["method"] == "srgan-vgg22" and len(card["runs"]) == 2
    assert [(r["from_iteration"], r["iterations"], r["batch_size"]) for r in card["runs"]] == [(0, 3, 2), (3, 5, 2)]
    assert card["samples_seen"] == 10 and card["hardware"] and card["runs"][0]["hardware"] == card["hardware"]
    assert card["init"]["weights"] == str(init) and card["init"]["sha256"] == sha256_file(init)  # kept across the resume
    assert card["runs"][1]["vgg19"] == {"weights": str(vgg_weights), "sha256": sha256_file(vgg_weights)}  # the loss network it used
    rows = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]
    d_fake = [float(r.split(",")[8]) for r in rows[1:]]
    assert all(0 < v < 1 for v in d_fake)


def test_a_resume_after_a_hard_kill_drops_the_log_rows_past_the_checkpoint(tiny_data: Path, tmp_path: Path, caplog) -> None:
    """Killed (no checkpoint) after logging steps past the last checkpoint: the resume trains those steps again and
    logs them once."""
    common = ["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--run-dir", str(tmp_path / "r"),
              "--out", str(tmp_path / "w.safetensors")]
    run(common + ["--iters", "3"])
    log_path = tmp_path / "r" / "log.csv"
    header, *rows = log_path.read_text().splitlines()
    log_path.write_text("\n".join([header, *rows, *(f"{i}," + rows[-1].split(",", 1)[1] for i in (4, 5))]) + "\n")  # logged, then killed
    with caplog.at_level(logging.INFO):
        run(common + ["--iters", "5", "--resume", "--lr", "1e-4"])
    assert pd.read_csv(log_path)["iteration"].tolist() == [1, 2, 3, 4, 5]
    assert "dropped 2 log rows after the checkpoint's iteration 3" in caplog.text
    assert "--resume with other settings than the run before, as given: learning rate 7.07107e-05 -> 0.0001" in caplog.text
    assert json.loads((tmp_path / "w.json").read_text())["log"] == str(log_path)  # a run's own weights name its own log
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644  # readable like the card, not 0600
    fresh = tmp_path / "fresh"  # continuing those weights in a new folder, with no step left to run: nothing is left there
    run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--run-dir", str(fresh),
         "--out", str(tmp_path / "w.safetensors"), "--iters", "5", "--resume"])
    assert not (fresh / "log.csv").exists()


def test_a_stop_logs_the_steps_since_the_last_row_and_rows_give_the_rate_their_steps_ran_at(tiny_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(train, "StopFlag", stop_after(6))
    train.main(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "10", "--log-every", "4", "--decay-at", "4",
                "--eval-every", "0", "--batch-size", "2", "--crop", "32", "--no-final-eval", "--threads", "1",
                "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")])
    log = pd.read_csv(tmp_path / "r" / "log.csv")
    assert log["iteration"].tolist() == [4, 6]  # the row every 4 steps, and the 2 steps before the stop
    lr = train.scaled_lr(2e-4, 2)
    assert log["lr"].tolist() == pytest.approx([lr, lr / 10])  # step 4 ran at the first rate, steps 5-6 at the dropped one


def test_a_bare_resume_continues_an_interrupted_run_with_its_own_settings(tiny_data: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    """Stopped by a signal at step 3 of 6: `--resume` alone takes the run's batch size, crop, rate, drop and target
    iteration from its checkpoint (not the preset's), and ends with the weights of the run never stopped."""
    base = ["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--log-every", "1", "--no-final-eval", "--threads", "1"]
    settings = ["--iters", "6", "--batch-size", "2", "--crop", "32", "--lr", "3e-4", "--decay-at", "4", "--ema-decay", "0.5", "--amp", "off"]
    train.main(base + settings + ["--run-dir", str(tmp_path / "a"), "--out", str(tmp_path / "a.safetensors")])
    with monkeypatch.context() as patch:
        patch.setattr(train, "StopFlag", stop_after(3))
        train.main(base + settings + ["--run-dir", str(tmp_path / "b"), "--out", str(tmp_path / "b.safetensors")])
    assert json.loads((tmp_path / "b.json").read_text())["iterations"] == 3
    with caplog.at_level(logging.INFO):
        train.main(base + ["--resume", "--run-dir", str(tmp_path / "b"), "--out", str(tmp_path / "b.safetensors")])
    assert "--resume: continuing with the run's own --crop 32 --batch-size 2 --lr 0.0003 --decay-at 4 --iters 6 --ema-decay 0.5 --amp off" in caplog.text
    card = json.loads((tmp_path / "b.json").read_text())
    assert [(r["from_iteration"], r["iterations"], r["batch_size"], r["lr"], r["decay_at"], r["target_iterations"], r["ema_decay"], r["amp"])
            for r in card["runs"]] == [(0, 3, 2, 3e-4, 4, 6, 0.5, "off"), (3, 6, 2, 3e-4, 4, 6, 0.5, "off")]
    assert pd.read_csv(tmp_path / "b" / "log.csv")["lr"].tolist() == pytest.approx([3e-4] * 4 + [3e-5] * 2)
    straight, resumed = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)  # the moving average kept, in float32
    with caplog.at_level(logging.INFO):  # another batch size, no --lr: the run's rate moved by the square-root rule
        train.main(base + ["--resume", "--iters", "7", "--batch-size", "4", "--run-dir", str(tmp_path / "b"), "--out", str(tmp_path / "b.safetensors")])
    assert json.loads((tmp_path / "b.json").read_text())["runs"][-1]["lr"] == pytest.approx(3e-4 * 2**0.5)


def test_a_run_puts_the_signal_handlers_back_and_a_second_signal_acts_as_before(tiny_data: Path, tmp_path: Path) -> None:
    """The GPU campaign trains its stages in one process: after a run (or its first signal) SIGINT and SIGTERM do what
    they did before it, not set the flag of a run that has ended."""
    def before(signum: int, frame: object) -> None:
        pass

    previous = {sig: signal.signal(sig, before) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "1", "--eval-every", "0", "--run-dir", str(tmp_path / "r"),
             "--out", str(tmp_path / "w.safetensors")])
        assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGINT) is before
        stop = train.StopFlag()
        assert signal.getsignal(signal.SIGTERM) == stop.request
        stop.request(signal.SIGTERM, None)
        assert stop.requested and signal.getsignal(signal.SIGTERM) is before
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_outputs_and_data_are_checked_before_any_training(tiny_data: Path, tmp_path: Path) -> None:
    common = ["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "2", "--run-dir", str(tmp_path / "r")]
    (tmp_path / "file").write_text("")
    for out, message in [(tmp_path, "give a file name ending .safetensors"), (tmp_path / "w.pt", "ending .safetensors"),
                         (tmp_path / "file" / "w.safetensors", "not a writable folder")]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            run(common + ["--out", str(out)])
    with pytest.raises(SystemExit, match="--run-dir .* is a file"):
        run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--run-dir", str(tmp_path / "file"), "--out", str(tmp_path / "w.safetensors")])
    with pytest.raises(SystemExit, match="no Set14 images"):  # the final evaluation's benchmarks, missing from this data folder
        train.main(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "2", "--batch-size", "2", "--crop", "32",
                    "--run-dir", str(tmp_path / "r2"), "--out", str(tmp_path / "w2.safetensors")])
    assert not (tmp_path / "r2").exists() and not (tmp_path / "w2.safetensors").exists()


def test_validation_psnr_and_artefacts_are_logged(tiny_data: Path, tmp_path: Path) -> None:
    run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "2", "--eval-every", "2",
         "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")])
    last = pd.read_csv(tmp_path / "r" / "log.csv").iloc[-1]
    assert 5 < last["set5_psnr"] < 60  # Set5 PSNR of a barely trained network, in dB
    assert 0 <= last["set5_colour_shift"] < 255 and 0 <= last["set5_grid"] < 255  # and its artefacts, in levels


def test_validations_are_logged_at_every_eval_step_even_between_log_rows(tiny_data: Path, tmp_path: Path) -> None:
    train.main(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "4", "--eval-every", "3", "--log-every", "2",
                "--batch-size", "2", "--crop", "32", "--no-final-eval", "--threads", "1",
                "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")])
    log = pd.read_csv(tmp_path / "r" / "log.csv")
    assert log["iteration"].tolist() == [2, 3, 4]  # the log rows, and a row for the validation at 3 (no multiple of 2)
    assert log["set5_psnr"].notna().tolist() == [False, True, False]


def test_vgg_weights_for_an_mse_method_are_said_to_be_unused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        train.Trainer(train.parse_args(["--method", "srresnet-mse", "--vgg-weights", "elsewhere.safetensors", "--device", "cpu"]))
    assert "--vgg-weights elsewhere.safetensors is not used: srresnet-mse's content loss is MSE" in caplog.text


def test_help_shows_no_default_of_none(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    shown = capsys.readouterr().out
    assert "(default: None)" not in shown and "(default: 0)" in shown  # --seed's default is still shown


def test_srgan_without_srresnet_weights_is_refused(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = ["--method", "srgan-mse", "--data-root", str(tiny_data), "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")]
    with pytest.raises(SystemExit, match=r"^error: --init \S+missing.safetensors does not exist$"):
        run(common + ["--init", str(tmp_path / "missing.safetensors")])
    monkeypatch.setattr("srgan_core.method_specs.MODELS_DIR", tmp_path / "no-models")  # no shipped SRResNet-MSE to start from
    with pytest.raises(SystemExit, match="train srresnet-mse first or pass --init PATH"):
        run(common)


SLOW_SECOND_PROCESS = """
import sys, time
from srgan_core import train

looked = train.Trainer.initialise


def late(self):  # as on a busy machine: the second process looks at the run folder after the first began writing
    if self.rank == 1:
        time.sleep(2)
    looked(self)


train.Trainer.initialise = late
train.main(sys.argv[1:])
"""


def test_ddp_two_processes_on_cpu(tiny_data: Path, tmp_path: Path) -> None:
    """Two processes (gloo), the second one late: it must not take the first one's new log for another run's."""
    script = tmp_path / "slow_second_process.py"
    script.write_text(SLOW_SECOND_PROCESS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "2", "--batch-size", "4", "--crop", "32",
           "--eval-every", "0", "--no-final-eval", "--threads", "1", "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-10000:]  # the workers' tracebacks come before the launcher's summary
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["processes"] == 2 and card["iterations"] == 2
    assert set(load_file(str(tmp_path / "w.safetensors"))) == set(Generator().state_dict())


def test_learning_rate_drops_tenfold_at_the_decay_iteration(tiny_data: Path) -> None:
    args = train.parse_args(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--decay-at", "4", "--device", "cpu"])
    trainer = train.Trainer(args)
    for iteration, lr in [(3, 2e-4), (4, 2e-5)]:
        trainer.progress.iteration = iteration
        trainer.set_lr()
        assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(lr)
    never = train.Trainer(train.parse_args(["--method", "srresnet-mse", "--decay-at", "0", "--device", "cpu"]))
    assert never.schedule.decay_at is None
    assert train.Trainer(train.parse_args(["--method", "srresnet-mse", "--device", "cpu"])).schedule.decay_at == 8_000


@pytest.mark.parametrize("preset", sorted(train_config.PRESETS))
@pytest.mark.parametrize("method", sorted(LEARNED))
def test_every_schedule_drops_its_rate_inside_its_budget(method: str, preset: str) -> None:
    schedule = train_config.schedule_for(method, preset)
    assert schedule.decay_at is None or 0 < schedule.decay_at < schedule.iters


def test_cpu_srresnet_vgg22_fine_tunes_srresnet_mse_instead_of_training_from_scratch() -> None:
    assert train_config.recipe_for("srresnet-vgg22", "cpu").init_method == "srresnet-mse"
    assert train_config.recipe_for("srresnet-vgg22", "paper").init_method is None
    fine_tune, from_scratch = train_config.schedule_for("srresnet-vgg22", "cpu"), train_config.schedule_for("srresnet-mse", "cpu")
    assert fine_tune.iters < from_scratch.iters and fine_tune.lr < from_scratch.lr


@pytest.mark.parametrize("amp, generator_dtype", [("auto", torch.bfloat16), ("losses", torch.float32)])
def test_cpu_mixed_precision_casts_the_whole_step_or_the_loss_networks_only(
    tiny_data: Path, vgg_weights: Path, monkeypatch: pytest.MonkeyPatch, amp: str, generator_dtype: torch.dtype
) -> None:
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    common = ["--method", "srgan-vgg54", "--data-root", str(tiny_data), "--vgg-weights", str(vgg_weights),
              "--batch-size", "2", "--crop", "32", "--device", "cpu"]
    trainer = train.Trainer(train.parse_args(common + ["--amp", amp]))
    assert trainer.amp_dtype == torch.bfloat16 and ("whole step" in trainer.precision) == (amp == "auto")
    seen: dict[str, torch.dtype] = {}
    for name, module in [("generator", trainer.generator.head), ("vgg", trainer.vgg_loss.features.net), ("discriminator", trainer.discriminator.classifier)]:
        module.register_forward_hook(lambda m, i, out, name=name: seen.update({name: out.dtype}) and None)
    before = trainer.generator.head[0].weight.detach().clone()
    stats = trainer.step(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert seen == {"generator": generator_dtype, "vgg": torch.bfloat16, "discriminator": torch.bfloat16}
    assert all(np.isfinite(v) for v in stats.values()) and not torch.equal(before, trainer.generator.head[0].weight)
    assert trainer.generator.head[0].weight.dtype == torch.float32  # the weights themselves stay float32
    assert train.Trainer(train.parse_args(common + ["--amp", "off"])).amp_dtype is None


def test_resuming_shipped_weights_keeps_their_log(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    save_file(Generator().state_dict(), str(out))
    shipped = tmp_path / "shipped_log.csv"
    shipped.write_text("iteration,lr\n1,0.0002\n2,0.0002\n3,0.0002\n")  # row 3 came after the weights were exported
    init = {"weights": "results/models/srresnet-mse.safetensors", "sha256": "ab" * 32, "iterations": 7}
    out.with_suffix(".json").write_text(json.dumps({"iterations": 2, "log": str(shipped), "init": init}))
    run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "3", "--eval-every", "0", "--resume",
         "--run-dir", str(tmp_path / "r"), "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text())["init"] == init  # what the first run started from stays on the card
    log = pd.read_csv(tmp_path / "r" / "log.csv")
    assert list(log.columns) == training_log.CsvLog.FIELDS  # the older shipped log gained today's columns
    assert log["iteration"].tolist() == [1, 2, 3] and log["lr"].tolist()[:2] == [0.0002, 0.0002]
    assert log.iloc[:2]["loss_g"].isna().all() and log.iloc[2].notna()["loss_g"]  # row 3 is the new run's, not the stale one


def test_a_log_with_unknown_columns_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("iteration,mystery\n1,2\n")
    with pytest.raises(SystemExit, match="mystery"):
        training_log.CsvLog(path)
    assert path.read_text() == "iteration,mystery\n1,2\n"


def test_adversarial_term_is_summed_over_the_papers_batch_as_in_eq_6(tiny_data: Path, vgg_weights: Path) -> None:
    """1e-3 x the sum over the paper's 16 samples = 16e-3 x the batch mean, whatever batch the run uses."""
    common = ["--method", "srgan-vgg54", "--data-root", str(tiny_data), "--vgg-weights", str(vgg_weights),
              "--batch-size", "4", "--crop", "32", "--device", "cpu", "--amp", "off"]
    trainer = train.Trainer(train.parse_args(common))
    assert trainer.adversarial_scale == pytest.approx(16e-3)
    stats = trainer.step(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    assert float(stats["loss_g"]) == pytest.approx(float(stats["loss_content"]) + 16e-3 * float(stats["loss_adv"]), rel=1e-5)
    mean = train.Trainer(train.parse_args(common + ["--adversarial-reduction", "mean"]))
    assert mean.adversarial_scale == pytest.approx(1e-3)
    assert train.Trainer(train.parse_args(["--method", "srresnet-mse", "--device", "cpu"])).adversarial_scale == 0.0
    with pytest.raises(ValueError, match="adversarial reduction"):
        losses.adversarial_scale("max")


@pytest.mark.parametrize("mode, batches", [("separate", [2, 2, 2]), ("joint", [4, 4])])
def test_discriminator_sees_hr_and_sr_separately_or_as_one_batch(tiny_data: Path, vgg_weights: Path, mode: str, batches: list[int]) -> None:
    args = train.parse_args(["--method", "srgan-vgg54", "--data-root", str(tiny_data), "--vgg-weights", str(vgg_weights),
                             "--batch-size", "2", "--crop", "32", "--device", "cpu", "--amp", "off", "--discriminator-batch", mode])
    trainer = train.Trainer(args)
    seen: list[int] = []
    trainer.discriminator.register_forward_hook(lambda m, inputs, out: seen.append(len(inputs[0])) and None)
    stats = trainer.step(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert seen == batches  # D step: HR and SR; G step: SR (with HR when joint)
    assert 0 < stats["d_real"] < 1 and 0 < stats["d_fake"] < 1
    assert train.parse_args(["--method", "srgan-vgg54"]).discriminator_batch == "joint"


def test_learning_rate_follows_the_batch_size_by_the_square_root_rule() -> None:
    def lr(*extra: str) -> float:
        return train.Trainer(train.parse_args(["--method", "srresnet-mse", "--device", "cpu", *extra])).schedule.lr

    assert lr() == pytest.approx(2e-4)  # the cpu preset's rate, stated for the paper's batch of 16
    assert lr("--batch-size", "64") == pytest.approx(4e-4) and lr("--batch-size", "4") == pytest.approx(1e-4)
    assert lr("--batch-size", "64", "--lr", "1e-3") == pytest.approx(1e-3)  # an explicit rate is taken as given


def test_time_budget_stops_cleanly_and_exports(tiny_data: Path, tmp_path: Path) -> None:
    run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "100000", "--eval-every", "0",
         "--time-budget", "3", "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")])
    card = json.loads((tmp_path / "w.json").read_text())
    assert 0 < card["iterations"] < 100000 and card["samples_seen"] == 2 * card["iterations"]
    assert card["runs"][-1]["iterations"] == card["iterations"] and "time-budget" in card["runs"][-1]["command"]
    assert len(pd.read_csv(tmp_path / "r" / "log.csv")) == card["iterations"]  # a log row per iteration (--log-every 1)
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["iteration"] == card["iterations"]


def test_runs_never_overwrite_work_they_did_not_do(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fresh run over a checkpoint, a checkpoint of another method or crop, bad numbers, and a run that trains
    nothing each leave the checkpoint, weights, card and log as they were."""
    common = ["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--run-dir", str(tmp_path / "r"),
              "--out", str(tmp_path / "w.safetensors")]
    run(common + ["--iters", "3"])
    kept = {p: p.read_bytes() for p in [tmp_path / "w.safetensors", tmp_path / "w.json", tmp_path / "r" / "checkpoint.pt", tmp_path / "r" / "log.csv"]}

    with pytest.raises(SystemExit, match="pass --resume to continue it, or another --run-dir"):
        run(common + ["--iters", "2"])
    with pytest.raises(SystemExit, match="run with crop 32, not 48"):
        train.main(common + ["--iters", "5", "--resume", "--batch-size", "2", "--crop", "48", "--no-final-eval"])
    for flag, value in [("--iters", "-5"), ("--iters", "0"), ("--time-budget", "0"), ("--log-every", "0"), ("--batch-size", "-2")]:
        with pytest.raises(SystemExit):
            train.parse_args(["--method", "srresnet-mse", flag, value])
        assert f"argument {flag}: {value}: give a number above 0" in capsys.readouterr().err
    run(common + ["--iters", "3", "--resume"])  # already at --iters: nothing to train, nothing rewritten
    assert {p: p.read_bytes() for p in kept} == kept

    damaged = tmp_path / "d"
    damaged.mkdir()
    (damaged / "checkpoint.pt").write_bytes(kept[tmp_path / "r" / "checkpoint.pt"][:1000])
    with pytest.raises(SystemExit, match="cannot be read .* it is damaged"):
        run([*common[:6], "--run-dir", str(damaged), "--out", str(tmp_path / "w.safetensors"), "--iters", "5", "--resume"])
    assert {p: p.read_bytes() for p in kept} == kept
    elsewhere = [*common[:4], "--eval-every", "0", "--run-dir", str(tmp_path / "r2"), "--out", str(tmp_path / "w.safetensors"), "--iters", "1"]
    with pytest.raises(SystemExit, match=r"w.safetensors holds weights trained for 3 iterations that this run does not continue"):
        run(elsewhere)  # a fresh run into other weights' --out (the default --out is the shipped weights)
    assert {p: p.read_bytes() for p in kept} == kept
    other = [*common[:4], "--eval-every", "0", "--run-dir", str(tmp_path / "r3"), "--out", str(tmp_path / "other.safetensors"), "--iters", "1"]
    run(other)  # another run, with a checkpoint of its own and its own weights
    kept = {p: p.read_bytes() for p in [tmp_path / "w.safetensors", tmp_path / "w.json"]}
    with pytest.raises(SystemExit, match="--resume continues them only from their card or from the checkpoint of the run that wrote them"):
        run([*other[:8], "--out", str(tmp_path / "w.safetensors"), "--iters", "2", "--resume"])  # resumes r3, which wrote other weights
    (tmp_path / "w.json").unlink()  # weights without a card, and no checkpoint: --resume starts afresh
    with pytest.raises(SystemExit, match="w.safetensors holds weights that this run does not continue"):
        run([*common[:4], "--eval-every", "0", "--run-dir", str(tmp_path / "r4"), "--out", str(tmp_path / "w.safetensors"), "--resume"])
    assert (tmp_path / "w.safetensors").read_bytes() == kept[tmp_path / "w.safetensors"]
    run(elsewhere + ["--overwrite", "--no-final-eval"])
    assert json.loads((tmp_path / "w.json").read_text())["iterations"] == 1


@pytest.mark.parametrize("broken", ["loss", "weights"])
def test_a_run_whose_loss_or_weights_turn_nan_stops_and_keeps_the_last_good_state(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    common = ["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--run-dir", str(tmp_path / "r"),
              "--out", str(tmp_path / "w.safetensors")]
    run(common + ["--iters", "2"])
    kept = {p: p.read_bytes() for p in [tmp_path / "w.safetensors", tmp_path / "w.json", tmp_path / "r" / "checkpoint.pt"]}
    step = train.Trainer.step

    def diverging(self: train.Trainer, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = step(self, batch)
        if broken == "loss" and self.progress.iteration >= 3:
            stats["loss_g"] = torch.tensor(float("nan"))
        if broken == "weights" and self.progress.iteration == 7:  # the last step: its loss was still finite
            with torch.no_grad():
                self.generator.head[0].weight.fill_(float("nan"))
        return stats

    monkeypatch.setattr(train.Trainer, "step", diverging)
    with pytest.raises(SystemExit) as stopped:
        run(common + ["--iters", "8", "--resume"])
    assert stopped.value.code == 1
    assert {p: p.read_bytes() for p in kept} == kept


def test_a_checkpoint_resumes_only_as_its_own_method(tiny_data: Path, vgg_weights: Path, tmp_path: Path) -> None:
    common = ["--data-root", str(tiny_data), "--eval-every", "0", "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")]
    run(["--method", "srresnet-mse", *common, "--iters", "2"])
    with pytest.raises(SystemExit, match="run with method srresnet-mse, not srresnet-vgg22"):
        run(["--method", "srresnet-vgg22", *common, "--vgg-weights", str(vgg_weights), "--iters", "4", "--resume"])


def test_resume_with_a_new_out_continues_the_shipped_weights(tiny_data: Path, tmp_path: Path, models_dir: Path) -> None:
    run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--iters", "2",
         "--run-dir", str(tmp_path / "first"), "--out", str(models_dir / "srresnet-mse.safetensors")])
    out = tmp_path / "elsewhere.safetensors"
    run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--iters", "3", "--resume",
         "--run-dir", str(tmp_path / "second"), "--out", str(out)])
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["iterations"] == 3 and [r["from_iteration"] for r in card["runs"]] == [0, 2]


def test_vgg_losses_refuse_the_torchvision_fallback_unless_asked(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRGAN_DATA", str(tiny_data))  # a data folder without VGG19 weights
    monkeypatch.delenv("SRGAN_VGG19_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match=r"srgan_core.data download.*--vgg-weights torchvision"):
        train.Trainer(train.parse_args(["--method", "srgan-vgg54", "--data-root", str(tiny_data), "--device", "cpu"]))


def test_validation_logs_set5_niqe_on_the_matlab_scale(data_root: Path, tmp_path: Path) -> None:
    run(["--method", "srresnet-mse", "--data-root", str(data_root), "--init", str(REPO_ROOT / "results/models/srresnet-mse.safetensors"),
         "--iters", "1", "--eval-every", "1", "--lr", "1e-9", "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")])
    last = pd.read_csv(tmp_path / "r" / "log.csv").iloc[-1]
    assert 4 < last["set5_niqe"] < 12  # the shipped SRResNet-MSE scores 7.4 on Set5 (results/benchmarks.md)
    assert last["set5_psnr"] > 30


def test_command_line_builds_a_frozen_config_with_the_config_defaults() -> None:
    config = train.parse_args(["--method", "srgan-vgg54", "--no-final-eval", "--init", "x.safetensors"])
    assert config == train_config.TrainConfig(
        method="srgan-vgg54", final_eval=False, init_weights=Path("x.safetensors"), command=config.command
    )
    assert config.command.startswith("python -m srgan_core.train ")
    with pytest.raises(AttributeError):
        config.iters = 5  # type: ignore[misc]


def test_snapshots_keep_the_generator_every_n_iterations(tiny_data: Path, tmp_path: Path) -> None:
    run(["--method", "srresnet-mse", "--data-root", str(tiny_data), "--iters", "5", "--eval-every", "0", "--snapshot-every", "2",
         "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")])
    snapshots = sorted((tmp_path / "r" / "snapshots").iterdir())
    assert [p.name for p in snapshots] == ["0000002.safetensors", "0000004.safetensors"]
    second, final = load_file(str(snapshots[1])), load_file(str(tmp_path / "w.safetensors"))
    assert second.keys() == final.keys() and all(v.dtype == torch.float32 for v in second.values())
    assert not torch.equal(second["head.0.weight"], final["head.0.weight"])  # iteration 4, not the exported 5
    Generator().load_state_dict(second)  # a complete generator


def test_ema_exports_the_moving_average_of_the_trained_weights_and_resumes_exactly(tiny_data: Path, tmp_path: Path) -> None:
    init = tmp_path / "init.safetensors"
    torch.manual_seed(5)
    save_file(Generator().state_dict(), str(init))
    common = ["--method", "srresnet-mse", "--init", str(init), "--data-root", str(tiny_data), "--eval-every", "0", "--ema-decay", "0.5"]
    run(common + ["--iters", "4", "--snapshot-every", "1", "--run-dir", str(tmp_path / "a"), "--out", str(tmp_path / "a.safetensors")])
    run(common + ["--iters", "2", "--run-dir", str(tmp_path / "b"), "--out", str(tmp_path / "b.safetensors")])
    run(common + ["--iters", "4", "--resume", "--run-dir", str(tmp_path / "b"), "--out", str(tmp_path / "b.safetensors")])

    # the average by hand from the trained weights of each iteration: ema_0 = init, ema_t = 0.5 ema_(t-1) + 0.5 w_t
    expected = load_file(str(init))
    for i in range(1, 5):
        trained = load_file(str(tmp_path / "a" / "snapshots" / f"{i:07d}.safetensors"))
        expected = {k: 0.5 * v + 0.5 * trained[k] if v.is_floating_point() else trained[k] for k, v in expected.items()}
    exported, resumed = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    for key, value in exported.items():
        if not key.endswith("num_batches_tracked"):  # a counter BatchNorm does not use at its fixed momentum
            torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)
        assert torch.equal(value, resumed[key]), key  # resumed from its checkpoint, average included
    live = load_file(str(tmp_path / "a" / "snapshots" / "0000004.safetensors"))
    assert not torch.equal(exported["tail.weight"], live["tail.weight"])  # not the trained weights themselves
    card = json.loads((tmp_path / "a.json").read_text())
    assert card["ema_decay"] == 0.5 and "--ema-decay 0.5" in card["rerun"][-1]


def test_card_rerun_lines_remake_weights_whose_moving_average_began_mid_run(tiny_data: Path, tmp_path: Path) -> None:
    init = tmp_path / "init.safetensors"
    torch.manual_seed(6)
    save_file(Generator().state_dict(), str(init))
    common = ["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--run-dir", str(tmp_path / "a"),
              "--out", str(tmp_path / "a.safetensors")]
    run(common + ["--iters", "2", "--init", str(init)])
    run(common + ["--iters", "4", "--resume", "--ema-decay", "0.5"])  # the average begins at iteration 2
    card = json.loads((tmp_path / "a.json").read_text())
    fetch, stages = card["rerun"][:-2], card["rerun"][-2:]
    assert not fetch and "--ema-decay" not in stages[0] and "--iters 2 " in stages[0] and "--iters 4 " in stages[1]

    for line in stages:  # as a user would run them from the repository root, with the runs/ folder under tmp_path
        words = shlex.split(line.replace(" runs/", f" {tmp_path}/runs/"))
        assert words[:3] == ["python", "-m", "srgan_core.train"]
        run(words[3:] + ["--data-root", str(tiny_data), "--eval-every", "0"])
    original, remade = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "runs" / "srresnet-mse-rerun.safetensors"))
    assert all(torch.equal(original[k], remade[k]) for k in original)


def test_ema_starts_at_the_weights_a_run_resumes(tiny_data: Path, tmp_path: Path) -> None:
    common = ["--method", "srresnet-mse", "--data-root", str(tiny_data), "--eval-every", "0", "--iters", "2",
              "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "w.safetensors")]
    run(common)
    before = load_file(str(tmp_path / "w.safetensors"))
    trainer = train.Trainer(train.parse_args(common + ["--resume", "--ema-decay", "0.9", "--batch-size", "2", "--crop", "32"]))
    trainer.initialise()  # a checkpoint without an average: it starts at the resumed generator
    after = trainer.exported.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(SystemExit, match="--ema-decay must be in"):
        train.Trainer(train.parse_args(["--method", "srresnet-mse", "--ema-decay", "1", "--device", "cpu"]))


def test_the_step_s_moving_average_is_torch_s_update() -> None:
    """update_average (no GPU waits) leaves every weight, statistic and counter as AveragedModel.update_parameters."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    generator = Generator(channels=8)
    ours, torchs = (AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(0.7), use_buffers=True) for _ in range(2))
    for average in (ours, torchs):  # started at the generator
        average.update_parameters(generator)
    for _ in range(3):
        generator(torch.rand(2, 3, 8, 8))  # training mode: moves the BatchNorm statistics and counters
        with torch.no_grad():
            for p in generator.parameters():
                p.add_(torch.randn_like(p))
        torchs.update_parameters(generator)
        train.update_average(ours, generator, 0.7)
    expected, got = torchs.state_dict(), ours.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
    assert int(got["n_averaged"]) == 4


def test_provenance_score_writes_the_benchmarks_block_a_finished_run_writes(tiny_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    for dataset in ("Set14", "BSD100"):
        shutil.copytree(tiny_data / "benchmarks" / "Set5", root / "benchmarks" / dataset)
    out = tmp_path / "w.safetensors"
    train.main(["--method", "srresnet-mse", "--data-root", str(root), "--iters", "2", "--eval-every", "0", "--batch-size", "2",
                "--crop", "32", "--threads", "1", "--ema-decay", "0.5", "--run-dir", str(tmp_path / "r"), "--out", str(out)])
    card = json.loads(out.with_suffix(".json").read_text())
    finished = card.pop("benchmarks")  # what a run that stopped by --iters wrote
    assert set(finished) == {"Set5", "Set14", "BSD100"} and 5 < finished["Set5"]["psnr"] < 60
    out.with_suffix(".json").write_text(json.dumps(card))  # as a run stopped by a signal leaves it

    assert provenance.main(["--score", str(out.with_suffix(".json")), "--data-root", str(root)]) == 0
    assert json.loads(out.with_suffix(".json").read_text()) == {**card, "benchmarks": finished}


def test_provenance_score_without_data_leaves_the_card_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    card = tmp_path / "w.json"
    save_file(Generator().state_dict(), str(card.with_suffix(".safetensors")))
    card.write_text('{"method": "srresnet-mse", "iterations": 2}')
    assert provenance.main(["--score", str(card), "--data-root", str(tmp_path / "no-data")]) == 1
    assert card.read_text() == '{"method": "srresnet-mse", "iterations": 2}'
    assert "w.json: not scored" in capsys.readouterr().err


def test_help_gives_defaults_but_not_a_switchs_own(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "adds it later)" in text and "(default: True)" not in text and "(default: False)" not in text
    assert "crop sampler (default: 0)" in text  # other options keep theirs
