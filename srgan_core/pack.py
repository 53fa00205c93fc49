"""Bundle what a bare GPU machine needs to train: `python -m srgan_core.pack DIR` (and `--verify DIR` there).

A machine lent for a few minutes gets the repository's working tree plus a few extra files, 64 MiB in all,
and has no network. The bundle is a data folder (`--data-root DIR` for `srgan_core.train`):

- `train/<folder>/*.jpg`: every training image as JPEG at quality 90 (the paper trained on ImageNet JPEGs), with
  the source's chroma subsampling (BSDS500's JPEGs are 4:2:0; T91's PNGs get 4:4:4): 24 MB instead of 39 MB.
- `benchmarks/Set5/*.png`: the validation set the training log scores, as is (lossless), and
  `niqe/niqe_pris_params.npz`, the NIQE model the log's NIQE column needs.
- `vgg19/vgg19_features_bf16.npz`: the VGG19 loss network in bfloat16 (`srgan_core.compact`,
  27 MB instead of 80 MB); the loss runs under bfloat16 autocast on a GPU, which rounds the weights so anyway.
- `weights/<method>.npz` + `.json`: the generators the campaign continues, in bfloat16 like the VGG19 (2.2 MB
  instead of 6.2 MB each; the campaign trains on from them under bfloat16 autocast), each with its model card.
  By default the two SRGANs, which the campaign continues; SRResNet-MSE (`--weights` naming it too) also
  makes the campaign continue SRResNet-MSE and start the SRGANs it does not carry from it.
- `MANIFEST.json`: the sha256 and size of every file, and the command that made the bundle.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from PIL import Image, JpegImagePlugin
from safetensors import SafetensorError

from srgan_core.compact import read_weights, write_compact_bf16
from srgan_core.data import (
    benchmark_images,
    list_images,
    require_data_root,
    train_folders,
)
from srgan_core.download import sha256_file
from srgan_core.images import ImageError, load_image
from srgan_core.method_specs import SPECS
from srgan_core.niqe import FETCH_COMMAND as FETCH_NIQE
from srgan_core.niqe import MODEL_FILE as NIQE_MODEL
from srgan_core.niqe import model_path as niqe_model_path
from srgan_core.paths import DATA_ROOT_DEFAULT, damaged_data, replace_text
from srgan_core.vgg import GET_WEIGHTS, SHARED_WEIGHTS, resolve_vgg_weights

MANIFEST = "MANIFEST.json"
COMPACT_VGG = Path("vgg19") / "vgg19_features_bf16.npz"
VALIDATION_SET = "Set5"


def chroma_subsampling(path: Path) -> int:
    """PIL's JPEG chroma subsampling that keeps a source's colour resolution: a JPEG's own (BSDS500's are all
    4:2:0, so re-encoding them costs no more colour detail), 4:4:4 (0) for anything else."""
    with Image.open(path) as source:
        return max(JpegImagePlugin.get_sampling(source), 0) if source.format == "JPEG" else 0


def pack(out: Path, data_root: Path | None, weights: list[Path], quality: int, command: str) -> dict:
    """Write the bundle into `out` (which must not exist yet) and return its manifest. Everything is checked first
    and written into a hidden folder renamed at the end, so a failure leaves no half bundle."""
    root = require_data_root(data_root)
    benchmark_images(VALIDATION_SET, root)  # the run validates on it: missing, it says how to fetch it
    folders = train_folders(root)
    vgg = resolve_vgg_weights(data_root=root)
    if vgg is None:
        raise FileNotFoundError(f"no VGG19 weights in {root / SHARED_WEIGHTS}: {GET_WEIGHTS} fetches them")
    try:
        vgg_state = read_weights(vgg)  # read before the minutes of converting images: a damaged file is said first
    except (SafetensorError, OSError) as exc:
        raise ValueError(damaged_data(f"VGG19 weights {vgg} cannot be read ({exc})", root)) from None
    niqe_model = niqe_model_path(root)
    if not niqe_model.is_file():
        raise FileNotFoundError(f"no NIQE model at {niqe_model}: `{FETCH_NIQE}` fetches it")
    for path in weights:
        if not path.is_file():
            raise FileNotFoundError(f"starting weights {path} not found")
        if path.stem not in SPECS or not path.with_suffix(".json").is_file():
            raise ValueError(f"starting weights {path}: the campaign continues a method's <method>.safetensors from its "
                             f"model card <method>.json beside it (methods with weights: {', '.join(sorted(m for m, spec in SPECS.items() if spec.learned))})")
        try:
            read_weights(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"starting weights {path} cannot be read ({exc}): `git checkout -- {path}` restores shipped ones") from None
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # what an earlier failed pack left
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise ValueError(f"cannot write the bundle {out}: {exc.strerror or exc}") from None
    try:
        manifest = _write_bundle(staging, root, folders, vgg_state, niqe_model, weights, quality, command)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(out)
    return manifest


def _write_bundle(out: Path, root: Path, folders: list[Path], vgg: dict[str, torch.Tensor], niqe_model: Path, weights: list[Path], quality: int,
                  command: str) -> dict:
    for folder in folders:
        target = out / "train" / folder.name
        target.mkdir(parents=True)
        for path in list_images(folder):
            try:
                pixels = load_image(path)
            except ImageError as exc:
                print(f"skipping {exc}", file=sys.stderr)
                continue
            Image.fromarray(pixels).save(target / f"{path.stem}.jpg", quality=quality, subsampling=chroma_subsampling(path))
    validation = out / "benchmarks" / VALIDATION_SET
    validation.mkdir(parents=True)
    for path in benchmark_images(VALIDATION_SET, root):
        shutil.copyfile(path, validation / path.name)
    (out / NIQE_MODEL).parent.mkdir(parents=True)
    shutil.copyfile(niqe_model, out / NIQE_MODEL)
    (out / COMPACT_VGG).parent.mkdir(parents=True)
    write_compact_bf16(vgg, out / COMPACT_VGG)
    (out / "weights").mkdir()
    for path in weights:
        write_compact_bf16(read_weights(path), out / "weights" / f"{path.stem}.npz")
        shutil.copyfile(path.with_suffix(".json"), out / "weights" / f"{path.stem}.json")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    manifest = {
        "made_by": command,
        "jpeg_quality": quality,
        "files": {str(p.relative_to(out)): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
    }
    replace_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify(bundle: Path) -> list[str]:
    """Problems with a bundle (missing, changed or unexpected files); empty when it is whole."""
    manifest_path = bundle / MANIFEST
    if not manifest_path.is_file():
        return [f"{manifest_path} not found: is {bundle} a bundle made by `python -m srgan_core.pack`?"]
    listed = json.loads(manifest_path.read_text())["files"]
    problems = []
    for name, entry in listed.items():
        path = bundle / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            problems.append(f"changed: {name}")
    present = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()} - {MANIFEST}
    problems += [f"not in the manifest: {name}" for name in sorted(present - set(listed))]
    return problems


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m srgan_core.pack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="the bundle folder to write (must not exist), or to check with --verify")
    p.add_argument("--verify", action="store_true", help="check an existing bundle against its manifest instead")
    p.add_argument("--data-root", type=Path, help=f"data folder to take the images and VGG19 from (default: {DATA_ROOT_DEFAULT})")
    p.add_argument("--weights", type=Path, nargs="*", default=[SPECS[m].weights_file for m in ("srgan-vgg54", "srgan-vgg22")],
                   help="<method>.safetensors files to continue, each with its .json model card beside it (carried in bfloat16)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the training images (1-100)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.verify:
        problems = verify(args.dir)
        for line in problems:
            print(line, file=sys.stderr)
        print(f"{args.dir}: {'whole' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if args.dir.exists():
        print(f"{args.dir} exists: pass a new folder", file=sys.stderr)
        return 2
    if not 1 <= args.quality <= 100:
        print(f"--quality must be 1-100, got {args.quality}", file=sys.stderr)
        return 2
    command = "python -m srgan_core.pack " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        manifest = pack(args.dir, args.data_root, args.weights, args.quality, command)
    except (FileNotFoundError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.filename or args.dir}: {exc.strerror or exc}; no bundle was written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: no bundle written at {args.dir}, and nothing half-written left behind", file=sys.stderr)
        return 130
    total = sum(entry["bytes"] for entry in manifest["files"].values())
    print(f"{args.dir}: {len(manifest['files'])} files, {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
