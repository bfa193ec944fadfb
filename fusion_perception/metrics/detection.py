"""Detection quality: COCO mAP@0.5 and mAP@0.5:0.95 per class, through the official ``pycocotools``.

The scoring itself is pycocotools' (101-point interpolated precision, greedy matching by score); this
module only feeds it and reads its precision array, so the numbers match any other COCO evaluation:

* COCO's area ranges: ``all`` for the means, and AP50 also per ``small`` (< 32^2 px^2), ``medium``
  and ``large`` (>= 96^2) object, because a detector's losses sit in the small objects (distant
  persons) that a mean over all sizes hides; one detection cap (100 per image by default, the
  highest-scoring kept, as COCO does);
* pycocotools prints progress to stdout; it is captured so a ROS node's or a CLI's output stays clean;
* a class without ground truth has no AP (NaN) and is left out of the mean, even when it has
  predictions (COCO's rule); with no ground truth at all, every AP is NaN; with no predictions at all,
  every class that has ground truth scores 0.

Boxes are (x1, y1, x2, y2) in pixel-edge coordinates, like ``runtime.postprocess.Detections``.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..errors import DatasetError

__all__ = ["DetectionEvaluator", "load_yolo_labels"]

#: COCO's area ranges in px^2 (pycocotools' defaults); "all" first: the means read index 0.
AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


def _as_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what} must be Nx4 (x1, y1, x2, y2), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} hold NaN or infinite coordinates")
    if (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        raise ValueError(f"{what} must have x2 >= x1 and y2 >= y1 (x1, y1, x2, y2 order)")
    return arr


def _as_vector(values: np.ndarray, n: int, what: str) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{what} has {arr.shape[0]} entries for {n} boxes")
    return arr


class DetectionEvaluator:
    """Accumulates per-image ground truth and predictions, then scores them with COCOeval.

    Args:
        class_names: names of the class ids 0..K-1.
        max_detections: predictions kept per image (highest scores first), COCO's ``maxDets``.

    >>> ev = DetectionEvaluator(["person"])
    >>> ev.add("a", np.array([[0, 0, 10, 10]]), np.array([0]),
    ...        np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0]))
    >>> round(ev.summarize()["mAP50"], 12)  # COCO's precision tp / (tp + fp + eps) is 1 - 1e-16
    1.0
    """

    def __init__(self, class_names: Sequence[str], *, max_detections: int = 100) -> None:
        self.class_names = [str(n) for n in class_names]
        if not self.class_names:
            raise ValueError("DetectionEvaluator needs at least one class name")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names must be unique, got {self.class_names}")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        self.max_detections = int(max_detections)
        self._image_ids: dict[str, int] = {}
        self._gt: list[dict[str, Any]] = []
        self._dt: list[dict[str, Any]] = []

    def _as_classes(self, classes: np.ndarray, n: int, what: str) -> np.ndarray:
        arr = _as_vector(classes, n, what)
        if n == 0:
            return arr.astype(np.int64)
        if not np.all(np.isfinite(arr.astype(np.float64))) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{what} must be integer class ids, got {arr[:5].tolist()}...")
        ids = arr.astype(np.int64)
        bad = ids[(ids < 0) | (ids >= len(self.class_names))]
        if bad.size:
            last = len(self.class_names) - 1
            raise ValueError(f"{what} holds class id {int(bad[0])}; valid ids are 0..{last}")
        return ids

    def add(
        self,
        image_id: str,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        pred_boxes: np.ndarray,
        pred_scores: np.ndarray,
        pred_classes: np.ndarray,
    ) -> None:
        """Add one image: ground truth and predictions, boxes Nx4 (x1, y1, x2, y2) in pixels.

        Raises:
            ValueError: a repeated ``image_id``, bad shapes, inverted boxes, non-finite scores or
                class ids outside 0..K-1.
        """
        key = str(image_id)
        if key in self._image_ids:
            raise ValueError(f"image {key!r} was already added")
        gt = _as_boxes(gt_boxes, "gt_boxes")
        gt_cls = self._as_classes(gt_classes, gt.shape[0], "gt_classes")
        dt = _as_boxes(pred_boxes, "pred_boxes")
        scores = _as_vector(pred_scores, dt.shape[0], "pred_scores").astype(np.float64)
        if not np.isfinite(scores).all():
            raise ValueError("pred_scores hold NaN or infinite values")
        dt_cls = self._as_classes(pred_classes, dt.shape[0], "pred_classes")

        coco_id = len(self._image_ids) + 1
        self._image_ids[key] = coco_id
        for box, cls in zip(gt, gt_cls, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            self._gt.append({
                "id": len(self._gt) + 1, "image_id": coco_id, "category_id": int(cls) + 1,
                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0,
            })
        for box, score, cls in zip(dt, scores, dt_cls, strict=True):
            self._dt.append({
                "image_id": coco_id, "category_id": int(cls) + 1, "score": float(score),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
            })

    def _precision(self) -> np.ndarray:
        """COCOeval's precision array as [IoU threshold (10), recall point (101), class, area range]."""
        k = len(self.class_names)
        gt_api = COCO()
        gt_api.dataset = {
            "images": [{"id": i} for i in self._image_ids.values()],
            "annotations": [dict(a) for a in self._gt],
            "categories": [{"id": c + 1, "name": n} for c, n in enumerate(self.class_names)],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            gt_api.createIndex()
            dt_api = gt_api.loadRes([dict(d) for d in self._dt])
            ev = COCOeval(gt_api, dt_api, iouType="bbox")
            ev.params.catIds = list(range(1, k + 1))
            ev.params.areaRng = [list(r) for r in AREA_RANGES.values()]
            ev.params.areaRngLbl = list(AREA_RANGES)
            ev.params.maxDets = [self.max_detections]
            ev.evaluate()
            ev.accumulate()
        return ev.eval["precision"][:, :, :, :, 0]

    def operating_points(
        self, thresholds: Sequence[float], *, iou_threshold: float = 0.5
    ) -> list[dict[str, float]]:
        """Precision, recall, F1 and boxes per image over all classes at each score threshold.

        mAP integrates over thresholds; a robot runs at one. Detections are matched greedily by score to
        unmatched ground truth of the same class at IoU >= ``iou_threshold`` (COCO's rule at one IoU).
        """
        by_key: dict[tuple[int, int], tuple[list, list]] = {}
        for a in self._gt:
            x, y, w, h = a["bbox"]
            by_key.setdefault((a["image_id"], a["category_id"]), ([], []))[0].append([x, y, x + w, y + h])
        for d in self._dt:
            x, y, w, h = d["bbox"]
            box = [x, y, x + w, y + h, d["score"]]
            by_key.setdefault((d["image_id"], d["category_id"]), ([], []))[1].append(box)
        scored: list[tuple[float, bool]] = []
        for gts, dts in by_key.values():
            det = np.asarray(sorted(dts, key=lambda r: -r[4]), np.float64).reshape(-1, 5)
            hits = _greedy_matches(np.asarray(gts, np.float64).reshape(-1, 4), det[:, :4], iou_threshold)
            scored += list(zip(det[:, 4].tolist(), hits.tolist(), strict=True))
        num_gt = len(self._gt)
        images = max(len(self._image_ids), 1)
        rows = []
        for t in thresholds:
            # Matching at a threshold equals matching all, then keeping kept ones: greedy order is by score.
            kept = [hit for score, hit in scored if score >= t]
            tp = sum(kept)
            precision = tp / len(kept) if kept else 1.0
            recall = tp / num_gt if num_gt else math.nan
            f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
            rows.append({
                "threshold": float(t), "precision": precision, "recall": recall, "f1": f1,
                "boxes_per_image": len(kept) / images,
            })
        return rows

    def summarize(self) -> dict:
        """Score everything added so far.

        Returns:
            ``{"mAP50", "mAP50_95", "per_class": {name: {"AP50", "AP50_95", "num_gt"}}, "num_images",
            "by_area": {"small" | "medium" | "large": {"mAP50", "per_class": {name: {"AP50",
            "num_gt"}}}}}``; APs in [0, 1], NaN for classes without ground truth (in that size range);
            the means skip NaN classes and are NaN when no class has ground truth.
        """
        k = len(self.class_names)
        areas = np.asarray([a["area"] for a in self._gt], np.float64)
        gt_class = np.asarray([a["category_id"] - 1 for a in self._gt], np.int64)
        # Per area range: which gts COCO counts there (its rule: lo <= area <= hi).
        in_range = [(areas >= lo) & (areas <= hi) for lo, hi in AREA_RANGES.values()]
        num_gt = np.stack([np.bincount(gt_class[m], minlength=k) for m in in_range], axis=1)  # [class, area]
        has_gt = num_gt > 0
        ap50 = np.full(num_gt.shape, math.nan)
        ap50_95 = np.full(k, math.nan)
        if has_gt.any() and not self._dt:
            ap50[has_gt] = 0.0  # nothing predicted: recall 0 everywhere
            ap50_95[has_gt[:, 0]] = 0.0
        elif has_gt.any():
            precision = self._precision()
            for c, a in zip(*np.nonzero(has_gt), strict=True):
                ap50[c, a] = float(precision[0, :, c, a].mean())
            for c in np.flatnonzero(has_gt[:, 0]):
                ap50_95[c] = float(precision[:, :, c, 0].mean())

        def mean(values: np.ndarray, mask: np.ndarray) -> float:
            return float(values[mask].mean()) if mask.any() else math.nan

        by_area = {
            label: {
                "mAP50": mean(ap50[:, a], has_gt[:, a]),
                "per_class": {
                    name: {"AP50": float(ap50[c, a]), "num_gt": int(num_gt[c, a])}
                    for c, name in enumerate(self.class_names)
                },
            }
            for a, label in enumerate(AREA_RANGES)
            if label != "all"
        }
        return {
            "mAP50": mean(ap50[:, 0], has_gt[:, 0]),
            "mAP50_95": mean(ap50_95, has_gt[:, 0]),
            "per_class": {
                name: {"AP50": float(ap50[c, 0]), "AP50_95": float(ap50_95[c]), "num_gt": int(num_gt[c, 0])}
                for c, name in enumerate(self.class_names)
            },
            "num_images": len(self._image_ids),
            "by_area": by_area,
        }


def _greedy_matches(gts: np.ndarray, dts: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Which detections (rows of ``dts``, highest score first) match a ground truth box one-to-one."""
    matched = np.zeros(len(dts), bool)
    used = np.zeros(len(gts), bool)
    for i, d in enumerate(dts):
        if not len(gts):
            break
        lt = np.maximum(gts[:, :2], d[:2])
        rb = np.minimum(gts[:, 2:], d[2:])
        inter = np.clip(rb - lt, 0, None).prod(1)
        union = (gts[:, 2:] - gts[:, :2]).prod(1) + (d[2:] - d[:2]).prod() - inter
        iou = np.where(used, -1.0, inter / np.maximum(union, 1e-9))
        j = int(iou.argmax())
        if iou[j] >= iou_threshold:
            used[j] = matched[i] = True
    return matched


def load_yolo_labels(path: str | Path, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Read a YOLO label file (``cls cx cy w h`` per line, normalised) as pixel boxes.

    Args:
        path: the .txt file; an empty file means no object.
        image_size: (width, height) of the image the labels belong to (OpenCV order).

    Returns:
        (boxes float64 Nx4 x1, y1, x2, y2 in pixels, classes int64 N).

    Raises:
        DatasetError: the file is missing or a line is malformed (message names file and line).
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive (width, height), got {image_size}")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise DatasetError(f"cannot read label file {path}: {err}") from err
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        problem = None
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values, problem = [], "non-numeric field"
        if problem is None and len(values) != 5:
            problem = f"{len(values)} fields, expected 5 (cls cx cy w h)"
        elif problem is None and not all(math.isfinite(v) for v in values):
            problem = "non-finite value"
        elif problem is None and (values[0] < 0 or values[0] != int(values[0])):
            problem = f"class {fields[0]!r} is not a non-negative integer"
        elif problem is None and (values[3] < 0 or values[4] < 0):
            problem = "negative box size"
        if problem is not None:
            raise DatasetError(f"{path}:{lineno}: {problem}: {line.strip()!r}")
        rows.append(values)
    if not rows:
        return np.zeros((0, 4), np.float64), np.zeros(0, np.int64)
    arr = np.asarray(rows, dtype=np.float64)
    cx, cy = arr[:, 1] * width, arr[:, 2] * height
    half_w, half_h = arr[:, 3] * width / 2.0, arr[:, 4] * height / 2.0
    boxes = np.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), axis=1)
    return boxes, arr[:, 0].astype(np.int64)
