"""Files shipped inside the package: the default model and a few sample pairs (see README.md here).

Located relative to this file, so they are found from an installed package, an editable install or
a colcon install alike, whatever the working directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSETS_DIR", "DEFAULT_MODEL", "SAMPLES_DIR", "SamplePair", "sample_pairs"]

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
