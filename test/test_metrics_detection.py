"""COCO mAP through pycocotools on hand-computable cases, the edge cases, and real MSRS labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fusion_perception.errors import DatasetError
from fusion_perception.metrics.detection import DetectionEvaluator, load_yolo_labels

CLASSES = ["person", "bicycle", "car"]
MSRS_SIZE = (640, 480)  # (width, height)


def boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def ids(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


NONE = np.zeros((0, 4))
NO_IDS = np.zeros(0, np.int64)
GT_A, GT_B = (10, 10, 110, 110), (200, 50, 300, 150)


def test_perfect_predictions_score_one() -> None:
    ev = DetectionEvaluator(CLASSES)
    ev.add("a", boxes(GT_A, GT_B), ids(0, 2), boxes(GT_B, GT_A), np.array([0.8, 0.9]), ids(2, 0))
    ev.add("b", boxes(GT_A), ids(2), boxes(GT_A), np.array([0.3]), ids(2))
    out = ev.summarize()
    # pycocotools' precision is tp / (tp + fp + eps): "1" is 1 - 2e-16.
    assert out["mAP50"] == pytest.approx(1.0, abs=1e-12) and out["mAP50_95"] == pytest.approx(1.0, abs=1e-12)
    assert out["num_images"] == 2
    assert out["per_class"]["person"] == pytest.approx({"AP50": 1.0, "AP50_95": 1.0, "num_gt": 1}, abs=1e-12)
    assert out["per_class"]["car"]["num_gt"] == 2
    bicycle = out["per_class"]["bicycle"]  # no ground truth: no AP, and left out of the mean
    assert math.isnan(bicycle["AP50"]) and math.isnan(bicycle["AP50_95"]) and bicycle["num_gt"] == 0


def test_one_of_two_found_with_a_false_positive_ranked_below() -> None:
    # TP (score 0.9) has IoU 0.72 with GT_A: it matches at IoU thresholds 0.50..0.70 (5 of 10).
    # Precision is 1 up to recall 0.5 and nothing reaches beyond: 51 of COCO's 101 recall points.
    ev = DetectionEvaluator(["person"])
    tp = (10, 10, 110, 82)
    fp = (400, 300, 450, 350)
    ev.add("a", boxes(GT_A, GT_B), ids(0, 0), boxes(fp, tp), np.array([0.5, 0.9]), ids(0, 0))
    out = ev.summarize()
    assert out["mAP50"] == pytest.approx(51 / 101, abs=1e-12)
    assert out["mAP50_95"] == pytest.approx(5 / 10 * 51 / 101, abs=1e-12)


def test_ap_by_object_size_separates_a_missed_small_person_from_a_found_large_one() -> None:
    """COCO's area ranges: a 20x30 person (600 px^2, small) missed, a 100x100 one (large) found, and a
    48x48 car (medium) found: the mean over all sizes (0.5 for persons) hides where the loss is."""
    small, car = (300, 200, 320, 230), (400, 300, 448, 348)
    ev = DetectionEvaluator(CLASSES)
    ev.add("a", boxes(small, GT_A, car), ids(0, 0, 2), boxes(GT_A, car), np.array([0.9, 0.8]), ids(0, 2))
    out = ev.summarize()
    assert out["per_class"]["person"]["AP50"] == pytest.approx(51 / 101, abs=1e-12)
    by = out["by_area"]
    assert by["small"]["per_class"]["person"] == {"AP50": 0.0, "num_gt": 1}
    assert by["large"]["per_class"]["person"] == pytest.approx({"AP50": 1.0, "num_gt": 1}, abs=1e-12)
    assert by["medium"]["per_class"]["car"] == pytest.approx({"AP50": 1.0, "num_gt": 1}, abs=1e-12)
    assert math.isnan(by["medium"]["per_class"]["person"]["AP50"])  # no medium person: no AP
    assert by["small"]["mAP50"] == 0.0 and by["medium"]["mAP50"] == pytest.approx(1.0, abs=1e-12)


def test_false_positive_ranked_above_halves_precision() -> None:
    ev = DetectionEvaluator(["person"])
    fp = (400, 300, 450, 350)
    ev.add("a", boxes(GT_A, GT_B), ids(0, 0), boxes(GT_A, fp), np.array([0.5, 0.9]), ids(0, 0))
    assert ev.summarize()["mAP50"] == pytest.approx(0.5 * 51 / 101, abs=1e-12)


def test_false_positives_on_images_without_ground_truth_count() -> None:
    ev = DetectionEvaluator(["person"])
    ev.add("a", boxes(GT_A), ids(0), boxes(GT_A), np.array([0.5]), ids(0))
    ev.add("empty", NONE, NO_IDS, boxes(GT_B), np.array([0.9]), ids(0))
    assert ev.summarize()["mAP50"] == pytest.approx(0.5, abs=1e-12)  # precision 1/2 at recall 1


def test_detection_cap_keeps_the_highest_scores() -> None:
    far = [(500 + i, 400, 510 + i, 410) for i in range(100)]
    preds = (boxes(*far, GT_A), np.r_[np.full(100, 0.9), 0.1], np.zeros(101, np.int64))
    ev = DetectionEvaluator(["person"])
    ev.add("a", boxes(GT_A), ids(0), *preds)
    assert ev.summarize()["mAP50"] == 0.0  # the only hit is the 101st detection: COCO drops it
    ev = DetectionEvaluator(["person"], max_detections=101)
    ev.add("a", boxes(GT_A), ids(0), *preds)
    assert 0.0 < ev.summarize()["mAP50"] < 0.02


def test_no_predictions_scores_zero_for_classes_with_ground_truth() -> None:
    ev = DetectionEvaluator(CLASSES)
    ev.add("a", boxes(GT_A), ids(1), NONE, np.zeros(0), NO_IDS)
    out = ev.summarize()
    assert out["mAP50"] == 0.0 and out["mAP50_95"] == 0.0
    assert out["per_class"]["bicycle"]["AP50"] == 0.0
    assert math.isnan(out["per_class"]["person"]["AP50"])
    assert out["by_area"]["large"]["per_class"]["bicycle"] == {"AP50": 0.0, "num_gt": 1}


def test_no_ground_truth_gives_nan() -> None:
    ev = DetectionEvaluator(CLASSES)
    ev.add("a", NONE, NO_IDS, boxes(GT_A), np.array([0.9]), ids(0))
    out = ev.summarize()
    assert math.isnan(out["mAP50"]) and math.isnan(out["mAP50_95"])
    assert out["num_images"] == 1
    assert math.isnan(DetectionEvaluator(CLASSES).summarize()["mAP50"])  # nothing added at all


def test_pycocotools_output_is_captured(capsys: pytest.CaptureFixture[str]) -> None:
    ev = DetectionEvaluator(["person"])
    ev.add("a", boxes(GT_A), ids(0), boxes(GT_A), np.array([0.9]), ids(0))
    ev.summarize()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((boxes(GT_A), ids(3), NONE, np.zeros(0), NO_IDS), "class id 3"),
        ((np.zeros((1, 5)), ids(0), NONE, np.zeros(0), NO_IDS), "Nx4"),
        ((boxes((50, 50, 10, 10)), ids(0), NONE, np.zeros(0), NO_IDS), "x2 >= x1"),
        ((NONE, NO_IDS, boxes(GT_A), np.array([0.5, 0.4]), ids(0)), "2 entries for 1 boxes"),
        ((NONE, NO_IDS, boxes(GT_A), np.array([np.nan]), ids(0)), "NaN"),
        ((boxes(GT_A), np.array([0.5]), NONE, np.zeros(0), NO_IDS), "integer class ids"),
    ],
)
def test_bad_input_raises(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DetectionEvaluator(CLASSES).add("a", *args)


def test_repeated_image_id_raises() -> None:
    ev = DetectionEvaluator(CLASSES)
    ev.add("a", NONE, NO_IDS, NONE, np.zeros(0), NO_IDS)
    with pytest.raises(ValueError, match="already added"):
        ev.add("a", NONE, NO_IDS, NONE, np.zeros(0), NO_IDS)


# ------------------------------------------------------------------ YOLO labels


def test_load_yolo_labels_converts_to_pixels(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("0  0.5 0.5 0.25 0.5  \n\n2 0.1 0.2 0.1 0.2")  # double spaces, blank line, no final EOL
    got, cls = load_yolo_labels(path, MSRS_SIZE)
    np.testing.assert_allclose(got, [[240, 120, 400, 360], [32, 48, 96, 144]])
    assert cls.tolist() == [0, 2] and cls.dtype == np.int64
    (tmp_path / "empty.txt").write_text("")
    empty, empty_cls = load_yolo_labels(tmp_path / "empty.txt", MSRS_SIZE)
    assert empty.shape == (0, 4) and empty_cls.shape == (0,)


@pytest.mark.parametrize(
    ("line", "match"),
    [("0 0.5 0.5 0.2", "4 fields"), ("car 0.5 0.5 0.2 0.2", "non-numeric"), ("1.5 0.5 0.5 0.2 0.2", "class"),
     ("0 0.5 0.5 -0.2 0.2", "negative"), ("0 nan 0.5 0.2 0.2", "non-finite")],
)
def test_malformed_label_line_names_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(DatasetError, match=match) as info:
        load_yolo_labels(path, MSRS_SIZE)
    assert f"{path}:2" in str(info.value)


def test_missing_label_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing\.txt"):
        load_yolo_labels(tmp_path / "missing.txt", MSRS_SIZE)


def test_real_msrs_labels_against_each_other(msrs_root: Path) -> None:
    """Fusion-annotated boxes scored against themselves (1.0) and IR-annotated boxes against them."""
    stems = (msrs_root / "splits" / "val.txt").read_text().split()
    assert len(stems) == 60
    self_ev, ir_ev = DetectionEvaluator(CLASSES), DetectionEvaluator(CLASSES)
    for stem in stems:
        gt, gt_cls = load_yolo_labels(msrs_root / "labels_det_fusion" / f"{stem}.txt", MSRS_SIZE)
        ir, ir_cls = load_yolo_labels(msrs_root / "labels_det_ir" / f"{stem}.txt", MSRS_SIZE)
        self_ev.add(stem, gt, gt_cls, gt, np.ones(len(gt)), gt_cls)
        ir_ev.add(stem, gt, gt_cls, ir, np.ones(len(ir)), ir_cls)
    perfect, partial = self_ev.summarize(), ir_ev.summarize()
    assert perfect["num_images"] == 60
    assert perfect["mAP50"] == pytest.approx(1.0) and perfect["mAP50_95"] == pytest.approx(1.0)
    assert sum(c["num_gt"] for c in perfect["per_class"].values()) > 100
    # Different annotators, different boxes: clearly related, clearly not identical.
    assert 0.2 < partial["mAP50_95"] < partial["mAP50"] < 1.0
