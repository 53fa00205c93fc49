"""The one Markdown-table writer for every report (benchmarks, performance, training probes, MOS study)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(headers: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub pipe table; a '|' inside a cell is escaped so it cannot split the cell."""

    def line(cells: Iterable[object]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    headers = list(headers)
    return "\n".join([line(headers), "|" + "---|" * len(headers), *(line(row) for row in rows)])
