"""`python -m study.prepare`: stimuli rendered once, blind (opaque names, no metadata), all registered."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_core import method_specs
from srgan_core.images import downscale_x4, load_image, modcrop
from srgan_core.methods import load_method
from study import prepare, store
from study.schema import KINDS

SYNTHETIC_SIZES = [(42, 34), (36, 40), (50, 30)]  # width x height, not all multiples of 4


def synthetic_data_root(folder: Path, benchmark_images: int = 3, train_images: int = 8) -> Path:
    """A data folder laid out like ../shared/data with small textured images (Set5 and BSDS500_train)."""
    rng = np.random.default_rng(0)
    bench = folder / "benchmarks" / "Set5"
    train = folder / "train" / "BSDS500_train"
    bench.mkdir(parents=True)
    train.mkdir(parents=True)

    def texture(w: int, h: int) -> np.ndarray:
        coarse = rng.integers(0, 256, size=(h // 6 + 1, w // 6 + 1, 3))
        smooth = np.kron(coarse, np.ones((6, 6, 1)))[:h, :w]
        return np.clip(smooth + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)

    for i in range(benchmark_images):
        w, h = SYNTHETIC_SIZES[i % len(SYNTHETIC_SIZES)]
        Image.fromarray(texture(w, h)).save(bench / f"img{i}.png")
    for i in range(train_images):
        Image.fromarray(texture(45, 33)).save(train / f"{100 + i}.jpg", quality=95)
    return folder


def request(**overrides) -> prepare.Request:
    fields = dict(
        name="pilot",
        datasets=["Set5"],
        methods=["nearest", "bicubic", "hr"],
        per_rater=None,
        repeats=2,
        seed=0,
        calibration=2,
        gold=2,
        pause_every=0,
    )
    return prepare.Request(**(fields | overrides))


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file's bytes, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        chunks.append(data[i + 4 : i + 8].decode("ascii"))
        i += 12 + length
    return chunks


@pytest.fixture
def data(tmp_path) -> Path:
    return synthetic_data_root(tmp_path / "data")


def test_renders_every_stimulus_once_under_an_opaque_name(data, tmp_path):
    db = tmp_path / "study" / "study.sqlite"
    counts = prepare.prepare(request(), data, db)
    assert counts == {"trial": 9, "calibration": 4, "gold": 2}
    folder = store.stimuli_dir(db, "pilot")
    files = sorted(folder.iterdir())
    assert len(files) == 15 and all(re.fullmatch(r"[0-9a-f]{32}\.png", f.name) for f in files)
    with store.connect(db) as con:
        rows = {s.id: s for kind in KINDS for s in store.study_stimuli(con, "pilot", kind)}
        config = store.study_config(con, "pilot")
    assert config["repeats"] == 2 and config["methods"] == ["nearest", "bicubic", "hr"]
    assert {f.stem for f in files} == set(rows)
    nearest = load_method("nearest")
    for s in rows.values():
        path = db.parent / s.file
        assert png_chunks(path.read_bytes()) == ["IHDR", "IDAT", "IEND"]  # no text, time or EXIF chunks
        if s.kind == "trial":
            assert s.dataset == "Set5"
            source = data / "benchmarks" / "Set5" / f"{s.image}.png"
        else:
            assert s.dataset == "BSDS500_train"
            source = data / "train" / "BSDS500_train" / f"{s.image}.jpg"
        hr = modcrop(load_image(source), 4)
        shown = load_image(path)
        assert (s.height, s.width) == shown.shape[:2] == hr.shape[:2]
        if s.method == "hr":
            np.testing.assert_array_equal(shown, hr)
        elif s.method == "nearest":
            np.testing.assert_array_equal(shown, nearest.upscale(downscale_x4(hr)))
    calibration = [s for s in rows.values() if s.kind == "calibration"]
    assert sorted((s.method, s.expected) for s in calibration) == [("hr", 5)] * 2 + [("nearest", 1)] * 2
    assert len({s.image for s in calibration}) == 2
    gold = [s for s in rows.values() if s.kind == "gold"]
    assert sorted((s.method, s.expected) for s in gold) == [("hr", 5), ("nearest", 1)]
    assert not {s.image for s in gold} & {s.image for s in calibration}
    assert all(s.expected is None for s in rows.values() if s.kind == "trial")
    assert [p.name for p in db.parent.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_anchors_render_when_the_studied_methods_leave_out_nearest(data, tmp_path):
    """The paper's Table 1 study rates only the networks; its calibration and gold items still need nearest."""
    db = tmp_path / "study.sqlite"
    counts = prepare.prepare(request(methods=["bicubic", "hr"]), data, db)
    assert counts == {"trial": 6, "calibration": 4, "gold": 2}
    with store.connect(db) as con:
        anchors = store.study_stimuli(con, "pilot", "calibration") + store.study_stimuli(con, "pilot", "gold")
    assert sorted({s.method for s in anchors}) == ["hr", "nearest"]


