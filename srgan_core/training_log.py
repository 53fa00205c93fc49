"""The training log (CSV, one row per --log-every iterations), kept whole across resumed runs."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from srgan_core.paths import replace_text, replacing

VALIDATION_METRICS = ("psnr", "colour_shift", "grid", "niqe")  # evaluate's columns, logged for Set5 at every validation


def read_log(path: Path, required: Iterable[str]) -> pd.DataFrame:
    """A training log as a DataFrame; a clear SystemExit for a missing file, another kind of file, or a log without
    the `required` columns."""
    try:
        log = pd.read_csv(path)
    except FileNotFoundError:
        raise SystemExit(f"error: {path}: no such file (a training log: runs/<method>/log.csv)") from None
    except IsADirectoryError:
        raise SystemExit(f"error: {path} is a folder; pass its training log CSV (runs/<method>/log.csv)") from None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SystemExit(f"error: {path} is not a training log CSV ({type(exc).__name__})") from None
    missing = set(required) - set(log.columns)
    if missing:
        raise SystemExit(f"error: {path} is not a training log: no {', '.join(sorted(missing))} column")
    return log


def log_rows(path: Path, start: int | None = None, end: int | None = None) -> tuple[str, list[str]]:
    """A log's header line and its rows with start < iteration <= end, as written."""
    header, *rows = path.read_text().splitlines()
    iterations = [int(row.split(",", 1)[0]) for row in rows]
    return header, [row for row, it in zip(rows, iterations) if (start is None or it > start) and (end is None or it <= end)]


def cut_log(path: Path, iteration: int) -> int:
    """Drop the rows after `iteration` from a run's log (a run killed after its last checkpoint logged steps that a
    resume trains again); the rows dropped."""
    header, kept = log_rows(path, end=iteration)
    dropped = len(path.read_text().splitlines()) - 1 - len(kept)
    if dropped:
        replace_text(path, "\n".join([header, *kept]) + "\n")
    return dropped


def start_from_shipped_log(run_log: Path, shipped: Path, iteration: int) -> None:
    """Start a run's log with the shipped weights' log (its rows up to `iteration`, where the weights were exported),
    so the log exported at the end of the run still covers every iteration that built the weights. Nothing is done
    when the run already has a log or there is no shipped one."""
    if run_log.is_file() or not shipped.is_file():
        return
    header, kept = log_rows(shipped, end=iteration)
    run_log.parent.mkdir(parents=True, exist_ok=True)
    replace_text(run_log, "\n".join([header, *kept]) + "\n")


class CsvLog:
    FIELDS = [
        "iteration", "lr", "loss_g", "loss_content", "loss_adv", "loss_tv", "loss_d", "d_real", "d_fake", "it_per_s",
        *(f"set5_{metric}" for metric in VALIDATION_METRICS),
    ]

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file()
        if not new:
            self.upgrade(path)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, self.FIELDS, lineterminator="\n")
        if new:
            self.writer.writeheader()
            self.file.flush()

    def write(self, row: dict) -> None:
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    @classmethod
    def upgrade(cls, path: Path) -> None:
        """Rewrite a log from an older version with today's columns (new ones empty), so rows can be appended."""
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames == cls.FIELDS:
                return
            unknown = set(reader.fieldnames or []) - set(cls.FIELDS)
            if unknown:
                raise SystemExit(f"{path} has columns this trainer does not write: {sorted(unknown)}; move it away to start a new log")
            rows = list(reader)
        with replacing(path) as partial, partial.open("w", newline="") as f:
            writer = csv.DictWriter(f, cls.FIELDS, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
