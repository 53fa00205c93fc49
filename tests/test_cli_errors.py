"""Every srgan_core command line, run as a user would on bad input: one clear line on stderr, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from srgan_core import pack
from srgan_core.models import Discriminator
from srgan_core.paths import REPO_ROOT

# Runs `python -m MODULE ARGS...`, first pointing srgan_core.method_specs at CASE_MODELS_DIR when it is set (so a
# case can bring missing or damaged weights without touching results/models).
RUNNER = """
import os, runpy, sys
from pathlib import Path
if os.environ.get("CASE_MODELS_DIR"):
    import srgan_core.method_specs
    srgan_core.method_specs.MODELS_DIR = Path(os.environ["CASE_MODELS_DIR"])
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class Case:
    """`python -m module *args` must exit with an error whose stderr says `expected` (in any of its lines).
    In `args`, {tmp} is a scratch folder holding image.png (64x48), discriminator.safetensors, float.tif, list.json, gifs/ (anim.gif), rerun/ (cat.png and cat_nearest_x4.png), empty/ (no images),
    packdata/ (a data folder `srgan_core.pack` takes: one Set5 image, stand-ins for the VGG19 weights and the NIQE model) and models/ (see `models`)."""

    module: str
    args: tuple[str, ...]
    expected: str
    models: str | None = None  # "missing": no weights; "truncated": srresnet-mse.safetensors cut in half
    env: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # the exit status, when it matters (None: any failure)


