"""One GPU training campaign in a fixed wall-clock budget: `tools/gpu_train.sh BUNDLE OUTDIR [--budget SECONDS]`.

Made for a machine lent for a few minutes, with no network, that gets the working tree and a bundle
(`python -m srgan_core.pack BUNDLE`). In one process, so CUDA and the data start once:
1. measures training throughput (iterations/s) of SRResNet-MSE and SRGAN-VGG54 at a few batch sizes, and of
   SRGAN-VGG22 at the batch chosen for VGG54 (about 30 s), and picks each stage's batch size: the fastest in
   samples/s, or a smaller one within 10 % of it (more updates for the same samples);
2. trains each stage on its share of the budget left (`SHARES`, over the stages the bundle has), turned into
   iterations with the measured speed, with the rates moved to the batch size by
   `srgan_core.train_config.scaled_lr`. A method whose weights the bundle carries continues them (its model card
   says from which iteration); SRResNet-MSE runs only then, at the paper's rate, dropped 10x for its last fifth.
   An SRGAN the bundle does not carry starts from the SRResNet-MSE of the stage before. The SRGANs train at the
   short-budget rate (`SRGAN_LR`, the "cpu" preset's) with no drop, because at the paper's first-phase rate the
   first lent run's SRGANs came out with a grid of 10 levels (results/training/gpu_2026-11-30/campaign.md); the SRGAN stages
   export a moving average of their generator (`--ema-decay`, over about the last tenth of the stage), which on
   the CPU runs lowered the sub-pixel grid the single weights wander around
   (results/training/weight_average_srgan-vgg54.md);
3. writes at most four files into OUTDIR (the lent machine returns at most 8), again after every stage: the
   generators' weights and `cards_and_logs.tar.gz` (model cards, training logs, the probe and the plan); the
   shell wrapper adds `console.log`. A stage that fails is reported and the next one still runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import shutil
import tarfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import save_file

from srgan_core import train
from srgan_core.compact import read_weights
from srgan_core.data import TrainImages, train_folders
from srgan_core.device import pick_device
from srgan_core.method_specs import SPECS
from srgan_core.pack import COMPACT_VGG
from srgan_core.paths import replacing
from srgan_core.provenance import hardware
from srgan_core.train_config import PRESETS, scaled_lr

STAGES = ("srresnet-mse", "srgan-vgg54", "srgan-vgg22")
# SRResNet-MSE met its targets in the first lent run (63,290 iterations); the SRGANs have not: most of the time is
# theirs, the most for VGG54, the paper's SRGAN. Shares of the stages a campaign runs, scaled to add up to 1.
SHARES = {"srresnet-mse": 0.10, "srgan-vgg54": 0.55, "srgan-vgg22": 0.35}
STAGE_OVERHEAD_S = 25.0  # per stage, outside the timed loop: models, images, validations, checkpoints, export
TIME_CAP_SLACK_S = 15.0  # a stage's loop stops at its share plus this, should it run slower than the probe said
SMALLER_BATCH_TOLERANCE = 0.10
VALIDATIONS_PER_STAGE = 6
EMA_FRACTION = 0.1  # an SRGAN stage's moving average spans about this fraction of its iterations ...
EMA_MAX_DECAY = 0.999  # ... but no more than 1000 iterations
# The SRGANs' rate at the paper's batch of 16: in a budget of minutes, the paper's 1e-4 (4e-4 at batch 256) left
# Set5 grid 10.6 and colour shift 8.1 after 2065 iterations on the lent H200 (2026-11-30), and 2642 more at 4e-5
# only took the grid to 8 (results/training/gpu_2026-11-30/); the CPU runs at 1e-5 reached 1.2 (srgan_cpu_schedule.md).
SRGAN_LR = PRESETS["cpu"]["srgan"].lr
log = logging.getLogger("gpu_train")


def trainer_args(method: str, bundle: Path, work: Path, batch: int, crop: int, extra: list[str] = ()) -> list[str]:
    vgg = ["--vgg-weights", str(bundle / COMPACT_VGG)] if SPECS[method].recipe.content == "vgg" else []
    return [
        "--method", method, "--preset", "paper", "--data-root", str(bundle), *vgg,
        "--batch-size", str(batch), "--crop", str(crop), "--run-dir", str(work / "runs" / method),
        "--out", str(work / f"{method}.safetensors"), "--no-final-eval", *extra,
    ]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(method: str, batches: list[int], seconds: float, bundle: Path, work: Path, crop: int, images: TrainImages) -> dict[int, float]:
    """Training iterations per second of one method at each batch size: two warm-up steps, then timed steps
    until `seconds` (warm-up included) have passed, at least two."""
    trainer = train.Trainer(train.parse_args(trainer_args(method, bundle, work / "probe", batches[0], crop)))
    rates = {}
    for batch in batches:  # the step takes any batch size; only the learning rate depends on it
        begin = time.monotonic()
        for _ in range(2):  # the first steps of a shape pick cuDNN kernels and fill the allocator's cache
            trainer.step(images.batch(batch, crop, trainer.sampler))
        synchronize(trainer.device)
        start, steps = time.monotonic(), 0
        while time.monotonic() - begin < seconds or steps < 2:
            trainer.step(images.batch(batch, crop, trainer.sampler))
            steps += 1
            if steps % 5 == 0:
                synchronize(trainer.device)
        synchronize(trainer.device)
        rates[batch] = steps / (time.monotonic() - start)
        log.info("probe: %s at batch %d: %.2f it/s, %.1f samples/s", method, batch, rates[batch], batch * rates[batch])
    del trainer
    release_memory()
    return rates


def pick_batch(rates: dict[int, float]) -> int:
    """The batch size with the most samples/s, or the smallest within SMALLER_BATCH_TOLERANCE of it."""
    throughput = {batch: batch * rate for batch, rate in rates.items()}
    best = max(throughput.values())
    return min(batch for batch, samples in throughput.items() if samples >= (1 - SMALLER_BATCH_TOLERANCE) * best)


def probe(bundle: Path, work: Path, batches: list[int], crop: int, seconds: float, device: torch.device) -> dict:
    """Iterations/s per method and batch size, and each stage's chosen batch size."""
    images = TrainImages.load(train_folders(bundle), crop, device)
    per = seconds / (2 * len(batches) + 1)
    rates = {method: measure(method, batches, per, bundle, work, crop, images) for method in ("srresnet-mse", "srgan-vgg54")}
    chosen = {method: pick_batch(rates[method]) for method in rates}
    chosen["srgan-vgg22"] = chosen["srgan-vgg54"]  # VGG22's loss network is smaller: it is no slower than VGG54
    rates["srgan-vgg22"] = measure("srgan-vgg22", [chosen["srgan-vgg22"]], per, bundle, work, crop, images)
    shutil.rmtree(work / "probe", ignore_errors=True)
    return {"rates_it_per_s": {m: {str(b): r for b, r in per_batch.items()} for m, per_batch in rates.items()}, "batch": chosen}


