"""NanoDet-g decoding on hand-made outputs: letterbox geometry, +0.5 cell centres, distance bins,
class maps and per-class NMS (torch-free, no model run)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_perception.errors import ModelFormatError
from fusion_perception.teacher.nanodet import (
    CLASS_MAPS,
    COCO_CLASSES,
    NUM_ANCHORS,
    Letterbox,
    box_distances,
    decode,
    letterbox,
)

IDENTITY = Letterbox(1.0, 0.0, 0.0, (416, 416))
BUS, TRUCK, MOTORCYCLE = (COCO_CLASSES.index(n) for n in ("bus", "truck", "motorcycle"))
Cells = dict[int, tuple[dict[int, float], tuple[int, int, int, int]]]


def anchor(stride: int, row: int, col: int) -> int:
    """Index of a cell in the concatenated stride-8, 16, 32 layout (row-major per stride)."""
    offset = {8: 0, 16: 52 * 52, 32: 52 * 52 + 26 * 26}[stride]
    return offset + row * (416 // stride) + col


def outputs(cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    """Scores and bin logits where ``cells[a] = ({coco class: score}, (l, t, r, b) bins)``."""
    scores = np.zeros((NUM_ANCHORS, 80), np.float32)
    logits = np.zeros((NUM_ANCHORS, 44), np.float32)
    for a, (cls_scores, bins) in cells.items():
        for c, s in cls_scores.items():
            scores[a, c] = s
        for side, b in enumerate(bins):
            logits[a, side * 11 + b] = 50.0  # one-hot after softmax
    return scores, logits


def test_letterbox_geometry_and_inverse() -> None:
    image = np.full((480, 640, 3), 200, np.uint8)
    tensor, box = letterbox(image)
    assert tensor.shape == (1, 3, 416, 416) and tensor.dtype == np.float32
    assert box.scale == pytest.approx(0.65) and (box.pad_x, box.pad_y) == (0.0, 52.0)
    assert tensor[0, :, 51, 200].tolist() == [0, 0, 0] and tensor[0, :, 52, 200].tolist() == [200, 200, 200]
    assert tensor[0, :, 364, 0].tolist() == [0, 0, 0] and tensor[0, :, 363, 0].tolist() == [200, 200, 200]
    np.testing.assert_allclose(box.to_source(np.array([[0, 52, 416, 364]])), [[0, 0, 640, 480]], atol=1e-4)
    grey, _ = letterbox(np.full((100, 50), 7, np.uint8))
    assert grey[0, :, 208, 208].tolist() == [7, 7, 7]


def test_box_geometry_uses_the_half_cell_centre() -> None:
    # stride 8, row 10, col 20: centre (164, 84); bins 2, 1, 3, 4 -> 16, 8, 24, 32 px
    # stride 32, row 0, col 12: centre (400, 16); bins 0, 0, 10, 10 -> right/bottom 320 px
    scores, logits = outputs({
        anchor(8, 10, 20): ({2: 0.9}, (2, 1, 3, 4)),
        anchor(32, 0, 12): ({0: 0.8}, (0, 0, 10, 10)),
    })  # fmt: skip
    dets = decode(scores, logits, IDENTITY, class_map="strict")
    assert dets.class_ids.tolist() == [2, 0]
    np.testing.assert_allclose(dets.scores, [0.9, 0.8])
    np.testing.assert_allclose(dets.boxes[0], [164 - 16, 84 - 8, 164 + 24, 84 + 32], atol=1e-3)
    np.testing.assert_allclose(dets.boxes[1], [400, 16, 416, 336], atol=1e-3)  # x2 clipped at 416


def test_boxes_map_back_through_the_letterbox() -> None:
    scores, logits = outputs({anchor(8, 10, 20): ({0: 0.9}, (2, 1, 3, 4))})
    box = Letterbox(0.65, 0.0, 52.0, (640, 480))
    dets = decode(scores, logits, box)
    np.testing.assert_allclose(dets.boxes[0], np.array([148, 76 - 52, 188, 116 - 52]) / 0.65, atol=1e-3)


def test_distance_expectation_of_uniform_bins_is_five_strides() -> None:
    dist = box_distances(np.zeros((NUM_ANCHORS, 44), np.float32))
    assert dist[0].tolist() == [40.0] * 4 and dist[-1].tolist() == [160.0] * 4


def test_class_maps_merge_vehicles_before_nms() -> None:
    a, b = anchor(16, 5, 5), anchor(16, 20, 20)
    scores, logits = outputs({
        a: ({2: 0.6, TRUCK: 0.8, BUS: 0.3}, (2, 2, 2, 2)),
        b: ({MOTORCYCLE: 0.7}, (1, 1, 1, 1)),
    })  # fmt: skip
    mapped = decode(scores, logits, IDENTITY, class_map="mapped")
    # one car box at the truck's score (not a car and a truck box), and the motorcycle as bicycle
    order = np.argsort(mapped.class_ids)
    assert mapped.class_ids[order].tolist() == [1, 2]
    np.testing.assert_allclose(mapped.scores[order], [0.7, 0.8])
    strict = decode(scores, logits, IDENTITY, class_map="strict")
    assert strict.class_ids.tolist() == [2] and strict.scores.tolist() == [pytest.approx(0.6)]
    assert CLASS_MAPS["mapped"] == ((0,), (1, 3), (2, 5, 7))


def test_per_class_nms_and_thresholds() -> None:
    a, b = anchor(8, 10, 20), anchor(8, 10, 21)  # neighbours, heavily overlapping boxes
    scores, logits = outputs({a: ({0: 0.9, 2: 0.5}, (4, 4, 4, 4)), b: ({0: 0.7}, (4, 4, 4, 4))})
    dets = decode(scores, logits, IDENTITY)
    assert sorted(dets.class_ids.tolist()) == [0, 2]  # the second person suppressed, the car kept
    assert len(decode(scores, logits, IDENTITY, score_min=0.95)) == 0
    assert len(decode(scores, logits, IDENTITY, max_detections=1)) == 1
    with pytest.raises(ModelFormatError, match="scores have shape"):
        decode(scores[:10], logits, IDENTITY)
