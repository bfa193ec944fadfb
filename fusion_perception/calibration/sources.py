"""Where the calibration pairs come from: a ROS 2 bag of the rig, or a pair folder (ir/ + vi/).

CLI layer (docs/DESIGN.md "Layers"): it reads bags through ``bag/reader.py`` (rosbags), imported
only when a bag is given, so the estimator itself stays NumPy + OpenCV.

A bag holds thousands of frames of much the same scene; calibration needs a dozen or two pairs
spread over the recording (different scenes, different depths). So pairs are taken evenly: with
the message counts from the bag's metadata, every n-th stamp-matched pair is decoded, in one pass,
and only those are held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..image_pairs import find_pairs, read_pair

__all__ = ["PairSource", "is_bag", "pairs_from_bag", "pairs_from_folder"]


@dataclass
class PairSource:
    """Pairs read for calibration, with where they came from (for the report's provenance)."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    names: list[str]
    description: str
    available: int  # pairs in the source before thinning


def is_bag(path: Path) -> bool:
    """A bag folder (``metadata.yaml`` or a ``.mcap``/``.db3`` inside) or a bag file."""
    path = Path(path)
    if path.is_file():
        return path.suffix in (".mcap", ".db3")
    return path.is_dir() and (
        (path / "metadata.yaml").is_file() or any(path.glob("*.mcap")) or any(path.glob("*.db3"))
    )


def _evenly(count: int, wanted: int) -> list[int]:
    if count <= wanted:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, wanted).round().astype(int).tolist()))


def pairs_from_folder(root: Path, max_pairs: int) -> PairSource:
    """Up to ``max_pairs`` pairs of a folder with ir/ and vi/, evenly spread over its sorted names."""
    found = find_pairs(root)
    chosen = [found[i] for i in _evenly(len(found), max_pairs)]
    pairs = [read_pair(ir, vis) for _, ir, vis in chosen]
    return PairSource(pairs, [stem for stem, _, _ in chosen], f"pair folder {root}", len(found))


def pairs_from_bag(
    path: Path, *, ir_topic: str, visible_topic: str, slop_ns: int, max_pairs: int
) -> PairSource:
    """Up to ``max_pairs`` stamp-matched pairs of a bag, evenly spread over the recording.

    Pairing is the node's: :class:`~fusion_perception.pairing.StampPairer` with ``slop_ns``.
    """
    from ..bag.messages import image_from_msg
    from ..bag.reader import BagImages
    from ..pairing import StampPairer

    with BagImages(path, ir_topic=ir_topic, visible_topic=visible_topic) as bag:
        expected = max(1, min(bag.counts.get("ir", 0), bag.counts.get("visible", 0)))
        stride = max(1, expected // max_pairs)
        pairer: StampPairer = StampPairer(slop_ns, queue_size=10)
        pairs, names, seen = [], [], 0
        for frame in bag.frames():
            for pair in pairer.push(frame.stream, frame.stamp_ns, frame.msg):
                if seen % stride == 0 and len(pairs) < max_pairs:
                    pairs.append((image_from_msg(pair.ir), image_from_msg(pair.visible)))
                    names.append(f"stamp_{pair.visible_stamp_ns}")
                seen += 1
    if not seen:
        raise DatasetError(
            f"bag {path}: no IR/visible pair within {slop_ns / 1e6:g} ms on {ir_topic} and {visible_topic}"
        )
    return PairSource(pairs, names, f"bag {path} ({ir_topic}, {visible_topic})", seen)
