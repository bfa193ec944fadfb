"""Where a benchmark's result goes: one JSON file, written the same way by every benchmark.

Why one helper: the files under ``benchmarks/results/`` are kept in the repository, cited by
benchmarks/README.md and compared run against run, so every benchmark writes them alike (indent 2,
trailing newline, parent folders created) and says which file it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_result"]


def write_result(path: Path, result: Any, default: Callable[[Any], Any] | None = None) -> None:
    """Write ``result`` as JSON to ``path`` and print ``wrote PATH``.

    ``default`` is :func:`json.dumps`'s: how to write values JSON has no type for (e.g. ``float``
    for numpy scalars).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=default) + "\n")
    print(f"wrote {path}")