def nothing_written(db: Path, name: str = "pilot") -> bool:
    leftovers = [p for p in db.parent.iterdir() if p.name.startswith(".")] if db.parent.exists() else []
    if not db.exists():
        return not leftovers
    with store.connect(db) as con:
        return not store.has_study(con, name) and not leftovers and not store.stimuli_dir(db, name).exists()


def test_refuses_learned_method_without_weights_naming_them(data, tmp_path, monkeypatch):
    monkeypatch.setattr(method_specs, "MODELS_DIR", tmp_path / "no-models")
    db = tmp_path / "study.sqlite"
    with pytest.raises(prepare.PrepareError, match=r"srgan-vgg54.*srgan-vgg54\.safetensors"):
        prepare.prepare(request(methods=["srgan-vgg54", "hr"]), data, db)
    assert nothing_written(db)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"methods": ["nearest", "lanczos"]}, "unknown method"),
        ({"methods": ["nearest", "nearest"]}, "listed twice"),
        ({"datasets": ["Set99"]}, "unknown dataset"),
        ({"name": "../escape"}, "study name"),
        ({"name": ""}, "study name"),
        ({"name": "ünï"}, "study name 'ünï': use 1-64 of the ASCII letters A-Z and a-z, the digits 0-9, '-' and '_'"),
        ({"per_rater": 10}, "--per-rater 10"),
        ({"per_rater": 0}, "--per-rater 0"),
        ({"repeats": 10}, "--repeats 10"),
        ({"per_rater": 3, "repeats": 4}, "--repeats 4"),
        ({"calibration": 7, "gold": 2}, "need 9 images"),
        ({"gold": -1}, "cannot be negative"),
        ({"spacing": 99}, "--spacing 99"),
    ],
)
def test_refuses_bad_requests_and_writes_nothing(data, tmp_path, overrides, message):
    db = tmp_path / "study.sqlite"
    with pytest.raises(prepare.PrepareError, match=re.escape(message)):
        prepare.prepare(request(**overrides), data, db)
    assert nothing_written(db, overrides.get("name", "pilot") or "pilot") and not db.exists()  # not even an empty database


def test_refuses_an_existing_study_name(data, tmp_path):
    db = tmp_path / "study.sqlite"
    prepare.prepare(request(), data, db)
    before = sorted(store.stimuli_dir(db, "pilot").iterdir())
    with pytest.raises(prepare.PrepareError, match="already exists"):
        prepare.prepare(request(methods=["hr"]), data, db)
    assert sorted(store.stimuli_dir(db, "pilot").iterdir()) == before


def test_a_study_of_the_same_name_prepared_meanwhile_is_refused_cleanly(data, tmp_path, monkeypatch):
    """Two runs with one --name at once: the one that registers second says so, and leaves the first's files."""
    db = tmp_path / "study.sqlite"
    save = prepare.save_png

    def save_after_a_rival(img, path):
        monkeypatch.setattr(prepare, "save_png", save)
        prepare.prepare(request(methods=["hr"]), data, db)  # the rival run, done while this one renders
        save(img, path)

    monkeypatch.setattr(prepare, "save_png", save_after_a_rival)
    with pytest.raises(prepare.PrepareError, match="already exists"):
        prepare.prepare(request(), data, db)
    with store.connect(db) as con:
        assert {s.method for s in store.study_stimuli(con, "pilot", "trial")} == {"hr"}
    assert len(list(store.stimuli_dir(db, "pilot").iterdir())) == len(list(Path(data, "benchmarks", "Set5").iterdir())) + 2 + 2 * 2
    assert [p.name for p in store.stimuli_dir(db, "pilot").parent.parent.iterdir() if p.name.startswith(".")] == []