def plan(probed: dict, seconds_left: float, starts: dict[str, int]) -> dict[str, dict]:
    """Iterations, learning rate, its drop and the time cap of each stage in `starts` (method -> the iteration its
    weights have reached, 0 for an SRGAN started from SRResNet-MSE), from the measured speed and its share."""
    training_seconds = max(seconds_left - STAGE_OVERHEAD_S * len(starts), 0.0)
    total_share = sum(SHARES[method] for method in starts)
    stages = {}
    for method in (m for m in STAGES if m in starts):
        batch, first = probed["batch"][method], starts[method]
        seconds = SHARES[method] / total_share * training_seconds
        iters = max(2, int(probed["rates_it_per_s"][method][str(batch)] * seconds))
        if method == "srresnet-mse":
            lr, decay = scaled_lr(PRESETS["paper"]["srresnet"].lr, batch), first + int(0.8 * iters)
        else:
            lr, decay = scaled_lr(SRGAN_LR, batch), 0  # 0: no drop
        stages[method] = {
            "batch": batch, "seconds": round(seconds, 1), "from": first, "iters": first + iters, "lr": lr, "decay_at": decay,
            "ema_decay": 0.0 if method == "srresnet-mse" else ema_decay(iters),
            "start": f"the bundle's bfloat16 copy of {method} at iteration {first}" if first else "the campaign's SRResNet-MSE",
        }
    return stages


