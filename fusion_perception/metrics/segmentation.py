"""Segmentation quality: per-class IoU and mIoU from an accumulated confusion matrix (NumPy only).

IoU is computed once over the whole set (confusion summed over images, as MFNet/MSRS papers do), not
averaged per image. Pixels whose ground truth is ``ignore_index`` count nowhere. A class absent from
both ground truth and prediction has no IoU (NaN) and is left out of the mean; a class predicted but
absent from the ground truth scores 0 (its pixels are all false positives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ImageShapeError

__all__ = ["SegmentationEvaluator", "iou_from_confusion"]


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN) from a KxK matrix (rows ground truth, columns prediction).

    >>> iou_from_confusion(np.array([[2, 1], [0, 1]])).tolist()
    [0.6666666666666666, 0.5]
    """
    conf = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    return np.divide(tp, union, out=np.full_like(tp, math.nan), where=union > 0)


class SegmentationEvaluator:
    """Accumulates a confusion matrix over label maps and reports IoU per class and mIoU.

    Args:
        num_classes: K; labels are 0..K-1.
        ignore_index: ground-truth value to skip (e.g. 255), or None. It may lie inside 0..K-1
            (e.g. 0 = unlabelled), in which case that class is excluded from the scores.
        class_names: K names for the report; defaults to "0".."K-1".
    """

    def __init__(
        self, num_classes: int, ignore_index: int | None = None, class_names: Sequence[str] | None = None
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        names = [str(i) for i in range(num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        self.class_names = names
        self._confusion = np.zeros((num_classes, num_classes), np.int64)

    @property
    def confusion(self) -> np.ndarray:
        """KxK pixel counts so far: rows ground truth, columns prediction (a copy)."""
        return self._confusion.copy()

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one HxW prediction and its HxW ground truth (integer class ids).

        Raises:
            ImageShapeError: the maps differ in shape or are not integer arrays.
            ValueError: a class id outside 0..K-1 (other than ``ignore_index`` in the ground truth).
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ImageShapeError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        for arr, what in ((pred, "prediction"), (gt, "ground truth")):
            if not np.issubdtype(arr.dtype, np.integer):
                raise ImageShapeError(f"{what} must hold integer class ids, got dtype {arr.dtype}")
        gt = gt.ravel().astype(np.int64)
        pred = pred.ravel().astype(np.int64)
        if self.ignore_index is not None:
            keep = gt != self.ignore_index
            gt, pred = gt[keep], pred[keep]
        k = self.num_classes
        for arr, what in ((gt, "ground truth"), (pred, "prediction")):
            if arr.size and (arr.min() < 0 or arr.max() >= k):
                bad = arr[(arr < 0) | (arr >= k)][0]
                raise ValueError(f"{what} holds class id {bad}; valid ids are 0..{k - 1}")
        self._confusion += np.bincount(gt * k + pred, minlength=k * k).reshape(k, k)

    def summarize(self) -> dict:
        """Return ``{"mIoU", "per_class": {name: IoU or NaN}, "pixel_accuracy"}`` over all pixels added.

        When ``ignore_index`` is a class id, that class is reported as NaN and left out of the mean.
        """
        iou = iou_from_confusion(self._confusion)
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            iou[self.ignore_index] = math.nan
        valid = ~np.isnan(iou)
        total = int(self._confusion.sum())
        return {
            "mIoU": float(iou[valid].mean()) if valid.any() else math.nan,
            "per_class": {name: float(iou[c]) for c, name in enumerate(self.class_names)},
            "pixel_accuracy": float(np.trace(self._confusion)) / total if total else math.nan,
        }
