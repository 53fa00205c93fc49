"""Every shipped model card says how its weights were made, and a user can get their starting weights and rerun them."""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import save_file

from srgan_core import provenance, train
from srgan_core.models import Generator
from srgan_core.paths import MODELS_DIR, REPO_ROOT
from srgan_core.vgg import ORIGINAL

CARDS = sorted(MODELS_DIR.glob("*.json"))


def git_history_available() -> bool:
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO_ROOT, capture_output=True, text=True)
    return shallow.returncode == 0 and shallow.stdout.strip() == "false"


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_card_states_hardware_precision_batch_iterations_and_samples(path: Path) -> None:
    card = json.loads(path.read_text())
    assert card["hardware"] and card["precision"] and card["iterations"] > 0
    assert card["schedule"]["batch_size"] > 0 and card["samples_seen"] >= card["iterations"]
    assert card["runs"] and all(run["command"].startswith("python -m srgan_core.train ") and run["batch_size"] for run in card["runs"])


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_card_hardware_and_precision_cover_every_run(path: Path) -> None:
    card = json.loads(path.read_text())
    for key in ("hardware", "precision"):
        assert all(run[key] in card[key] for run in card["runs"]), key  # not only the last run's


def test_hardware_and_precision_are_summed_over_the_runs_that_used_them() -> None:
    old = {"hardware": "a CPU (model not recorded)", "precision": "float32"}  # before runs recorded their iterations
    cpu = {"hardware": "AMD EPYC, 1 thread", "precision": "bfloat16", "from_iteration": 1000, "iterations": 1500}
    gpu = {"hardware": "NVIDIA H200", "precision": "bfloat16", "from_iteration": 1500, "iterations": 1800}
    runs = [old, old, cpu, gpu]
    assert provenance.across_runs(runs, "hardware", 1800) == (
        "a CPU (model not recorded) (1,000 iterations); AMD EPYC, 1 thread (500 iterations); NVIDIA H200 (300 iterations)")
    assert provenance.across_runs(runs, "precision", 1800) == "float32 (1,000 iterations); bfloat16 (800 iterations)"
    assert provenance.across_runs([cpu, {**cpu, "from_iteration": 1500}], "hardware", 2000) == "AMD EPYC, 1 thread"
    assert provenance.across_runs([{"hardware": "A"}, {"hardware": "B"}, gpu], "hardware", 1800) == "A; B; NVIDIA H200 (300 iterations)"
    assert provenance.across_runs([{}, cpu], "precision", 1500) == "not recorded (1,000 iterations); bfloat16 (500 iterations)"


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_card_rerun_commands_parse_and_never_overwrite_the_shipped_weights(path: Path) -> None:
    card = json.loads(path.read_text())
    fetch = [line for line in card["rerun"] if not line.startswith("python -m srgan_core.train ")]
    stages = [train.parse_args(shlex.split(line)[3:]) for line in card["rerun"][len(fetch):]]
    assert stages and all(args.method == card["method"] and args.out.parts[0] == args.run_dir.parts[0] == "runs" for args in stages)
    assert [args.iters for args in stages] == sorted({args.iters for args in stages}) and stages[-1].iters == card["iterations"]
    assert all(args.resume for args in stages[1:]) and (stages[-1].ema_decay or None) == card.get("ema_decay")
    if card.get("init"):
        assert fetch == [card["init"]["git_show"]] and str(stages[0].init_weights) == card["init"]["git_show"].rsplit("> ", 1)[1]


