"""Benchmark methods the paper's way: `python -m srgan_core.evaluate --methods ... --datasets Set5 Set14 BSD100`.

Writes `results/benchmarks.md` (+ CSVs): mean PSNR/SSIM (Y, 4-pixel border) and NIQE per dataset and method,
the paper's published values beside ours, and each learned method's training iterations and wall time.
`--folders DIR ... --out OUT` scores folders of one's own HR images the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from srgan_core.data import BENCHMARKS, benchmark_images, folder_images
from srgan_core.device import pick_device
from srgan_core.images import ImageError, downscale_x4, input_notes, load_image, modcrop, save_png, to_tensor, to_uint8
from srgan_core.inference import generate_tiled, prepare_generator
from srgan_core.markdown import markdown_table
from srgan_core.method_specs import METHODS, ORIGINAL, SPECS
from srgan_core.methods import MethodUnavailable, Upscaler, load_method, upscaler_from_file
from srgan_core.metrics import colour_shift, psnr_y, ssim_y, subpixel_grid
from srgan_core.models import Generator
from srgan_core.niqe import MIN_SIZE as NIQE_MIN_SIZE
from srgan_core.niqe import NiqeModelMissing, niqe, pristine_model
from srgan_core.paper import published
from srgan_core.paths import DATA_ROOT_DEFAULT, GET_DATA, REPO_ROOT, FolderError, damaged_data, make_writable_folder, remove_empty, replace_text

METRICS = ("psnr", "ssim", "colour_shift", "grid", "niqe")  # niqe last: it is optional
METRIC_DIGITS = {"psnr": 2, "ssim": 4, "colour_shift": 2, "grid": 2, "niqe": 2}  # decimals in every report
COLUMNS = ["dataset", "image", "method", *METRICS]
MIN_SIDE = 20  # the smallest HR side scored: the 11-px SSIM window inside two 4-px borders, on a multiple of 4


def niqe_or_nan(img: np.ndarray, data_root: Path | str | None = None) -> float:
    """NIQE (MATLAB scale, model from the data folder) where the image is large enough for it, else NaN."""
    return niqe(img, data_root) if min(img.shape[:2]) >= NIQE_MIN_SIZE else float("nan")


def score_upscale(
    upscale,
    dataset: str,
    data_root: Path | str | None = None,
    images: list[str] | None = None,
    save_dir: Path | None = None,
    with_niqe: bool = False,
) -> pd.DataFrame:
    """PSNR/SSIM (and NIQE) of `upscale(lr_uint8) -> sr_uint8` on every (or the named) image of a benchmark."""
    paths = benchmark_images(dataset, data_root)
    if images is not None:
        wanted = set(images)
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise FileNotFoundError(f"{dataset} has no image(s) {sorted(missing)}")
    return score_paths(upscale, dataset, paths, data_root, save_dir, with_niqe)


def score_paths(
    upscale, dataset: str, paths: list[Path], data_root: Path | str | None = None, save_dir: Path | None = None,
    with_niqe: bool = False,
) -> pd.DataFrame:
    """Per-image scores of `upscale` on HR image files, as rows of `dataset` (NIQE's model from the data folder)."""
    rows = []
    for path in paths:
        hr = modcrop(load_image(path))
        sr = upscale(downscale_x4(hr))
        row = {
            "dataset": dataset, "image": path.stem, "psnr": psnr_y(sr, hr), "ssim": ssim_y(sr, hr),
            "colour_shift": colour_shift(sr, hr), "grid": subpixel_grid(sr, hr),
        }
        if with_niqe:
            row["niqe"] = niqe_or_nan(sr, data_root)
        rows.append(row)
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            save_png(sr, save_dir / f"{path.stem}.png")
    return pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "method" and (with_niqe or c != "niqe")])


