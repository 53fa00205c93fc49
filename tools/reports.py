"""What every research probe does with its report: name the command that made it, print it, and write it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command_line(module: str, argv: list[str] | None) -> str:
    """The command as a user would type it again, e.g. `python -m tools.probe_colour_fix --sigmas 4 8`."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def publish(text: str, out: Path | str | None) -> None:
    """Print the report, and write it to `out` (its folder made) when given."""
    print(text)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
