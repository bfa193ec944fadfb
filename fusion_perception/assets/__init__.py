"""Files shipped inside the package: the default model and a few sample pairs (see README.md here).

Located relative to this file, so they are found from an installed package, an editable install or
a colcon install alike, whatever the working directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["ASSETS_DIR", "DEFAULT_MODEL", "SAMPLES_DIR", "SamplePair", "load_sample_pairs", "sample_pairs"]

ASSETS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = ASSETS_DIR / "default.onnx"
SAMPLES_DIR = ASSETS_DIR / "samples"


class SamplePair:
    """Paths of one bundled pair: ``ir``, ``visible`` (PNG) and ``labels`` (YOLO txt)."""

    def __init__(self, folder: Path) -> None:
        self.name = folder.name
        self.ir = folder / "ir.png"
        self.visible = folder / "vi.png"
        self.labels = folder / "labels.txt"

    def __repr__(self) -> str:
        return f"SamplePair({self.name!r})"


def sample_pairs() -> list[SamplePair]:
    """The bundled pairs, sorted by name."""
    return [SamplePair(p) for p in sorted(SAMPLES_DIR.iterdir()) if (p / "ir.png").is_file()]


def load_sample_pairs(limit: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, IR grey array, visible BGR array) for the bundled pairs, sorted by name.

    Raises:
        FileNotFoundError: no samples are bundled.
        DatasetError: one of their files is unreadable.
    """
    from ..image_pairs import read_pair
    from ..preprocessing import to_gray

    pairs = sample_pairs()
    if not pairs:
        raise FileNotFoundError(f"no sample pairs are bundled under {SAMPLES_DIR}")
    for pair in pairs[:limit]:
        ir, vi = read_pair(pair.ir, pair.visible)
        yield pair.name, np.ascontiguousarray(to_gray(ir)), vi
