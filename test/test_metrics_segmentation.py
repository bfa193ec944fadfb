"""mIoU from a confusion matrix: a hand-made case, ignore index, absent classes, real MSRS-format maps."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_perception.errors import ImageShapeError
from fusion_perception.metrics.segmentation import SegmentationEvaluator, iou_from_confusion

MSRS_SEG_CLASSES = [
    "unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump",
]

# gt:   0 0 1 1 2        confusion (rows gt, cols pred):  [[1, 1, 0],
# pred: 0 1 1 1 0                                         [0, 2, 0],
#                                                         [1, 0, 0]]
GT = np.array([[0, 0, 1, 1, 2]], np.uint8)
PRED = np.array([[0, 1, 1, 1, 0]], np.uint8)
IOU = [1 / 3, 2 / 3, 0.0]  # TP / (TP + FP + FN) per class


def test_hand_made_confusion() -> None:
    ev = SegmentationEvaluator(3, class_names=["a", "b", "c"])
    ev.add(PRED, GT)
    assert ev.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    out = ev.summarize()
    assert out["per_class"] == pytest.approx(dict(zip("abc", IOU, strict=True)), abs=1e-12)
    assert out["mIoU"] == pytest.approx(1 / 3, abs=1e-12)
    assert out["pixel_accuracy"] == pytest.approx(3 / 5, abs=1e-12)


def test_class_absent_from_both_is_nan_and_left_out() -> None:
    ev = SegmentationEvaluator(4)
    ev.add(PRED, GT)
    out = ev.summarize()
    assert math.isnan(out["per_class"]["3"])
    assert out["mIoU"] == pytest.approx(np.mean(IOU), abs=1e-12)


def test_class_only_predicted_scores_zero() -> None:
    ev = SegmentationEvaluator(4)
    ev.add(np.array([[0, 3]]), np.array([[0, 0]]))
    out = ev.summarize()
    assert out["per_class"]["3"] == 0.0
    assert out["mIoU"] == pytest.approx((0.5 + 0.0) / 2)


def test_ignore_index_outside_classes_skips_pixels() -> None:
    ev = SegmentationEvaluator(3, ignore_index=255)
    gt = np.concatenate([GT, np.full((1, 3), 255, np.uint8)], axis=1)
    pred = np.concatenate([PRED, np.array([[2, 2, 1]], np.uint8)], axis=1)  # predictions there don't count
    ev.add(pred, gt)
    assert ev.summarize()["mIoU"] == pytest.approx(1 / 3, abs=1e-12)


def test_ignore_index_inside_classes_excludes_that_class() -> None:
    ev = SegmentationEvaluator(3, ignore_index=0)
    ev.add(PRED, GT)
    # gt==0 pixels vanish: class 1 has TP 2 + FP 0 + FN 0, class 2 has FN 1 (predicted 0).
    out = ev.summarize()
    assert math.isnan(out["per_class"]["0"])
    assert out["per_class"]["1"] == 1.0 and out["per_class"]["2"] == 0.0
    assert out["mIoU"] == pytest.approx(0.5)


def test_accumulation_equals_one_big_image() -> None:
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 5, (30, 40)) for _ in range(3)]
    preds = [np.where(rng.random(g.shape) < 0.7, g, rng.integers(0, 5, g.shape)) for g in gts]
    parts, whole = SegmentationEvaluator(5), SegmentationEvaluator(5)
    for p, g in zip(preds, gts, strict=True):
        parts.add(p, g)
    whole.add(np.concatenate(preds), np.concatenate(gts))
    assert parts.summarize() == whole.summarize()
    assert np.array_equal(parts.confusion.sum(axis=1), np.bincount(np.concatenate(gts).ravel(), minlength=5))


def test_nothing_added_gives_nan() -> None:
    out = SegmentationEvaluator(3).summarize()
    assert math.isnan(out["mIoU"]) and math.isnan(out["pixel_accuracy"])


def test_iou_from_confusion_matches_the_definition() -> None:
    assert iou_from_confusion(np.array([[2, 1], [0, 1]])).tolist() == pytest.approx([2 / 3, 1 / 2])


@pytest.mark.parametrize(
    ("pred", "gt", "error", "match"),
    [
        (np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8), ImageShapeError, "differ in shape"),
        (np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), ImageShapeError, "integer class ids"),
        (np.full((2, 2), 3, np.uint8), np.zeros((2, 2), np.uint8), ValueError, "prediction holds class id 3"),
        (np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8), ValueError, "truth holds class id 255"),
    ],
)
def test_bad_input_raises(pred: np.ndarray, gt: np.ndarray, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SegmentationEvaluator(3).add(pred, gt)


def test_class_names_must_match_count() -> None:
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        SegmentationEvaluator(3, class_names=["a", "b"])


def test_real_msrs_format_maps(msrs_root: Path) -> None:
    """BDLFusion's 9-class MSRS-format maps (seed predictions, not ground truth) against themselves
    and against a copy shifted by 8 pixels: per-class IoU 1 vs. strictly between 0 and 1."""
    files = sorted((msrs_root / "seg_bdlfusion_pred").glob("*.png"))[:5]
    assert files, "no MSRS-format segmentation maps found"
    same = SegmentationEvaluator(9, class_names=MSRS_SEG_CLASSES)
    shifted = SegmentationEvaluator(9, class_names=MSRS_SEG_CLASSES)
    for f in files:
        labels = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        assert labels.ndim == 2 and labels.max() < 9
        same.add(labels, labels)
        shifted.add(np.roll(labels, 8, axis=1), labels)
    exact, moved = same.summarize(), shifted.summarize()
    present = [n for n, v in exact["per_class"].items() if not math.isnan(v)]
    assert {"unlabelled", "car"} <= set(present)
    assert exact["mIoU"] == 1.0 and exact["pixel_accuracy"] == 1.0
    assert 0.0 < moved["mIoU"] < 1.0 and moved["pixel_accuracy"] > 0.8