NO_DATA = {"SRGAN_DATA": "{tmp}/no-data"}
# Every proxy variable in both spellings (urllib prefers the lower-case one) at a closed port, and nothing exempt.
OFFLINE = {name: "http://127.0.0.1:9" for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")} | {"NO_PROXY": "", "no_proxy": ""}
GET_DATA = "python -m srgan_core.data download"

CASES = [
    # upscale
    Case("srgan_core.upscale", ("{tmp}/nothing.png", "--method", "bicubic", "-o", "{tmp}/out"), "nothing.png: no such file"),
    Case("srgan_core.upscale", ("{tmp}/empty", "--method", "bicubic", "-o", "{tmp}/out"), "no images in this folder"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "bicubic", "-o", "/proc/nope"), "/proc/nope"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "bicubic", "-o", "/proc/nope/x.png"), "/proc/nope"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "magic", "-o", "{tmp}/o.png"), "invalid choice: 'magic'"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "srresnet-mse", "-o", "{tmp}/o.png"),
         "srresnet-mse.safetensors is damaged", models="truncated"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "srgan-vgg54", "-o", "{tmp}/o.png"),
         "no trained weights at", models="missing"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "bicubic", "--device", "tpu9", "-o", "{tmp}/o.png"),
         "tpu9"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "bicubic", "--device", "cuda:99", "-o", "{tmp}/o.png"),
         "--device cuda:99: this machine has"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "bicubic", "-o", "{tmp}/o.jpg"), "writes lossless PNG only"),
    Case("srgan_core.upscale", ("{tmp}/rerun", "--method", "nearest", "-o", "{tmp}/rerun"), "would overwrite the input"),
    Case("srgan_core.upscale", ("{tmp}/float.tif", "--method", "nearest", "-o", "{tmp}/f.png"), "float.tif: a float image must hold"),
    Case("srgan_core.upscale", ("{tmp}/gifs", "--method", "nearest", "-o", "{tmp}/g"), "give other files by name: anim.gif"),
    Case("srgan_core.upscale", ("{tmp}/photos", "--method", "bicubic", "-o", "{tmp}/all.png"), "inputs need a folder"),
    Case("srgan_core.upscale", ("{tmp}/image.png", "--method", "bicubic", "-o", "{tmp}/image.png"), "is the input itself"),
    Case("srgan_core.upscale", ("{tmp}/photos", "--method", "bicubic", "-o", "{tmp}/out"),
         "photos/image.png and {tmp}/photos/image.jpg would both be written to"),
    # evaluate
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--datasets", "Set5", "--no-niqe", "--out", "{tmp}/r"),
         GET_DATA, env=NO_DATA),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--data-root", "{tmp}/empty", "--no-niqe", "--out", "{tmp}/r"),
         GET_DATA),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--out", "/proc/nope"), "/proc/nope"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--out", "{tmp}/r", "--save-images", "/proc/nope"), "cannot write to /proc/nope"),
    Case("srgan_core.evaluate", ("--methods", "srresnet-mse", "--out", "{tmp}/r"), "git checkout -- ", models="truncated"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--folders", "{tmp}/photos", "--no-niqe"), "needs --out"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--datasets", "Set5"), "needs --out DIR: the default, results/"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--folders", "{tmp}/nowhere", "--no-niqe", "--out", "{tmp}/r"),
         "no such folder"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--folders", "{tmp}/empty", "--no-niqe", "--out", "{tmp}/r"),
         "no images in"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--folders", "{tmp}/Set5", "--no-niqe", "--out", "{tmp}/r"),
         "is a benchmark's name"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--folders", "{tmp}/photos", "--no-niqe", "--out", "{tmp}/r"),
         "photos/notes.png is not an image"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--folders", "{tmp}/photos", "--no-niqe", "--out", "{tmp}/r"),
         "photos/tiny.png: 16x12 after cropping"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--folders", "{tmp}/photos", "--no-niqe", "--out", "{tmp}/r"),
         "photos/image.jpg: another image in its folder is also named 'image'"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--folders", "{tmp}/image.png", "--no-niqe", "--out", "{tmp}/r"),
         "image.png is a file, not a folder of images"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--data-root", "{tmp}/nowhere", "--out", "{tmp}/r"),
         "--data-root {tmp}/nowhere: no such folder; give the data folder, or fetch the data into it with"),
    Case("srgan_core.evaluate", ("--methods", "bicubic", "--no-niqe", "--out", "{tmp}/image.png"), "--out {tmp}/image.png is a file; give a folder"),
    # pack
    Case("srgan_core.pack", ("{tmp}/image.png/bundle", "--data-root", "{tmp}/packdata"), "cannot write the bundle {tmp}/image.png/bundle"),
    Case("srgan_core.pack", ("{tmp}/bundle", "--data-root", "{tmp}/packdata", "--weights", "{tmp}/image.png"), "methods with weights: srgan-mse,"),
    Case("srgan_core.pack", ("{tmp}/bundle", "--data-root", "{tmp}/damaged"), "no training images in {tmp}/damaged/train"),
    Case("srgan_core.train", ("--method", "srresnet-mse", "--data-root", "{tmp}/damaged", "--run-dir", "{tmp}/run-notrain", "--out",
                              "{tmp}/w-notrain.safetensors", "--eval-every", "0", "--no-final-eval", "--device", "cpu"),
         "no training images in {tmp}/damaged/train (none of BSDS500_train, BSDS500_test, T91): fetch them with"),
    Case("srgan_core.pack", ("{tmp}/bundle", "--data-root", "{tmp}/packvgg"),
         "VGG19 weights {tmp}/packvgg/vgg19/vgg19_features_imagenet.safetensors cannot be read"),
    # data download (offline: every request goes to a closed local port)
    Case("srgan_core.data", (), "error: no command given: `python -m srgan_core.data download [--to DIR] [--only ...]` fetches", status=2),
    Case("srgan_core.data", ("fetch",), "error: unknown command 'fetch': `python -m srgan_core.data download [--to DIR]", status=2),
    Case("srgan_core.data", ("check",), "error: unknown command 'check': `python -m srgan_core.data download [--to DIR] [--only ...]` fetches "
         "the data and `python -m srgan_core.data download --check` checks it", status=2),
    Case("srgan_core.data", ("download", "--to", "{tmp}/d", "--only", "benchmarks"), "cannot reach", env=OFFLINE),
    Case("srgan_core.data", ("download", "--to", "/proc/nope", "--only", "benchmarks"), "/proc/nope", env=OFFLINE),
    Case("srgan_core.download", ("--check", "--to", "{tmp}/empty", "--only", "benchmarks"), "do not verify"),
    Case("srgan_core.data", ("download", "--check", "--to", "{tmp}/nowhere"), "nowhere is not there: no data folder to check"),
    Case("srgan_core.data", ("download", "--write-manifest"), "--write-manifest needs the complete data folder"),
    # figures
    Case("tools.figures", ("curves", "{tmp}/no-log.csv", "-o", "{tmp}/c.png"), "no-log.csv"),
    Case("tools.figures", ("curves", "{tmp}/image.png", "-o", "{tmp}/c.png"), "image.png"),
    Case("tools.figures", ("compare", "--image", "nosuch", "-o", "{tmp}/f.png"), "nosuch"),
    Case("tools.figures", ("compare", "--methods", "nearest", "-o", "/proc/nope/f.png"), "/proc/nope"),
    Case("tools.figures", ("curves", "{tmp}", "-o", "{tmp}/c.png"), "is a folder"),
    Case("tools.figures", ("compare", "--box", "0", "0", "0", "-o", "{tmp}/f.png"), "SIZE above 0"),
    Case("tools.figures", ("compare", "-o", "{tmp}/f.xyz"), "end the name in one of"),
    Case("tools.log_summary", ("{tmp}",), "is a folder"),
    # benchmark: a report it could not write must be refused before minutes of measuring
    Case("tools.benchmark", ("--quick", "--out", "/proc/nope/p.md"), "/proc/nope"),
    Case("tools.benchmark", ("--quick",), "--quick is a smoke test: give --out FILE"),
    Case("tools.heldout", ("--methods", "bicubic"), "--methods: settings other than the shipped report's need --out"),
    Case("tools.heldout", ("--images-to", "{tmp}", "--out", "{tmp}/held"), "holds other files too"),
    Case("tools.benchmark", ("--threads", "many"), "invalid int value"),
]