@pytest.mark.skipif(not git_history_available(), reason="needs the repository's full git history")
@pytest.mark.parametrize("path", [p for p in CARDS if json.loads(p.read_text()).get("init")], ids=lambda p: p.stem)
def test_card_starting_weights_come_back_from_git_exactly(path: Path) -> None:
    init = json.loads(path.read_text())["init"]
    spec = init["git_show"].split("git show ", 1)[1].split(" > ", 1)[0]
    content = subprocess.run(["git", "show", spec], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    assert hashlib.sha256(content).hexdigest() == init["sha256"]


def test_rerun_stages_follow_the_moving_average_only_where_the_runs_say_where_it_began() -> None:
    def card(*runs: dict) -> dict:
        return {"method": "srgan-vgg54", "preset": "cpu", "seed": 0, "iterations": 300, "ema_decay": 0.99, "runs": list(runs),
                "schedule": {"batch_size": 16, "crop": 96, "lr": 1e-5, "decay_at": None}}

    def decays(card: dict) -> list[tuple[int, float | None]]:
        return [(end, settings.ema_decay) for end, settings in provenance.stages(card)]

    plain = {"command": "python -m srgan_core.train --resume", "batch_size": 16}
    averaged = {"command": "python -m srgan_core.train --ema-decay=0.99", "batch_size": 16}
    assert decays(card(plain, {**averaged, "from_iteration": 120})) == [(120, None), (300, 0.99)]
    assert decays(card(plain, averaged)) == [(300, 0.99)]  # where the average began is not recorded
    assert decays(card(averaged, {**plain, "from_iteration": 200})) == [(300, 0.99)]  # runs and card disagree


def test_rerun_gives_each_stretch_its_own_batch_rate_and_drop() -> None:
    cpu = {"command": "python -m srgan_core.train --method srresnet-mse --resume --lr 1e-4 --decay-at 5000", "batch_size": 16, "lr": 1e-4,
           "from_iteration": 0}
    gpu = {"command": "python -m srgan_core.train --method srresnet-mse --preset paper --batch-size 256 --iters 700 --decay-at 650 --resume",
           "batch_size": 256, "lr": 4e-4, "from_iteration": 600}
    card = {"method": "srresnet-mse", "preset": "paper", "seed": 0, "iterations": 700, "ema_decay": None, "runs": [cpu, gpu], "init": None,
            "schedule": {"batch_size": 256, "crop": 96, "lr": 4e-4, "decay_at": 650}, "adversarial_reduction": None}
    first, second = (train.parse_args(shlex.split(line)[3:]) for line in provenance.rerun(card))
    assert (first.batch_size, first.lr, first.decay_at, first.iters, first.resume) == (16, 1e-4, 5000, 600, False)
    assert (second.batch_size, second.lr, second.decay_at, second.iters, second.resume) == (256, 4e-4, 650, 700, True)
    no_lr = {"command": "python -m srgan_core.train --method srresnet-mse --batch-size 64", "batch_size": 64}  # older cards: the preset's, moved
    kept = {"command": "python -m srgan_core.train --method srresnet-mse --resume", "batch_size": 16, "lr": 1e-4, "decay_at": None,
            "ema_decay": 0.999}  # a bare --resume kept the moving average: the record has it, the command does not
    assert provenance.run_settings("srresnet-mse", kept).ema_decay == 0.999
    assert provenance.run_settings("srresnet-mse", no_lr) == provenance.RunSettings(64, 4e-4, 8000, None)


def test_starting_weights_are_described_with_the_samples_their_card_records(tmp_path: Path) -> None:
    weights = tmp_path / "start.safetensors"
    save_file(Generator().state_dict(), str(weights))
    assert provenance.describe_init(weights)["samples_seen"] is None  # no card
    weights.with_suffix(".json").write_text(json.dumps({"method": "srresnet-mse", "iterations": 100}))
    assert provenance.describe_init(weights)["samples_seen"] == 1600  # a card from before session 7: all at batch 16
    weights.with_suffix(".json").write_text(json.dumps({"method": "srresnet-mse", "iterations": 100, "samples_seen": 25600}))
    assert provenance.describe_init(weights)["samples_seen"] == 25600


def test_rerun_gives_each_stretch_the_precision_and_vgg19_it_ran_with() -> None:
    """A run's recorded precision becomes the --amp that gives it (the generator in float32 before session 7), and a
    VGG loss on torchvision's VGG19 its --vgg-weights; a stretch ends where either changes."""
    def run(start: int, precision: str, **recorded) -> dict:
        return {"command": "python -m srgan_core.train --method srgan-vgg54 --resume", "batch_size": 16, "lr": 1e-5, "from_iteration": start,
                "precision": precision, **recorded}

    runs = [run(0, "bfloat16 autocast for the VGG loss network and the discriminator, generator float32"),
            run(100, "bfloat16 autocast, whole step"), run(200, "float32", vgg19={"weights": "torchvision"})]
    runs[-1]["command"] += " --ema-decay 0.99721059972106"  # as the GPU campaign sets it: every digit comes back
    card = {"method": "srgan-vgg54", "preset": "cpu", "seed": 0, "iterations": 300, "ema_decay": 0.99721059972106, "runs": runs, "init": None,
            "schedule": {"batch_size": 16, "crop": 96, "lr": 1e-5, "decay_at": None}, "adversarial_reduction": "sum", "discriminator_batch": "joint"}
    parsed = [train.parse_args(shlex.split(line)[3:]) for line in provenance.rerun(card)]
    assert [(c.iters, c.amp, c.vgg_weights) for c in parsed] == [(100, "losses", None), (200, "auto", None), (300, "off", "torchvision")]
    assert parsed[-1].ema_decay == card["ema_decay"]


ARCHIVED = sorted(p for p in (REPO_ROOT / "results" / "training").glob("gpu_*/*.json") if "method" in json.loads(p.read_text()))


@pytest.mark.parametrize("path", ARCHIVED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_gpu_campaign_s_kept_cards_name_their_own_log_and_rerun_lines_of_today(path: Path) -> None:
    """Cards of campaign generators not shipped stay beside their logs, and rerun as the card says (the stored lines
    are today's `provenance.rerun`, starting from the weights in git)."""
    card = json.loads(path.read_text())
    assert REPO_ROOT / card["log"] == path.with_name(f"{card['method']}_log.csv") and (REPO_ROOT / card["log"]).is_file()
    assert card["rerun"] == provenance.rerun(card) and card["rerun"][0] == card["init"]["git_show"]


def synthetic_switching_card() -> dict:
    """Stretches that switch the moving average, the precision and the VGG19 on and off again."""
    def run(start: int, precision: str, extra: str = "", **recorded) -> dict:
        return {"command": f"python -m srgan_core.train --method srgan-vgg54 --resume{extra}", "batch_size": 16, "lr": 1e-5,
                "from_iteration": start, "precision": precision, **recorded}

    runs = [run(0, "bfloat16 autocast, whole step", " --ema-decay 0.99", vgg19={"weights": "torchvision"}),
            run(100, "float32"), run(200, "bfloat16 autocast, whole step", " --ema-decay 0.9")]
    return {"method": "srgan-vgg54", "preset": "cpu", "seed": 0, "iterations": 300, "ema_decay": 0.9, "runs": runs, "init": None,
            "schedule": {"batch_size": 16, "crop": 96, "lr": 1e-5, "decay_at": None}, "adversarial_reduction": "sum", "discriminator_batch": "joint"}


@pytest.mark.parametrize("card", [synthetic_switching_card(), *(json.loads(p.read_text()) for p in CARDS + ARCHIVED)],
                         ids=["switching", *(p.stem for p in CARDS), *(f"{p.parent.name}/{p.stem}" for p in ARCHIVED)])
def test_each_resumed_rerun_line_runs_with_what_it_says_not_with_the_stage_before(card: dict, tmp_path: Path, monkeypatch) -> None:
    """A bare --resume keeps the checkpoint's run's settings (`train.resumed`): each stage after the first must name every
    one that differs from the stage before (a moving average, --amp or VGG19 switched off again)."""
    lines = [line for line in card.get("rerun") or provenance.rerun(card) if line.startswith("python -m srgan_core.train ")]
    configs = [train.parse_args(shlex.split(line)[3:]) for line in lines]
    checkpoint_file = tmp_path / "checkpoint.pt"
    checkpoint_file.touch()
    for before, config in itertools.pairwise(configs):
        recorded = {"command": before.command, "batch_size": before.batch_size, "lr": before.lr, "decay_at": before.decay_at or None,
                    "target_iterations": before.iters, "ema_decay": before.ema_decay, "amp": before.amp}
        monkeypatch.setattr(train.checkpoint, "last_run", lambda path, recorded=recorded: (recorded, 96))
        after = train.resumed(config, checkpoint_file)

        def settings(c: train.TrainConfig) -> dict:
            return {f: getattr(c, f) for f in train.RESUMED} | {"vgg_weights": None if c.vgg_weights == ORIGINAL else c.vgg_weights}

        assert settings(after) == settings(config), config.command


def test_rerun_reads_where_unrecorded_runs_began_from_the_log(tmp_path: Path) -> None:
    """Runs from before `from_iteration` was recorded: each stretch between rises of the logged rate goes to the next
    run whose rate and drop it shows; a run the log shows nowhere (stopped, its checkpoint not kept) is left out."""
    rates = [(i, 2e-4 if i < 80 else 2e-5) for i in range(10, 101, 10)] + [(i, 1e-4 if i < 130 else 1e-5) for i in range(110, 151, 10)]
    log = tmp_path / "log.csv"
    log.write_text("iteration,lr\n" + "".join(f"{i},{lr}\n" for i, lr in rates))

    def run(flags: str, **recorded) -> dict:
        return {"command": f"python -m srgan_core.train --method srresnet-mse --preset cpu --resume {flags}", "batch_size": 16, **recorded}

    runs = [run("--lr 2e-4 --decay-at 80"), run("--lr 2e-4 --decay-at 80"), run("--lr 1e-4 --decay-at 190"), run("--lr 1e-4 --decay-at 130"),
            run("--lr 1e-4 --decay-at 170", from_iteration=150, iterations=200, lr=1e-4)]
    card = {"method": "srresnet-mse", "preset": "cpu", "seed": 0, "iterations": 200, "ema_decay": None, "runs": runs, "init": None,
            "log": str(log), "schedule": {"batch_size": 16, "crop": 96, "lr": 1e-4, "decay_at": 170}}
    assert [(end, s.lr, s.decay_at) for end, s in provenance.stages(card)] == [(100, 2e-4, 80), (150, 1e-4, 130), (200, 1e-4, 170)]
    log.write_text("iteration,lr\n" + "".join(f"{i},3e-4\n" for i in range(10, 151, 10)))  # a log that fits none: folded as before
    assert [(end, s.lr, s.decay_at) for end, s in provenance.stages(card)] == [(150, 1e-4, 130), (200, 1e-4, 170)]


def test_the_srresnet_rerun_starts_at_the_rate_its_log_shows() -> None:
    """The shipped card's first 18,000 iterations ran in runs that did not record where they began: 2e-4 to 10,000."""
    card = json.loads((MODELS_DIR / "srresnet-mse.json").read_text())
    first = train.parse_args(shlex.split(card["rerun"][0])[3:])
    assert (first.lr, first.decay_at, first.iters) == (2e-4, 8000, 10000)
    assert card["rerun"] == provenance.rerun(card)


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_card_benchmarks_are_those_of_results_benchmarks(path: Path) -> None:
    """The card's PSNR/SSIM block (the trainer's final evaluation, or `provenance --score`) belongs to the shipped weights
    that `evaluate` scored into results/benchmarks.csv, not to earlier ones."""
    card = json.loads(path.read_text())
    assert set(card.get("benchmarks", {})) == {"Set5", "Set14", "BSD100"}, f"fill it: python -m srgan_core.provenance --score {path.relative_to(REPO_ROOT)}"
    scores = pd.read_csv(REPO_ROOT / "results" / "benchmarks.csv").set_index(["dataset", "method"])
    for dataset, block in card["benchmarks"].items():
        row = scores.loc[(dataset, card["method"])]
        assert block["psnr"] == pytest.approx(row["psnr"], abs=6e-4) and block["ssim"] == pytest.approx(row["ssim"], abs=6e-5), dataset
