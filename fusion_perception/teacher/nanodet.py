"""NanoDet-g facts and its torch-free decoder: input encoding, output layout, boxes, class maps.

NanoDet-g (RangiLyu/nanodet, Apache-2.0) is a COCO detector with a GFL head. Facts (docs/DESIGN.md
"Pretrained assets", checked by the tests):

* input: 416x416, BGR, ``(x - MEAN_BGR) / STD_BGR`` on 0..255 values; NanoDet trains and validates
  with ``keep_ratio: True``, so images are letterboxed (scaled to fit, centred, black border);
* outputs per stride 8, 16, 32 (52x52, 26x26, 13x13 cells, row-major): 80 sigmoid class scores and
  4 x 11 distance-bin logits (left, top, right, bottom); a side's distance is the softmax expectation
  over bins 0..10 times the stride, measured from the cell centre ``((col + 0.5) * s, (row + 0.5) * s)``
  (without the +0.5 COCO mAP@0.5:0.95 on MSRS dropped from 0.216 to 0.098);
* boxes of one class are suppressed with IoU 0.6 (NanoDet's own setting).

The exported teacher (:mod:`.export`) folds the normalisation into the graph and concatenates the
three strides, so its ONNX input is BGR 0..255 and its outputs are ``scores`` [N, 3549, 80] and
``distance_logits`` [N, 3549, 44].

Class maps reduce COCO's 80 classes to the project's (person, bicycle, car): ``strict`` takes the
same-named classes only; ``mapped`` also counts motorcycle as bicycle and bus and truck as car (the
MSRS labels draw them so). A mapped class's score is the maximum over its COCO classes, taken
before NMS, so a vehicle scored as both car and truck yields one box, not two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from ..errors import ImageShapeError, ModelFormatError
from ..runtime.postprocess import Detections, anchor_points, nms

__all__ = [
    "CLASS_MAPS",
    "COCO_CLASSES",
    "INPUT_SIZE",
    "MEAN_BGR",
    "NUM_ANCHORS",
    "PROJECT_CLASSES",
    "REG_MAX",
    "STD_BGR",
    "STRIDES",
    "Letterbox",
    "box_distances",
    "decode",
    "letterbox",
]

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10  # bins 0..10 per side
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
NUM_ANCHORS = sum((INPUT_SIZE // s) ** 2 for s in STRIDES)  # 3549
IOU_THRESHOLD = 0.6
PROJECT_CLASSES = ("person", "bicycle", "car")
#: COCO class names, index = NanoDet class id.
COCO_CLASSES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
#: name -> for each project class (person, bicycle, car), the COCO class ids that count as it.
CLASS_MAPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "strict": ((0,), (1,), (2,)),
    "mapped": ((0,), (1, 3), (2, 5, 7)),
}
ClassMapName = Literal["strict", "mapped"]


@dataclass(frozen=True)
class Letterbox:
    """Source image -> network input: ``net = src * scale + (pad_x, pad_y)``.

    Args:
        scale: network pixels per source pixel (same on both axes).
        pad_x, pad_y: border left of / above the scaled image, network pixels.
        source_size: (width, height) of the source image.
    """

    scale: float
    pad_x: float
    pad_y: float
    source_size: tuple[int, int]

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Nx4 network-pixel boxes (x1, y1, x2, y2) -> source pixels, clipped to the image."""
        out = (
            np.asarray(boxes, np.float32) - np.array([self.pad_x, self.pad_y] * 2, np.float32)
        ) / self.scale
        w, h = self.source_size
        np.clip(out[:, 0::2], 0.0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, h, out=out[:, 1::2])
        return out


def letterbox(bgr: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """Fit a BGR (or grey) uint8 image into ``size`` x ``size``, centred on black, as NanoDet's
    ``keep_ratio`` does. Returns float32 [1, 3, size, size] BGR 0..255 and the mapping.

    >>> x, box = letterbox(np.zeros((480, 640, 3), np.uint8))
    >>> x.shape, box.scale, box.pad_y
    ((1, 3, 416, 416), 0.65, 52.0)
    """
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ImageShapeError(f"teacher input must be uint8 HxW or HxWx3 BGR, got {bgr.shape} {bgr.dtype}")
    h, w = bgr.shape[:2]
    scale = min(size / w, size / h)
    new_w, new_h = round(w * scale), round(h * scale)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(
        bgr, (new_w, new_h), interpolation=interp
    )
    tensor = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
    return tensor, Letterbox(new_w / w, float(pad_x), float(pad_y), (w, h))


def box_distances(distance_logits: np.ndarray) -> np.ndarray:
    """[A, 44] bin logits -> [A, 4] (left, top, right, bottom) distances in network pixels.

    Softmax over each side's 11 bins, expectation over bin index 0..10, times the anchor's stride.
    """
    expected = (NUM_ANCHORS, 4 * (REG_MAX + 1))
    if distance_logits.shape != expected:
        raise ModelFormatError(f"distance logits have shape {distance_logits.shape}, expected {expected}")
    bins = distance_logits.reshape(NUM_ANCHORS, 4, REG_MAX + 1).astype(np.float64)
    bins = np.exp(bins - bins.max(axis=2, keepdims=True))
    expectation = (bins * np.arange(REG_MAX + 1)).sum(axis=2) / bins.sum(axis=2)
    strides = np.concatenate([np.full((INPUT_SIZE // s) ** 2, s, np.float64) for s in STRIDES])
    return (expectation * strides[:, None]).astype(np.float32)


def decode(
    scores: np.ndarray,
    distance_logits: np.ndarray,
    box: Letterbox,
    *,
    class_map: ClassMapName = "mapped",
    score_min: float = 0.05,
    iou_threshold: float = IOU_THRESHOLD,
    max_detections: int = 100,
) -> Detections:
    """One image's teacher outputs -> project-class detections in source pixels.

    Args:
        scores: [A, 80] sigmoid COCO class scores (A = 3549, strides 8, 16, 32 row-major).
        distance_logits: [A, 44] bin logits.
        box: the letterbox that made the input.
        class_map: ``strict`` or ``mapped`` (see module docstring).
        score_min: keep (class, anchor) scores at or above this before NMS.
        iou_threshold: per-class NMS IoU.
        max_detections: keep the best this many after NMS.

    Returns:
        :class:`~fusion_perception.runtime.postprocess.Detections`, class ids 0..2 (person, bicycle, car).
    """
    if scores.shape != (NUM_ANCHORS, len(COCO_CLASSES)):
        raise ModelFormatError(
            f"scores have shape {scores.shape}, expected ({NUM_ANCHORS}, {len(COCO_CLASSES)})"
        )
    groups = CLASS_MAPS[class_map]
    ours = np.stack([scores[:, list(g)].max(axis=1) for g in groups], axis=1)  # A x 3
    anchor, cls = np.nonzero(ours >= score_min)
    if anchor.size == 0:
        return Detections.empty()
    centres = anchor_points(INPUT_SIZE, INPUT_SIZE, STRIDES)[anchor]
    dist = box_distances(distance_logits)[anchor]
    boxes = np.concatenate((centres - dist[:, :2], centres + dist[:, 2:]), axis=1)
    kept_scores = ours[anchor, cls].astype(np.float32)
    # Per-class NMS in one pass: each class is shifted to its own region of the plane.
    offset = cls[:, None].astype(np.float32) * (INPUT_SIZE * 4.0)
    keep = nms(boxes + offset, kept_scores, iou_threshold)[:max_detections]
    return Detections(box.to_source(boxes[keep]), kept_scores[keep], cls[keep].astype(np.int64))
