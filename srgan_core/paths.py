"""Where the project's files and the shared data live."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "results" / "models"
TRAINING_DIR = REPO_ROOT / "results" / "training"  # shipped training logs and curves
RUNS_DIR = REPO_ROOT / "runs"  # training checkpoints (gitignored)


CLONE_DATA = REPO_ROOT / "data"  # where `python -m srgan_core.data download` puts the data by default (gitignored)
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # a copy shared by several clones beside each other
DATA_PARTS = ("benchmarks", "train", "vgg19", "niqe")  # what the download makes (data/ also holds the study's database)
GET_DATA = "python -m srgan_core.data download"  # the command to name wherever the data is missing
DATA_ROOT_DEFAULT = "SRGAN_DATA, else data/ in this clone once downloaded, else ../shared/data"  # what `default_data_root` picks, as --help says it


def default_data_root() -> Path | None:
    """`SRGAN_DATA`, else `data/` in this clone when the download filled it, else `../shared/data` beside the
    clone when it exists, else None."""
    env = os.environ.get("SRGAN_DATA")
    if env:
        return Path(env)
    if any((CLONE_DATA / part).is_dir() for part in DATA_PARTS):
        return CLONE_DATA
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def damaged_data(problem: str, root: Path | None = None) -> str:
    """One line for a damaged file of a data folder: `problem` (naming the file), then the commands that find such
    files and replace them (in `root`, when given)."""
    to = f" --to {root}" if root is not None else ""
    return f"{problem}: `{GET_DATA} --check{to}` finds damaged data files and `{GET_DATA}{to}` replaces them"


def shipped_log(method: str) -> Path:
    """Where a method's shipped training log lives (its model card names it relative to the repository)."""
    return TRAINING_DIR / f"{method}_log.csv"


def shown_path(path: Path) -> str:
    """A path as a user should type it: relative to the repository when it is inside."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


class FolderError(ValueError):
    """An output folder that cannot be made or written into; the message says what to give instead."""


def make_writable_folder(folder: Path, option: str) -> list[Path]:
    """Make `folder` and check this user can write into it (a file made and removed there: permissions alone do not
    tell), before any work; the folders it made, innermost first. FolderError naming `option` (having removed what it
    made) when it cannot."""
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{option} {folder} is a file; give a folder")
    made = [f for f in (folder, *folder.parents) if not f.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        remove_empty(made)
        raise FolderError(f"cannot write to {folder}: {exc.strerror or exc}; give {option} a folder you can write to") from None
    return made


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove those of `folders` that are empty, deepest first (what a failed command made and did not fill)."""
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty, or gone
            folder.rmdir()


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A hidden file beside `path` for the block to write, renamed onto `path` when the block ends well and removed
    when it does not: an error or a Ctrl-C midway leaves the file it would replace as it was, and no partial file. The
    new file has this process's default permissions and replaces a link at `path` rather than its target."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        with contextlib.suppress(OSError):  # renamed, or never made
            partial.unlink()


def replace_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through `replacing`."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")
