"""Where a benchmark's result goes: one JSON file, written the same way by every benchmark.

Why one helper: the files under ``benchmarks/results/`` are kept in the repository, cited by
benchmarks/README.md and compared run against run, so every benchmark writes them alike (indent 2,
trailing newline, parent folders created) and says which file it wrote.

They also hold no machine's absolute paths (test/test_repository_paths.py checks): every string is
passed through :func:`portable`, which writes files of the repository relative to its root
(``fusion_perception/assets/default.onnx``), the data root as ``../shared/datasets/...`` (its default
place) or ``$FUSION_PERCEPTION_DATA/...``, and the temporary folder as ``$TMPDIR/...``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusion_perception.data_root import DATA_ENV, DEFAULT_DATA_ROOT, data_root

__all__ = ["REPO", "portable", "write_result", "write_text"]

REPO = Path(__file__).resolve().parents[1]


def _prefixes() -> list[tuple[str, str]]:
    """(absolute folder, what to write instead), longest folder first."""
    data = data_root().resolve()
    shown = (os.path.relpath(data, REPO) if data == DEFAULT_DATA_ROOT.resolve() else f"${DATA_ENV}")
    pairs = {str(REPO): ".", str(data): shown, str(Path(tempfile.gettempdir()).resolve()): "$TMPDIR"}
    # The data root inside the repository is written relative to it like any other file there.
    if data.is_relative_to(REPO):
        pairs.pop(str(data))
    return sorted(pairs.items(), key=lambda item: -len(item[0]))


def portable(value: Any) -> Any:
    """``value`` (str, or lists/dicts of them, recursively) with machine paths made portable.

    Only whole path components are rewritten (``/a/repo`` but not ``/a/repository``); the rest of
    a string (a log line, ``VAR=path (note)``) is kept. Other values are returned unchanged.
    """
    if isinstance(value, str):
        for folder, shown in _prefixes():
            # "REPO/x" -> "x", a bare "REPO" -> "."; other folders keep the slash after them.
            def replace(match: re.Match[str], shown: str = shown) -> str:
                return "" if shown == "." and match.group(1) else shown + match.group(1)

            value = re.sub(re.escape(folder) + r"(/|(?![\w.-]))", replace, value)
        return value
    if isinstance(value, Path):
        return portable(str(value))
    if isinstance(value, dict):
        return {portable(k): portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    return value


def write_result(path: Path, result: Any, default: Callable[[Any], Any] | None = None) -> None:
    """Write ``result`` as JSON to ``path`` (machine paths made :func:`portable`), print ``wrote PATH``.

    ``default`` is :func:`json.dumps`'s: how to write values JSON has no type for (e.g. ``float``
    for numpy scalars).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(result), indent=2, default=default) + "\n")
    print(f"wrote {path}")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (e.g. a node log kept next to a result) with machine paths made portable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(portable(text))