# ---- srgan_core.train cases: the lead extends this list (same Case fields; {tmp} as above). ----
NO_VGG = {"SRGAN_DATA": "{tmp}/no-data", "SRGAN_VGG19_WEIGHTS": ""}
TRAIN_CASES = [
    Case("srgan_core.train", ("--method", "srgan-vgg54", "--data-root", "{tmp}", "--device", "cpu"),
         "srgan_core.data download --only vgg19", env=NO_VGG),
    Case("srgan_core.train", ("--method", "srgan-vgg54", "--vgg-weights", "{tmp}/nope.safetensors", "--device", "cpu"), "nope.safetensors"),
    Case("srgan_core.train", ("--method", "srresnet-mse", "--data-root", "{tmp}/no-data", "--device", "cpu", "--iters", "1"), GET_DATA),
    Case("srgan_core.train", ("--method", "srgan-mse", "--init", "{tmp}/nothing.safetensors", "--device", "cpu"), "nothing.safetensors"),
    Case("srgan_core.train", ("--method", "srresnet-mse", "--crop", "50"), "multiple of 16"),
    Case("srgan_core.train", ("--method", "srresnet-mse", "--iters", "-5"), "--iters: -5: give a number above 0"),
    Case("srgan_core.train", ("--method", "srgan-vgg54", "--data-root", "{tmp}/no-data", "--device", "cpu"), "no data folder at"),
    Case("srgan_core.train", ("--method", "srgan-mse", "--init", "{tmp}/truncated/srresnet-mse.safetensors", "--device", "cpu",
                              "--data-root", "{tmp}", "--run-dir", "{tmp}/run-init", "--eval-every", "0", "--no-final-eval"),
         "is not a readable generator"),
    Case("srgan_core.train", ("--method", "srgan-mse", "--init", "{tmp}/discriminator.safetensors", "--device", "cpu", "--data-root", "{tmp}",
                              "--run-dir", "{tmp}/run-disc", "--eval-every", "0", "--no-final-eval"), "258 of its 258 tensors missing"),
    Case("srgan_core.train", ("--method", "srresnet-mse", "--device", "cuda:99", "--data-root", "{tmp}"), "cuda:99: this machine has"),
    Case("srgan_core.train", ("--method", "srresnet-mse", "--device", "cpu", "--data-root", "{tmp}", "--run-dir", "{tmp}/run-nb"),
         "no Set5 images"),  # validation's and the final evaluation's benchmarks, before any training
    Case("srgan_core.train", ("--method", "srresnet-mse", "--out", "{tmp}/w.pt"), "ending .safetensors"),
    Case("srgan_core.train", ("--method", "srgan-vgg54", "--vgg-weights", str(REPO_ROOT / "results" / "models" / "srresnet-mse.safetensors"),
                              "--device", "cpu", "--eval-every", "0", "--no-final-eval", "--data-root", "{tmp}", "--run-dir", "{tmp}/run-vgg"),
         "does not hold VGG19's feature weights"),
    Case("srgan_core.pack", ("{tmp}/bundle", "--data-root", "{tmp}/no-data"), GET_DATA),
    Case("srgan_core.pack", ("--verify", "{tmp}/empty"), "MANIFEST.json not found"),
    Case("srgan_core.pack", ("{tmp}/empty",), "exists: pass a new folder"),
    Case("srgan_core.provenance", ("{tmp}/no-card.json",), "no-card.json"),
    Case("srgan_core.provenance", ("{tmp}/image.png",), "not a readable model card"),
    Case("srgan_core.provenance", ("{tmp}/list.json",), "a JSON object with its method"),
]

