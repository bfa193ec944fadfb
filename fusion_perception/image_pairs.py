"""Finding and reading IR/visible image pairs on disk: one implementation for training,
evaluation, export calibration, bag making and the bundled samples (NumPy + OpenCV only).

A pair folder holds an IR sub-folder and a visible sub-folder (``ir``/``vi`` as in MSRS; the other
common spellings below are accepted) whose files pair by stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError

__all__ = ["IMAGE_SUFFIXES", "IR_DIRS", "VIS_DIRS", "find_pairs", "read_pair", "split_names"]

IR_DIRS = ("ir", "IR", "infrared", "Infrared", "Inf")
VIS_DIRS = ("vi", "VI", "vis", "visible", "Visible", "Vis")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def _find_dir(root: Path, names: tuple[str, ...], role: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f"{root} has no {role} folder (looked for {', '.join(names)})")


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def find_pairs(root: Path | str, names: Sequence[str] | None = None) -> list[tuple[str, Path, Path]]:
    """(stem, IR file, visible file) for every pair in ``root`` (sorted), or for ``names`` in order.

    Raises:
        DatasetError: a folder is missing, a file has no partner, a requested name is absent, or
            there are no pairs; the message names the folder and the files.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    ir, vis = _images(_find_dir(root, IR_DIRS, "IR")), _images(_find_dir(root, VIS_DIRS, "visible"))
    lonely = sorted(set(ir) ^ set(vis))
    if lonely:
        raise DatasetError(f"{root}: {len(lonely)} image(s) without a partner, e.g. {lonely[:3]}")
    stems = sorted(ir)
    if names is not None:
        missing = [n for n in names if n not in ir]
        if missing:
            raise DatasetError(f"{root}: requested pair(s) not found: {missing[:5]}")
        stems = list(names)
    if not stems:
        raise DatasetError(f"{root} holds no image pairs")
    return [(s, ir[s], vis[s]) for s in stems]


def split_names(root: Path | str, split: str | None) -> list[str] | None:
    """Stems listed in ``split``: a file, or a name under ``root/splits/`` (``train`` ->
    ``root/splits/train.txt``, one stem a line); None or "" = every pair (returns None).

    Raises:
        DatasetError: the split is neither an existing file nor a file under ``root/splits/``.
    """
    if not split:
        return None
    path = Path(split) if Path(split).is_file() else Path(root) / "splits" / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(f"split {split!r} is neither a file nor {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_pair(ir_path: Path | str, visible_path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair as the cameras would deliver it: IR at its stored depth (8 or 16 bit, any
    channel layout; ``preprocessing.to_gray`` reduces it), visible as BGR uint8.

    Raises:
        DatasetError: a file is missing or cannot be decoded (the message names it).
    """
    ir = cv2.imread(str(ir_path), cv2.IMREAD_UNCHANGED)
    vis = cv2.imread(str(visible_path), cv2.IMREAD_COLOR)
    for path, image in ((ir_path, ir), (visible_path, vis)):
        if image is None:
            raise DatasetError(f"cannot read image {path}")
    return ir, vis
