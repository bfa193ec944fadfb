"""Runs named ``<NAME>_s<SEED>`` under one folder, gathered into a Markdown table of mean (min-max)
over seeds per name: the form every multi-seed comparison in docs/RESULTS.md takes.

Why one helper: the dev levers (``dev_levers.py``) and the training schemes (``schemes_table.py``)
read different reports and columns but must aggregate and print seeds alike, so a reader compares
"0.453 (0.446-0.460)" cells that mean the same thing everywhere.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["Column", "cell", "collect", "figures", "table", "value"]

RUN_NAME = re.compile(r"^(?P<name>.+)_s(?P<seed>\d+)$")
Column = tuple[str, Callable[[dict], float]]  # (header, report -> value; KeyError when absent)


def value(get: Callable[[dict], float], report: dict) -> float | None:
    """The column's value, or None where the report does not hold it."""
    try:
        return get(report)
    except KeyError:
        return None


def collect(root: Path, report: str) -> dict[str, dict[int, dict]]:
    """name -> seed -> the parsed ``<root>/<NAME>_s<SEED>/<report>``, names in the order their first
    report was written."""
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(root.glob(f"*/{report}"), key=lambda p: p.stat().st_mtime):
        match = RUN_NAME.match(path.parent.name)
        if match:
            runs.setdefault(match["name"], {})[int(match["seed"])] = json.loads(path.read_text())
    return runs


def figures(runs: dict[str, dict[int, dict]], columns: Sequence[Column]) -> dict[str, dict[str, dict]]:
    """name -> seed -> column -> value: what a result JSON keeps of each report."""
    return {
        name: {str(seed): {head: value(get, rep) for head, get in columns} for seed, rep in by_seed.items()}
        for name, by_seed in runs.items()
    }


def cell(values: list[float | None], digits: int = 3) -> str:
    """One value as it is; several as mean (min-max); "-" where any run lacks it."""
    if not values or None in values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(runs: dict[str, dict[int, dict]], columns: Sequence[Column], first: str) -> str:
    """Markdown: one row per name with its seeds, then one cell per column."""
    head = f"| {first} | seeds | " + " | ".join(h for h, _ in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for name, by_seed in runs.items():
        seeds = sorted(by_seed)
        cells = [cell([value(get, by_seed[s]) for s in seeds]) for _, get in columns]
        lines.append(f"| {name} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