HELP = ["srgan_core.upscale", "srgan_core.evaluate", "srgan_core.data", "srgan_core.download", "tools.figures", "tools.benchmark", "tools.heldout",
        "srgan_core.train", "srgan_core.pack", "srgan_core.provenance"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(tmp / "image.png")
    (tmp / "empty").mkdir()
    (tmp / "missing").mkdir()
    (tmp / "truncated").mkdir()
    for folder in ("photos", "Set5"):  # own HR images for evaluate --folders; photos/ also gets three it refuses
        (tmp / folder).mkdir()
        Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(tmp / folder / "image.png")
    (tmp / "photos" / "notes.png").write_bytes(b"not really a png")
    (tmp / "list.json").write_text("[1]")  # JSON, but not a model card
    Image.fromarray(np.full((8, 8), 2.0, np.float32)).save(tmp / "float.tif")  # a float image outside [0, 1]
    (tmp / "gifs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp / "gifs" / "anim.gif")
    (tmp / "rerun").mkdir()  # a folder upscaled into itself before: its output is read back as an input
    for name in ("cat.png", "cat_nearest_x4.png"):
        Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(tmp / "rerun" / name)
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(tmp / "photos" / "image.jpg")
    Image.fromarray(np.full((13, 18, 3), 120, np.uint8)).save(tmp / "photos" / "tiny.png")
    save_file(Discriminator(96).state_dict(), str(tmp / "discriminator.safetensors"))  # another network's weights
    (tmp / "damaged" / "benchmarks" / "Set5").mkdir(parents=True)  # a data folder whose files were cut short
    png = (tmp / "image.png").read_bytes()
    (tmp / "damaged" / "benchmarks" / "Set5" / "image.png").write_bytes(png[: len(png) // 2])
    (tmp / "damaged" / "niqe").mkdir()
    (tmp / "damaged" / "niqe" / "niqe_pris_params.npz").write_bytes(b"PK\x03\x04 cut short")
    (tmp / "packdata" / "benchmarks" / "Set5").mkdir(parents=True)
    (tmp / "packdata" / "benchmarks" / "Set5" / "image.png").write_bytes(png)
    (tmp / "packdata" / "train" / "T91").mkdir(parents=True)
    (tmp / "packdata" / "train" / "T91" / "t1.png").write_bytes(png)
    (tmp / "packdata" / "vgg19").mkdir()
    save_file({"weight": torch.zeros(2)}, str(tmp / "packdata" / "vgg19" / "vgg19_features_imagenet.safetensors"))
    (tmp / "packdata" / "niqe").mkdir()
    (tmp / "packdata" / "niqe" / "niqe_pris_params.npz").write_bytes(b"a stand-in")
    shutil.copytree(tmp / "packdata", tmp / "packvgg")  # the same, its VGG19 file cut short
    vgg = tmp / "packvgg" / "vgg19" / "vgg19_features_imagenet.safetensors"
    vgg.write_bytes(vgg.read_bytes()[:40])
    weights = (REPO_ROOT / "results" / "models" / "srresnet-mse.safetensors").read_bytes()
    (tmp / "truncated" / "srresnet-mse.safetensors").write_bytes(weights[: len(weights) // 2])
    return tmp


def run_cli(module: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, module, *args], cwd=REPO_ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("case", CASES + TRAIN_CASES, ids=lambda c: f"{c.module.split('.')[-1]}:{' '.join(c.args)}:{c.models or ''}")
def test_a_bad_input_gets_one_clear_line_and_no_traceback(case: Case, scratch: Path) -> None:
    fill = lambda text: text.replace("{tmp}", str(scratch))  # noqa: E731
    env = {key: fill(value) for key, value in case.env.items()}
    if case.models:
        env["CASE_MODELS_DIR"] = str(scratch / case.models)
    result = run_cli(case.module, [fill(arg) for arg in case.args], env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode != 0 if case.status is None else result.returncode == case.status
    useful = [line for line in result.stderr.splitlines() if fill(case.expected) in line]
    assert useful, f"no line says {case.expected!r}:\n{result.stderr}"
    assert len(useful[0]) < 400, "one line, not a page"
    if case.models:  # missing or damaged weights: the line says how to restore them
        assert "git checkout -- " in useful[0]


@pytest.mark.parametrize("module", HELP)
def test_help_works(module: str) -> None:
    result = run_cli(module, ["--help"], {})
    assert result.returncode == 0 and "usage:" in result.stdout and not result.stderr.strip()


DAMAGED = [  # evaluate's arguments on the damaged data folder, and the file its error must name
    (("--methods", "bicubic", "--datasets", "Set5", "--out", "{tmp}/r"), "damaged/niqe/niqe_pris_params.npz is damaged"),
    (("--methods", "bicubic", "--datasets", "Set5", "--no-niqe", "--out", "{tmp}/r"), "damaged/benchmarks/Set5/image.png"),
]


@pytest.mark.parametrize(("args", "named"), DAMAGED, ids=["niqe-model", "benchmark-image"])
def test_a_damaged_data_file_is_named_with_the_commands_that_find_and_replace_it(args: tuple[str, ...], named: str, scratch: Path) -> None:
    root = scratch / "damaged"
    result = run_cli("srgan_core.evaluate", ["--data-root", str(root), *(a.replace("{tmp}", str(scratch)) for a in args)], {})
    assert "Traceback" not in result.stderr and result.returncode != 0, result.stderr
    line = next((line for line in result.stderr.splitlines() if named in line), "")
    assert f"`{GET_DATA} --check --to {root}` finds damaged data files and `{GET_DATA} --to {root}` replaces them" in line, result.stderr
    assert len(line) < 400


def test_pack_interrupted_says_so_in_one_line_and_leaves_nothing(scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    def stopped(state: dict, path: Path) -> None:  # a Ctrl-C while the bundle is being written
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pack, "write_compact_bf16", stopped)
    assert pack.main([str(tmp_path / "bundle"), "--data-root", str(scratch / "packdata")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: ") and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