def test_a_failure_midway_leaves_nothing_behind(data, tmp_path, monkeypatch):
    calls = []

    def failing_save(img, path):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        Image.fromarray(img).save(path)

    monkeypatch.setattr(prepare, "save_png", failing_save)
    db = tmp_path / "study.sqlite"
    with pytest.raises(OSError, match="disk full"):
        prepare.prepare(request(), data, db)
    assert nothing_written(db)
    nested = tmp_path / "new" / "deeper" / "study.sqlite"  # folders the run made are removed with it
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        prepare.prepare(request(), data, nested)
    assert not (tmp_path / "new").exists()


def test_cli(data, tmp_path, capsys):
    db = tmp_path / "study.sqlite"
    common = ["--datasets", "Set5", "--calibration", "1", "--gold", "2", "--data-root", str(data), "--db", str(db)]
    args = ["--name", "cli", "--methods", "nearest", "hr", "--per-rater", "4", "--repeats", "1", "--seed", "3", *common]
    assert prepare.main(args) == 0
    out = capsys.readouterr().out
    assert "6 stimuli, 2 calibration and 2 gold items" in out and "each rater answers 9" in out
    assert prepare.main(["--name", "cli2", "--methods", "nearest", "--repeats", "9", *common]) == 2
    assert "--repeats 9: must be between 0 and the 3 stimuli" in capsys.readouterr().err
    assert prepare.main(["--name", "cli2", "--methods", "nearest", *common]) == 2  # --repeats not typed: its default is named
    assert "--repeats defaults to 10, more than the 3 stimuli each rater sees; give --repeats 1," in capsys.readouterr().err
    elsewhere = tmp_path / "new" / "study.sqlite"  # a refused request creates no database
    assert prepare.main(["--name", "x", "--methods", "hr", "--repeats", "99", *common[:-1], str(elsewhere)]) == 2
    assert not elsewhere.parent.exists()
    assert prepare.main(["--name", "cli3", "--methods", "nearest", "hr", "--repeats", "1", *common]) == 0
    out = capsys.readouterr().out  # a second study in one database: what that means for a running server
    assert "note: 'cli3' is now the open study" in out and "the raters of 'cli' go on" in out and "--completion-code" in out
    with pytest.raises(SystemExit):
        prepare.main(["--name", "x", "--datasets", "Set99", "--methods", "hr", "--db", str(db)])
    capsys.readouterr()
    assert prepare.main(["--name", "x", "--methods", "hr", "--repeats", "1", *common[:-1], str(tmp_path)]) == 2  # a folder
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--db {tmp_path} is a folder: give the study database's file name" in err


def test_real_set5_and_bsds500_calibration(data_root, tmp_path):
    db = tmp_path / "study.sqlite"
    counts = prepare.prepare(request(methods=["nearest", "hr"], calibration=1, gold=2, repeats=0), data_root, db)
    assert counts == {"trial": 10, "calibration": 2, "gold": 2}
    with store.connect(db) as con:
        trial = store.study_stimuli(con, "pilot", "trial")
        extra = store.study_stimuli(con, "pilot", "calibration") + store.study_stimuli(con, "pilot", "gold")
    sizes = {s.image: (s.height, s.width) for s in trial}
    for path in (data_root / "benchmarks" / "Set5").glob("*.png"):
        assert sizes[path.stem] == modcrop(load_image(path), 4).shape[:2]
    assert all({s.width, s.height} == {480, 320} for s in extra)  # BSDS500 481x321 mod-cropped: the BSD100 size
