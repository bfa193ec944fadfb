"""Teacher labels: NanoDet-g's detections on every pair of a folder, as JSON for training.

The labeller runs the teacher on each pair's visible image, IR image and YCrCb-max fusion (the
fusion baseline the teacher scores best on MSRS val), separately, and keeps all three: the trainer
chooses its pseudo-labels / distillation targets for the fused image (e.g. the union of the visible
and IR boxes, or the max-fusion boxes) without re-running the teacher. Boxes are in the original
image's pixels after per-class NMS; scores are kept down to ``score_min`` because distillation uses
the soft scores, not only confident boxes.

File schema (``format_version`` 1)::

    {
      "format_version": 1,
      "teacher": "nanodet-g (COCO)",
      "teacher_sha256": "<SHA-256 over nanodet.bin and nanodet.json digests>",
      "purpose": "training" | "evaluation_only",
      "dataset": "<folder as given>", "split": "<split file>" | null,
      "classes": ["person", "bicycle", "car"],
      "class_map": {"person": "person", "bicycle": "bicycle", "motorcycle": "bicycle",
                    "car": "car", "bus": "car", "truck": "car"},          # COCO name -> ours
      "score_min": 0.05, "iou_threshold": 0.6, "max_detections": 100,
      "input": "letterbox 416x416",
      "sources": ["visible", "ir", "max"],
      "row": ["x1", "y1", "x2", "y2", "score", "class_id"],
      "images": {"<pair stem>": {"width": W, "height": H,
                                 "visible": [[x1, y1, x2, y2, score, class_id], ...],
                                 "ir": [...], "max": [...]}}
    }

Files marked ``evaluation_only`` (MSRS val) exist to measure pseudo-label quality; the loader refuses
them for training.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import DatasetError, ImageShapeError
from ..image_pairs import find_pairs, read_pair
from ..runtime.postprocess import Detections
from .assets import source_digest
from .images import judge_inputs
from .nanodet import CLASS_MAPS, COCO_CLASSES, INPUT_SIZE, IOU_THRESHOLD, PROJECT_CLASSES
from .runner import Teacher

__all__ = [
    "FORMAT_VERSION",
    "LABEL_SOURCES",
    "ImageLabels",
    "TeacherLabels",
    "label_folder",
    "load_teacher_labels",
    "write_teacher_labels",
]

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
LABEL_SOURCES = ("visible", "ir", "max")
Purpose = Literal["training", "evaluation_only"]
ROW = ["x1", "y1", "x2", "y2", "score", "class_id"]


def _class_map_names() -> dict[str, str]:
    return {
        COCO_CLASSES[c]: PROJECT_CLASSES[k] for k, group in enumerate(CLASS_MAPS["mapped"]) for c in group
    }


def _rows(dets: Detections) -> list[list[float]]:
    return [
        [*(round(float(v), 1) for v in box), round(float(score), 4), int(cls)]
        for box, score, cls in zip(dets.boxes, dets.scores, dets.class_ids, strict=True)
    ]


def label_folder(
    root: Path | str,
    *,
    names: Sequence[str] | None = None,
    split: str | None = None,
    teacher: Teacher | None = None,
    score_min: float = 0.05,
    max_detections: int = 100,
    purpose: Purpose = "training",
    progress: bool = False,
) -> dict[str, Any]:
    """Label every pair of ``root`` (or ``names``); returns the JSON document described above.

    Raises:
        DatasetError: the folder has no pairs, an image is unreadable, or IR and visible differ in size.
    """
    teacher = teacher or Teacher()
    pairs = find_pairs(root, names)
    images: dict[str, Any] = {}
    for index, (stem, ir_path, vis_path) in enumerate(pairs):
        ir, vis = read_pair(ir_path, vis_path)
        try:
            inputs = judge_inputs(ir, vis, None)
        except (ValueError, ImageShapeError) as err:
            raise DatasetError(f"{ir_path} / {vis_path}: {err}") from err
        entry: dict[str, Any] = {"width": int(vis.shape[1]), "height": int(vis.shape[0])}
        for source in LABEL_SOURCES:
            dets = teacher.raw(inputs[source]).detections(
                "mapped", score_min=score_min, max_detections=max_detections
            )
            entry[source] = _rows(dets)
        images[stem] = entry
        if progress and (index + 1) % 25 == 0:
            log.info("labelled %d / %d pairs of %s", index + 1, len(pairs), root)
    return {
        "format_version": FORMAT_VERSION,
        "teacher": "nanodet-g (COCO)",
        "teacher_sha256": source_digest(),
        "purpose": purpose,
        "dataset": str(root),
        "split": split,
        "classes": list(PROJECT_CLASSES),
        "class_map": _class_map_names(),
        "score_min": score_min,
        "iou_threshold": IOU_THRESHOLD,
        "max_detections": max_detections,
        "input": f"letterbox {INPUT_SIZE}x{INPUT_SIZE}",
        "sources": list(LABEL_SOURCES),
        "row": ROW,
        "images": images,
    }


def write_teacher_labels(doc: dict[str, Any], out: Path | str) -> Path:
    """Write ``doc`` compactly (one pair per line, so diffs stay readable) and atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = {k: v for k, v in doc.items() if k != "images"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "images": {']
    items = list(doc["images"].items())
    for i, (stem, entry) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        lines.append(f"  {json.dumps(stem)}: {json.dumps(entry, separators=(',', ':'))}{comma}")
    lines.append("}}")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)
    return out


@dataclass(frozen=True)
class ImageLabels:
    """The teacher's detections on one pair, per source (``visible``, ``ir``, ``max``), in pixels."""

    width: int
    height: int
    detections: dict[str, Detections]

    def __getitem__(self, source: str) -> Detections:
        if source not in self.detections:
            raise KeyError(f"no teacher labels for source {source!r}; have {sorted(self.detections)}")
        return self.detections[source]


@dataclass(frozen=True)
class TeacherLabels:
    """A loaded label file: ``images`` maps pair stem -> :class:`ImageLabels`; ``meta`` is the rest."""

    path: Path
    classes: tuple[str, ...]
    sources: tuple[str, ...]
    images: dict[str, ImageLabels]
    meta: dict[str, Any]


def _detections(rows: list[list[float]], n_classes: int, where: str) -> Detections:
    arr = np.asarray(rows, np.float32).reshape(-1, 6)
    cls = arr[:, 5].astype(np.int64)
    if cls.size and (cls.min() < 0 or cls.max() >= n_classes):
        raise DatasetError(f"{where}: class ids outside 0..{n_classes - 1}")
    return Detections(arr[:, :4].copy(), arr[:, 4].copy(), cls)


def load_teacher_labels(path: Path | str, *, purpose: Purpose = "training") -> TeacherLabels:
    """Read a teacher label file.

    Args:
        path: a file written by ``fusion-perception teacher label``.
        purpose: what the caller will do with it; ``training`` refuses files marked
            ``evaluation_only`` (MSRS val), so validation labels cannot leak into training.

    >>> labels = load_teacher_labels("data/teacher_labels/msrs_train.json")
    >>> dets = labels.images["00004N"]["visible"]    # Detections: boxes, scores, class_ids

    Raises:
        DatasetError: the file is missing, malformed, of another format version, or marked
            ``evaluation_only`` while ``purpose`` is ``training``.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"cannot read teacher labels {path}: {err}") from err
    if doc.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: teacher label format {doc.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    if purpose == "training" and doc.get("purpose") != "training":
        raise DatasetError(
            f"{path} is marked {doc.get('purpose')!r}: these labels must never be used for training"
        )
    try:
        classes, sources = tuple(doc["classes"]), tuple(doc["sources"])
        images = {
            stem: ImageLabels(
                int(e["width"]),
                int(e["height"]),
                {s: _detections(e[s], len(classes), f"{path}: {stem}/{s}") for s in sources},
            )
            for stem, e in doc["images"].items()
        }
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{path}: malformed teacher labels ({err!r})") from err
    meta = {k: v for k, v in doc.items() if k != "images"}
    return TeacherLabels(path, classes, sources, images, meta)
