"""What every research probe does with its report: name the command that made it, print it, and write it."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from srgan_core.paths import replace_text, shown_path


def command_line(module: str, argv: list[str] | None) -> str:
    """The command as a user would type it again, e.g. `python -m tools.probe_colour_fix --sigmas 4 8`."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def publish(text: str, out: Path | str | None) -> None:
    """Print the report, and write it to `out` (its folder made) when given."""
    print(text)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        replace_text(Path(out), text)


def report_path(parser: argparse.ArgumentParser, args: argparse.Namespace, shipped: Path) -> Path:
    """--out, else the shipped report: which only a run with the shipped run's settings may replace (a smaller trial
    run would overwrite the figures the README quotes)."""
    if args.out is not None:
        return Path(args.out)
    changed = [f"--{name.replace('_', '-')}" for name, value in vars(args).items() if name != "out" and value != parser.get_default(name)]
    if changed:
        parser.error(f"{', '.join(changed)}: settings other than the shipped report's need --out ({shown_path(shipped)} keeps the shipped figures)")
    return shipped