def starting_points(bundle: Path, work: Path) -> dict[str, int]:
    """Copy the bundle's starting weights into `work` as the files the trainer resumes (`--resume` reads
    <method>.safetensors and its card there) and return each stage's starting iteration: a carried method's own,
    0 for an SRGAN it does not carry (it starts from SRResNet-MSE, which must then be carried)."""
    starts = {}
    for method in STAGES:
        weights, card = bundle / "weights" / f"{method}.npz", bundle / "weights" / f"{method}.json"
        if not weights.is_file():
            continue
        if not card.is_file():
            raise SystemExit(f"error: {weights} has no model card {card}: the campaign continues weights from their card's iteration")
        save_file(read_weights(weights), str(work / f"{method}.safetensors"))
        shutil.copyfile(card, work / card.name)
        starts[method] = json.loads(card.read_text())["iterations"]
    missing = [m for m in STAGES[1:] if m not in starts]
    if missing and "srresnet-mse" not in starts:
        raise SystemExit(f"error: the bundle carries no weights for {', '.join(missing)} and no SRResNet-MSE to start them from "
                         "(`python -m srgan_core.pack --weights ...`)")
    return {**starts, **dict.fromkeys(missing, 0)}


def ema_decay(iterations: int) -> float:
    """The per-iteration decay of a moving average over 1 + EMA_FRACTION x a stage's iterations (its time constant)."""
    return min(EMA_MAX_DECAY, 1 - 1 / (1 + EMA_FRACTION * iterations))


def run_stage(method: str, stage: dict, bundle: Path, work: Path, crop: int) -> None:
    """Train one stage: from its iteration `from` on (`--resume`: its checkpoint in `work`, else the weights and card
    there), or from 0, an SRGAN from the campaign's SRResNet-MSE."""
    extra = [
        "--iters", str(stage["iters"]), "--lr", str(stage["lr"]), "--decay-at", str(stage["decay_at"]), "--time-budget", str(stage["seconds"] + TIME_CAP_SLACK_S),
        "--eval-every", str(max(1, (stage["iters"] - stage["from"]) // VALIDATIONS_PER_STAGE)), "--checkpoint-minutes", "2",
        "--ema-decay", str(stage["ema_decay"]),
    ]
    if stage["from"] > 0:
        extra.append("--resume")
    else:
        extra += ["--init", str(work / "srresnet-mse.safetensors")]
    train.main(trainer_args(method, bundle, work, stage["batch"], crop, extra))


def attempt_stage(method: str, stage: dict, args: argparse.Namespace) -> str:
    """Run a stage: "done", or "failed: ..." with the error logged (the other stages' minutes are still worth having)."""
    try:
        run_stage(method, stage, args.bundle, args.work, args.crop)
        return "done"
    except (Exception, SystemExit):  # the trainer exits on what it refuses (a diverged loss, a bad flag): one stage
        log.error("stage %s failed:\n%s", method, traceback.format_exc())
        return "failed: " + traceback.format_exc(limit=1).strip().splitlines()[-1]


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def collect(work: Path, out: Path, outcome: dict[str, str], extras: dict[str, dict]) -> list[Path]:
    """The weights of the stages done as files of their own (not the bundle's starting copies of the others), cards,
    logs and `extras` (as JSON) in one archive."""
    written = []
    archive = out / "cards_and_logs.tar.gz"
    with replacing(archive) as partial, tarfile.open(partial, "w:gz") as tar:  # a call cut off mid-write keeps the previous archive whole
        for method in STAGES:
            weights, card, run_log = work / f"{method}.safetensors", work / f"{method}.json", work / "runs" / method / "log.csv"
            if weights.is_file() and outcome.get(method, "").startswith("done"):
                with replacing(out / weights.name) as partial_weights:
                    shutil.copyfile(weights, partial_weights)
                written.append(out / weights.name)
            if card.is_file():
                tar.add(card, arcname=card.name)
            if run_log.is_file():
                tar.add(run_log, arcname=f"{method}_log.csv")
        for name, content in extras.items():
            path = work / f"{name}.json"
            path.write_text(json.dumps(content, indent=2) + "\n")
            tar.add(path, arcname=path.name)
    return [*written, archive]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.gpu_train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="a folder made by `python -m srgan_core.pack`")
    p.add_argument("out", type=Path, help="where the results go (at most four files)")
    p.add_argument("--budget", type=float, default=540.0, help="wall-clock seconds for everything, probe included")
    p.add_argument("--probe-seconds", type=float, default=30.0, help="seconds of throughput measurement")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256], help="batch sizes the probe tries")
    p.add_argument("--crop", type=int, default=96, help="HR crop side (the paper's 96)")
    p.add_argument("--work", type=Path, default=Path("/tmp/srgan-gpu-work"), help="checkpoints and intermediate files")
    p.add_argument("--continue", dest="continue_stage", choices=STAGES[1:],
                   help="on the machine a campaign ran on (its --work still there): resume this SRGAN stage from its "
                        "checkpoint for --budget seconds more, then write all the results again")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    began = datetime.now(UTC).isoformat(timespec="seconds")  # the campaign's date, whatever copies do to file times
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    device = pick_device()
    log.info("torch %s, device %s (%s)", torch.__version__, device, hardware(device))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.continue_stage:
        return continue_stage(args, device, started)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    starts = starting_points(args.bundle, args.work)

    probed = probe(args.bundle, args.work, args.batch_sizes, args.crop, args.probe_seconds, device)
    stages = plan(probed, args.budget - (time.monotonic() - started), starts)
    log.info("plan: %s", json.dumps(stages))
    outcome = {}
    for method, stage in stages.items():
        stage_start = time.monotonic()
        outcome[method] = attempt_stage(method, stage, args)
        stage["wall_seconds"] = round(time.monotonic() - stage_start, 1)
        release_memory()
        # after every stage, so that a call cut off at the machine's time limit still brings back the stages done
        written = collect(args.work, args.out, outcome, {"probe": probed, "plan": {"stages": stages, "outcome": outcome, "budget": args.budget,
                                                                           "device": hardware(device), "torch": torch.__version__, "started": began}})
    log.info("wrote %s in %.0f s", ", ".join(p.name for p in written), time.monotonic() - started)
    return 0 if all(v == "done" for v in outcome.values()) else 1