def unusable_images(paths: list[Path]) -> list[str]:
    """Why each of these HR images cannot be scored (unreadable, a side under MIN_SIDE, or its name without suffix
    taken by another image of the folder: rows and saved SR images go by that name), one line each."""
    problems, stems = [], Counter((p.parent, p.stem) for p in paths)
    for path in paths:
        if stems[path.parent, path.stem] > 1:
            problems.append(f"{path}: another image in its folder is also named {path.stem!r}")
        try:
            height, width = modcrop(load_image(path)).shape[:2]
        except ImageError as exc:
            problems.append(str(exc))
            continue
        if min(height, width) < MIN_SIDE:
            problems.append(f"{path}: {width}x{height} after cropping to a multiple of 4; scoring needs {MIN_SIDE} px a side")
    return problems


def generator_upscale(generator: Generator, device: torch.device | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """`lr_uint8 -> sr_uint8` of a generator (being trained, or a snapshot), through the inference path the methods use."""
    model = prepare_generator(generator, pick_device(device))
    return lambda lr: to_uint8(generate_tiled(model, to_tensor(lr)))


def score_generator(
    generator: Generator, dataset: str, data_root: Path | str | None = None, device: torch.device | None = None,
    with_niqe: bool = False,
) -> pd.DataFrame:
    """Per-image scores of a generator on one benchmark."""
    return score_upscale(generator_upscale(generator, device), dataset, data_root, with_niqe=with_niqe)


CARD_DATASETS = ("Set5", "Set14", "BSD100")


def card_benchmarks(generator: Generator, data_root: Path | str | None = None, device: torch.device | None = None) -> dict:
    """The `benchmarks` block of a model card: {dataset: {"psnr", "ssim"}}, means over Set5, Set14 and BSD100 rounded
    to 3 and 4 decimals, scored as `evaluate` scores (so they match results/benchmarks.csv)."""
    block = {}
    for dataset in CARD_DATASETS:
        scores = score_generator(generator, dataset, data_root, device=device)
        block[dataset] = {"psnr": round(float(scores["psnr"].mean()), 3), "ssim": round(float(scores["ssim"].mean()), 4)}
    return block


def dataset_means(
    upscale: Callable[[np.ndarray], np.ndarray], datasets: list[str], data_root: Path | str | None = None, with_niqe: bool = False
) -> dict[str, dict[str, float]]:
    """{dataset: {metric: mean over its images}} of `upscale(lr_uint8) -> sr_uint8`."""
    return {d: score_upscale(upscale, d, data_root, with_niqe=with_niqe).mean(numeric_only=True).to_dict() for d in datasets}


def score_images(
    methods: list[str],
    dataset: str,
    data_root: Path | str | None = None,
    images: list[str] | None = None,
    with_niqe: bool = False,
) -> pd.DataFrame:
    """Per-image scores: columns dataset, image, method, psnr, ssim (and niqe)."""
    frames = []
    for name in methods:
        upscaler: Upscaler = load_method(name)
        frame = score_upscale(upscaler.upscale, dataset, data_root, images, with_niqe=with_niqe)
        frames.append(frame.assign(method=name))
    columns = COLUMNS if with_niqe else COLUMNS[:-1]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def score_originals(dataset: str, data_root: Path | str | None = None, images: list[str] | None = None) -> pd.DataFrame:
    """NIQE of the HR images themselves (method ORIGINAL), the reference a perceptual method should approach."""
    paths = [p for p in benchmark_images(dataset, data_root) if images is None or p.stem in images]
    return originals_niqe(dataset, paths, data_root)


def originals_niqe(dataset: str, paths: list[Path], data_root: Path | str | None = None) -> pd.DataFrame:
    """NIQE of HR image files (method ORIGINAL), as rows of `dataset`."""
    rows = [
        {"dataset": dataset, "image": p.stem, "method": ORIGINAL, "niqe": niqe_or_nan(modcrop(load_image(p)), data_root)}
        for p in paths
    ]
    return pd.DataFrame(rows)


BUDGET_COLUMNS = ("iterations", "samples_millions", "wall_hours", "init_iterations", "init_samples_millions", "init_wall_hours")


def training_budget(method: str) -> dict[str, float | None]:
    """Iterations, samples seen (millions: iterations at other batch sizes than 16 count as many) and wall time from a
    learned method's model card (None for interpolation), and those of the weights it started from (an SRGAN's
    SRResNet-MSE), as recorded on the card when the run began."""
    spec = SPECS.get(method)  # None for the originals
    card = spec.weights_file.with_suffix(".json") if spec and spec.learned else None
    if card is None or not card.is_file():
        return dict.fromkeys(BUDGET_COLUMNS)
    info = json.loads(card.read_text())
    init = info.get("init") or {}
    millions = {key: record["samples_seen"] / 1e6 if record.get("samples_seen") is not None else None for key, record in (("own", info), ("init", init))}
    return {
        "iterations": info.get("iterations"),
        "samples_millions": millions["own"],
        "wall_hours": info.get("wall_seconds", 0) / 3600,
        "init_iterations": init.get("iterations"),
        "init_samples_millions": millions["init"],
        "init_wall_hours": init["wall_seconds"] / 3600 if init.get("wall_seconds") is not None else None,
    }


def with_init(own: object, init: object, digits: int) -> str:
    """'own' or 'own (+init)' for the iterations / hours columns."""
    if init is None or (isinstance(init, float) and np.isnan(init)):
        return fmt(own, digits)
    return f"{fmt(own, digits)} (+{fmt(init, digits)})"


def paper_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean scores per dataset and method, with the paper's published values and our training budget."""
    metrics = [c for c in METRICS if c in scores]
    finite = scores.assign(psnr=scores["psnr"].replace(np.inf, np.nan))  # an exact output's PSNR is infinite: left out
    table = finite.groupby(["dataset", "method"], sort=False)[metrics].mean().reset_index()
    for metric in ("psnr", "ssim"):
        table[f"paper_{metric}"] = [published(d, m, metric) for d, m in zip(table["dataset"], table["method"])]
    budget = pd.DataFrame([training_budget(m) for m in table["method"]])
    return pd.concat([table, budget], axis=1)


def fmt(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def to_markdown(table: pd.DataFrame) -> str:
    """One Markdown table per dataset: our scores, the paper's (where it published any for the dataset), and the
    training budget."""
    has_niqe = "niqe" in table
    metrics = METRICS if has_niqe else METRICS[:-1]
    sections = []
    for dataset, group in table.groupby("dataset", sort=False):
        has_paper = group[["paper_psnr", "paper_ssim"]].notna().any().any()  # not for one's own folders
        headers = ["method", "PSNR (dB)", "SSIM", "colour shift", "grid", *(["NIQE"] if has_niqe else []),
                   *(["paper PSNR", "paper SSIM"] if has_paper else []), "iterations", "samples seen (M)", "training hours"]
        rows = [
            [row.method, *(fmt(getattr(row, m), METRIC_DIGITS[m]) for m in metrics),
             *([fmt(row.paper_psnr, METRIC_DIGITS["psnr"]), fmt(row.paper_ssim, METRIC_DIGITS["ssim"])] if has_paper else []),
             with_init(row.iterations, row.init_iterations, 0), with_init(row.samples_millions, row.init_samples_millions, 2),
             with_init(row.wall_hours, row.init_wall_hours, 2)]
            for row in group.itertuples()
        ]
        sections.append(f"### {dataset}\n\n{markdown_table(headers, rows)}\n")
    return "\n".join(sections)


def image_sources(datasets: list[str], folders: list[Path], data_root: Path | None) -> dict[str, list[Path]]:
    """{dataset name: its HR images} of the benchmarks and the folders, or SystemExit saying what is missing or
    unusable, before any scoring."""
    sources: dict[str, list[Path]] = {}
    own: list[Path] = []  # the folders' images, checked below (a damaged benchmark image is named at once: a download replaces it)
    try:
        for dataset in datasets:
            sources[dataset] = benchmark_images(dataset, data_root)
            refuse_damaged(sources[dataset])
        for folder in folders:
            name = folder.resolve().name
            if name in BENCHMARKS or name in sources:
                taken = "a benchmark's name" if name in BENCHMARKS else "another dataset's name"
                raise SystemExit(f"error: {folder}: its name {name!r} is {taken}; rename or link the folder")
            sources[name] = folder_images(folder)
            own += sources[name]
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None
    problems = unusable_images(own)
    if problems:
        raise SystemExit("error: these images cannot be scored (move them out of the folder):\n" + "\n".join(problems))
    return sources


def refuse_damaged(benchmark: list[Path]) -> None:
    """SystemExit naming the first image of a benchmark that cannot be read, and how to replace it; else nothing."""
    for path in benchmark:
        try:
            load_image(path)
        except ImageError as exc:
            raise SystemExit(f"error: {damaged_data(str(exc), path.parents[2])}") from None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m srgan_core.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD", help=f"methods to score (default: all): {', '.join(METHODS)}")
    p.add_argument(
        "--weights", nargs="+", type=Path, default=[], metavar="FILE",
        help="also score generators' weights of your own (e.g. from `srgan_core.train --out FILE`), each named after its file",
    )
    p.add_argument("--datasets", nargs="+", choices=BENCHMARKS, help="benchmarks to score on (default: all three, or none with --folders)")
    p.add_argument(
        "--folders", nargs="+", type=Path, default=[], metavar="DIR",
        help=f"folders of your own HR images (any format and size, at least {MIN_SIDE} px a side), each scored like a benchmark "
        "under its folder name: downscaled x4 the paper's way, upscaled by every method and compared with the original; "
        "needs --out",
    )
    p.add_argument("--data-root", type=Path, help=f"folder with benchmarks/<name>/*.png and the NIQE model (default: {DATA_ROOT_DEFAULT})")
    p.add_argument("--out", type=Path, help="folder for benchmarks.md, benchmarks.csv and benchmarks_per_image.csv (default: results/, for a run of every method on all three benchmarks only)")
    p.add_argument("--save-images", type=Path, help="also write every SR image to DIR/<method>/<dataset>/<image>.png")
    p.add_argument("--no-niqe", action="store_true", help="skip the NIQE column (no-reference, lower is better)")
    args = p.parse_args(argv)
    if args.folders and args.out is None:
        raise SystemExit("error: --folders needs --out DIR (the default, results/, holds the shipped benchmark report)")
    datasets = args.datasets if args.datasets is not None else [] if args.folders else list(BENCHMARKS)
    partial = set(args.methods) != set(METHODS) or set(datasets) != set(BENCHMARKS) or args.no_niqe or bool(args.weights)
    if partial and args.out is None:
        raise SystemExit(
            "error: a run of some methods, datasets or columns needs --out DIR: the default, results/, holds the shipped "
            "report of every method on all three benchmarks, which it would replace"
        )
    args.out = args.out or REPO_ROOT / "results"
    if args.data_root is not None and not args.data_root.is_dir():
        raise SystemExit(f"error: --data-root {args.data_root}: {'is a file' if args.data_root.exists() else 'no such folder'}; give "
                         f"the data folder, or fetch the data into it with `{GET_DATA} --to {args.data_root}`")
    if not args.no_niqe:
        try:
            pristine_model(args.data_root)
        except NiqeModelMissing as exc:
            raise SystemExit(f"error: {exc} (or pass --no-niqe)") from None

    made = make_output_folders({"--out": args.out, "--save-images": args.save_images})  # before minutes of scoring
    try:
        score_and_report(args, datasets, sys.argv[1:] if argv is None else argv)
    except BaseException:
        remove_empty(made)
        raise


def make_output_folders(folders: dict[str, Path | None]) -> list[Path]:
    """`paths.make_writable_folder` for each folder given ({option: folder}): the folders made, else SystemExit saying
    which cannot be written (having removed what it made)."""
    made: list[Path] = []
    for option, folder in folders.items():
        if folder is None:
            continue
        try:
            made = make_writable_folder(folder, option) + made
        except FolderError as exc:
            remove_empty(made)
            raise SystemExit(f"error: {exc}") from None
    return made


def score_and_report(args: argparse.Namespace, datasets: list[str], argv: list[str]) -> None:
    """Score what the command line asks for and write the report into args.out."""
    upscalers, skipped = {}, []
    for name in args.methods:
        try:
            upscalers[name] = load_method(name)
        except MethodUnavailable as exc:
            skipped.append(str(exc))
    for path in args.weights:
        if path.stem in upscalers or path.stem in (ORIGINAL, *METHODS):
            raise SystemExit(f"error: --weights {path}: its name {path.stem!r} is a method's; rename the file")
        try:
            upscalers[path.stem] = upscaler_from_file(path)
        except MethodUnavailable as exc:
            raise SystemExit(f"error: --weights {exc}") from None
    if not upscalers:
        raise SystemExit("error: nothing to evaluate: " + "; ".join(skipped))
    sources = image_sources(datasets, args.folders, args.data_root)
    read_with_changes = [f"{path} {note}" for paths in sources.values() for path in paths for note in input_notes(path)]
    for line in read_with_changes:
        print(f"note: {line}", file=sys.stderr)
    frames = []
    for name, upscaler in tqdm(upscalers.items(), desc="methods"):
        for dataset, paths in sources.items():
            save = args.save_images / name / dataset if args.save_images else None
            scores = score_paths(upscaler.upscale, dataset, paths, args.data_root, save, with_niqe=not args.no_niqe)
            frames.append(scores.assign(method=name))
    if not args.no_niqe:
        frames += [originals_niqe(dataset, paths, args.data_root) for dataset, paths in sources.items()]
    scores = pd.concat(frames, ignore_index=True)
    table = paper_table(scores)
    command = "python -m srgan_core.evaluate " + " ".join(argv)
    notes = [
        "# Benchmarks (4x)",
        "",
        f"Made by `{command}`. PSNR/SSIM on Y (BT.601), 4 border pixels removed, SR rounded to uint8; LR = MATLAB "
        "bicubic /4. NIQE: no-reference, lower = more natural, on the MATLAB "
        "scale of the official LIVE release (its pristine model, 96x96 blocks, Y of MATLAB's rgb2ycbcr; comparable "
        "with published NIQE); images under 192 px have none; `hr` = the original images. Colour shift: the largest difference of the SR and HR per-channel RGB means, in "
        "8-bit levels (a colour cast; not in the paper). Grid: the spread over the 4x4 sub-pixel positions of the "
        "mean Y error, in Y levels (a periodic pattern from the upsampling stages; not in the paper). Paper values: Ledig et al. 2017, Tables 1-2 (their SSIM runs higher than the "
        "standard SSIM used here). Iterations, samples seen and training hours: from each method's model card; (+N) = those "
        "of the weights the run started from (SRGAN: the SRResNet-MSE of that time). The paper trained SRResNet on 16 M "
        "samples (10^6 iterations at batch 16) and SRGAN on 3.2 M; iterations at a larger batch (a GPU run's) count "
        "more samples each.",
        "",
    ]
    if "niqe" in table:
        hr = table[table["method"] == ORIGINAL].itertuples()
        notes += ["The original HR images score a mean NIQE of " + ", ".join(f"{fmt(r.niqe, 2)} on {r.dataset}" for r in hr) + ".", ""]
    exact = scores[np.isinf(scores["psnr"])]
    if len(exact):
        listed = ", ".join(f"{r.method} on {r.dataset}/{r.image}" for r in exact.itertuples())
        notes += [f"PSNR is infinite where an output equals its original exactly ({listed}): left out of the mean PSNR.", ""]
    notes += [f"Read with a change: {line}." for line in read_with_changes] + ([""] if read_with_changes else [])
    notes += [f"Skipped: {s}" for s in skipped] + ([""] if skipped else [])
    report = "\n".join(notes) + "\n" + to_markdown(table)
    # every report is made before any replaces the one before, so a failure or a Ctrl-C leaves the old set whole
    replace_text(args.out / "benchmarks_per_image.csv", scores.to_csv(index=False, float_format="%.4f"))
    replace_text(args.out / "benchmarks.csv", table.to_csv(index=False, float_format="%.4f"))
    replace_text(args.out / "benchmarks.md", report)
    print(report)


if __name__ == "__main__":
    main()
