"""Summarise a stretch of a training log: `python -m tools.log_summary results/training/srgan-vgg54_log.csv --from 3839`.

Prints the figures the training notes (results/training/srgan_cpu_schedule.md) quote, so each can be re-made from
the committed log: the iterations and learning rates covered, the content loss over the first and the last 100
iterations, D(x) and D(G(z)) (the discriminator's mean output on HR and SR crops: mean and range over the log rows),
and the range of each Set5 validation metric. `--extract OUT` also writes those rows, byte for byte, to a log of
their own (how a run that was not shipped keeps its log: `--from` the shipped iteration, e.g.
results/training/srgan-vgg54_unshipped_9555-12411_log.csv).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from srgan_core.markdown import markdown_table
from srgan_core.training_log import VALIDATION_METRICS, log_rows, read_log

EDGE_ITERATIONS = 100  # the content loss is averaged over this many iterations at each end
REQUIRED = ("iteration", "lr", "loss_content", "d_real", "d_fake")


def summarise(log: pd.DataFrame, start: int | None = None, end: int | None = None) -> list[tuple[str, str]]:
    """(quantity, value) rows for the log rows with start < iteration <= end (a run resumed at `start`)."""
    rows = log
    if start is not None:
        rows = rows[rows["iteration"] > start]
    if end is not None:
        rows = rows[rows["iteration"] <= end]
    if rows.empty:
        raise SystemExit(f"error: the log has no rows after iteration {start} up to {end}")
    first, last = int(rows["iteration"].min()), int(rows["iteration"].max())
    lrs = ", ".join(f"{lr:g}" for lr in rows["lr"].drop_duplicates())
    head = rows[rows["iteration"] <= first + EDGE_ITERATIONS - 1]["loss_content"].mean()
    tail = rows[rows["iteration"] > last - EDGE_ITERATIONS]["loss_content"].mean()
    out = [
        ("log rows", f"{len(rows)} (iterations {first}-{last})"),
        ("learning rate", lrs),
        (f"content loss, first / last {EDGE_ITERATIONS} iterations", f"{head:.4g} -> {tail:.4g}"),
    ]
    for column, name in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        values = rows[column].dropna()
        if not values.empty:
            out.append((f"{name} over the log rows: mean (range)", f"{values.mean():.2f} ({values.min():.2f}-{values.max():.2f})"))
    for metric in VALIDATION_METRICS:
        values = rows.get(f"set5_{metric}", pd.Series(dtype=float)).dropna()
        if not values.empty:
            out.append((f"Set5 {metric.replace('_', ' ')} at {len(values)} validations: range (last)", f"{values.min():.2f}-{values.max():.2f} ({values.iloc[-1]:.2f})"))
    return out


def extract(log: Path, out: Path, start: int | None = None, end: int | None = None) -> int:
    """Write the header and the rows with start < iteration <= end of `log` to a new file `out`, unchanged; the rows written."""
    header, kept = log_rows(log, start, end)
    with out.open("x") as f:  # never over an existing log
        f.write("\n".join([header, *kept]) + "\n")
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.log_summary", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("log", type=Path, help="a training log CSV (runs/<method>/log.csv or results/training/<method>_log.csv)")
    p.add_argument("--from", dest="start", type=int, default=None, help="only rows after this iteration (where a run resumed)")
    p.add_argument("--to", dest="end", type=int, default=None, help="only rows up to this iteration")
    p.add_argument("--extract", type=Path, metavar="OUT", help="also write these rows (with the header, unchanged) to OUT, a new file")
    args = p.parse_args(argv)
    if args.extract is not None and args.extract.exists():
        p.error(f"{args.extract} exists: pass a new file")
    rows = summarise(read_log(args.log, REQUIRED), args.start, args.end)
    print(markdown_table(["quantity", "value"], rows))
    if args.extract is not None:
        try:
            count = extract(args.log, args.extract, args.start, args.end)
        except OSError as exc:
            raise SystemExit(f"error: cannot write {args.extract} ({exc.strerror})") from None
        print(f"wrote {count} rows to {args.extract}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