def continue_stage(args: argparse.Namespace, device: torch.device, started: float) -> int:
    """Resume one SRGAN stage of the campaign whose files are in args.work for the rest of args.budget, at its planned
    batch, rate and moving average, then write every stage's results again."""
    method, planned = args.continue_stage, args.work / "plan.json"
    if not planned.is_file():
        raise SystemExit(f"error: {planned} not found: --continue needs the --work folder of a campaign run on this machine")
    probed, campaign = json.loads((args.work / "probe.json").read_text()), json.loads(planned.read_text())
    stage = campaign["stages"][method]
    seconds = max(args.budget - (time.monotonic() - started) - STAGE_OVERHEAD_S, 0.0)
    reached = json.loads((args.work / f"{method}.json").read_text())["iterations"]
    rate = probed["rates_it_per_s"][method][str(stage["batch"])]
    more = {**stage, "from": reached, "iters": reached + max(2, int(rate * seconds)), "seconds": round(seconds, 1)}
    log.info("continuing %s: %s", method, json.dumps(more))
    stage_start = time.monotonic()
    result = attempt_stage(method, more, args)  # from > 0: it resumes the checkpoint
    campaign["outcome"][method] += ", continued" if result == "done" else f", continuing {result}"
    stage.setdefault("continued", []).append({"from": reached, "iters": more["iters"], "seconds": more["seconds"],
                                              "wall_seconds": round(time.monotonic() - stage_start, 1)})
    written = collect(args.work, args.out, campaign["outcome"], {"probe": probed, "plan": campaign})
    log.info("wrote %s in %.0f s", ", ".join(p.name for p in written), time.monotonic() - started)
    return 0 if campaign["outcome"][method].endswith(", continued") else 1


if __name__ == "__main__":
    raise SystemExit(main())
