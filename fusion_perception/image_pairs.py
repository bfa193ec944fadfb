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

__all__ = [
    "DERIVED_SPLITS",
    "IMAGE_SUFFIXES",
    "IR_DIRS",
    "VIS_DIRS",
    "derived_split",
    "find_pairs",
    "read_pair",
    "split_names",
]

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


#: Splits carved from ``splits/train.txt`` for the development protocol (docs/RESULTS.md "Protocol"):
#: ``dev`` is where recipes, step counts, thresholds and checkpoints are chosen, ``fit`` is what a
#: development run trains on; ``val`` is scored once per finished model.
DERIVED_SPLITS = ("dev", "fit")
#: The train split, sorted by name (MSRS names are frame indices, so sorting keeps a drive's frames
#: together), is cut into this many contiguous blocks; ``dev`` is two of them (day and night frames).
DEV_BLOCK_COUNT = 10
DEV_BLOCKS = (4, 8)
#: Train names on each side of a dev block that ``fit`` leaves out: MSRS frames a few indices apart
#: are near-duplicates, and a dev pair with its twin in ``fit`` is not a pair the model never saw.
DEV_GUARD = 2


def derived_split(train: Sequence[str], name: str) -> list[str]:
    """``dev`` or ``fit`` of the train split ``train`` (sorted names).

    ``dev`` = blocks :data:`DEV_BLOCKS` of :data:`DEV_BLOCK_COUNT` contiguous blocks of the sorted
    names; ``fit`` = the rest minus :data:`DEV_GUARD` names beside each dev block. The two are
    disjoint, fixed by the names alone (the same for every seed and run), and whole drives'
    stretches stay on one side, so dev scores what the model did not see nearly-duplicated.

    Raises:
        ValueError: ``name`` is not a derived split, or ``train`` is too short to cut into blocks.
    """
    if name not in DERIVED_SPLITS:
        raise ValueError(f"derived splits are {DERIVED_SPLITS}, not {name!r}")
    ordered = sorted(train)
    if len(ordered) < DEV_BLOCK_COUNT * (1 + 2 * DEV_GUARD):
        raise ValueError(f"a train split of {len(ordered)} names is too short for a dev split")
    edges = np.linspace(0, len(ordered), DEV_BLOCK_COUNT + 1).round().astype(int)
    dev_idx: set[int] = set()
    guard_idx: set[int] = set()
    for block in DEV_BLOCKS:
        lo, hi = int(edges[block]), int(edges[block + 1])
        dev_idx.update(range(lo, hi))
        guard_idx.update(range(max(0, lo - DEV_GUARD), lo))
        guard_idx.update(range(hi, min(len(ordered), hi + DEV_GUARD)))
    if name == "dev":
        return [n for i, n in enumerate(ordered) if i in dev_idx]
    return [n for i, n in enumerate(ordered) if i not in dev_idx | guard_idx]


def split_names(root: Path | str, split: str | None) -> list[str] | None:
    """Stems listed in ``split``: a file, a name under ``root/splits/`` (``train`` ->
    ``root/splits/train.txt``, one stem a line) or a split derived from the train split
    (:data:`DERIVED_SPLITS`, :func:`derived_split`); None or "" = every pair (returns None).

    Raises:
        DatasetError: the split is neither an existing file nor a file under ``root/splits/``.
    """
    if not split:
        return None
    if split in DERIVED_SPLITS and not (Path(root) / "splits" / f"{split}.txt").is_file():
        return derived_split(split_names(root, "train") or [], split)
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
