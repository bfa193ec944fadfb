"""Decoding the network's raw outputs: anchor-free boxes, NMS, class maps and colour overlays.

NumPy + OpenCV only. Shapes are read from the tensors and checked against the model's strides, so a
model exported at another size or with other strides fails loudly instead of drawing garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..errors import ModelFormatError

__all__ = [
    "Detections",
    "anchor_points",
    "colorize",
    "decode_detections",
    "draw_detections",
    "nms",
    "overlay",
    "segmentation_labels",
]


@dataclass(frozen=True)
class Detections:
    """N detections: ``boxes`` float32 Nx4 (x1, y1, x2, y2 pixels), ``scores`` N, ``class_ids`` N int."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


@lru_cache(maxsize=16)
def anchor_points(width: int, height: int, strides: tuple[int, ...]) -> np.ndarray:
    """Centres (x, y) of every detection cell, float32 Ax2, in the order the network lays them out.

    Feature maps come from stride-2 convolutions with padding, so a level of stride s has
    ceil(H/s) x ceil(W/s) cells.
    """
    points = []
    for s in strides:
        ys, xs = np.meshgrid(np.arange(-(-height // s)), np.arange(-(-width // s)), indexing="ij")
        points.append(np.stack(((xs.ravel() + 0.5) * s, (ys.ravel() + 0.5) * s), axis=1))
    out = np.concatenate(points).astype(np.float32)
    out.flags.writeable = False
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns indices kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_detections(
    raw: np.ndarray,
    *,
    input_size: tuple[int, int],
    strides: tuple[int, ...],
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> Detections:
    """Turn one image's raw detection map (A x (4 + K)) into boxes in network pixels.

    The thresholds have no defaults here: :class:`~fusion_perception.runtime.pipeline.PipelineConfig`
    holds them, so the node, bag evaluation and training evaluation cannot drift apart.

    Score = sigmoid(class logit): the head is trained towards the IoU of its box (quality focal
    loss), so the score already ranks localisation quality. NMS is per class.
    """
    points = anchor_points(input_size[0], input_size[1], tuple(strides))
    if raw.ndim != 2 or raw.shape[0] != points.shape[0] or raw.shape[1] < 5:
        raise ModelFormatError(
            f"detections tensor has shape {raw.shape}; expected ({points.shape[0]}, 4 + classes) "
            f"for input {input_size[0]}x{input_size[1]} and strides {strides}"
        )
    cls_logit = raw[:, 4:]
    best = cls_logit.argmax(axis=1)
    best_logit = cls_logit[np.arange(raw.shape[0]), best]
    # Threshold in logit space: no sigmoid over the thousands of background points.
    t = min(max(score_threshold, 1e-6), 1 - 1e-6)
    candidates = np.flatnonzero(best_logit >= np.log(t / (1 - t)))
    if candidates.size == 0:
        return Detections.empty()
    scores = _sigmoid(best_logit[candidates]).astype(np.float32)
    ltrb = raw[candidates, :4]
    pts = points[candidates]
    boxes = np.concatenate((pts - ltrb[:, :2], pts + ltrb[:, 2:4]), axis=1).astype(np.float32)
    classes = best[candidates]
    # Class-aware NMS in one pass: shift each class to its own region of the plane.
    offset = classes[:, None].astype(np.float32) * (max(input_size) + 1.0) * 2.0
    keep = nms(boxes + offset, scores, iou_threshold)[:max_detections]
    return Detections(boxes[keep], scores[keep], classes[keep].astype(np.int64))


def segmentation_labels(logits: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Class ids (uint8 HxW at ``output_size`` = width, height) of C x h x w logits.

    The logits are resized bilinearly (half-pixel centres, as ``F.interpolate(align_corners=False)``
    in the training loss) *before* the argmax, so class borders fall where the interpolated scores
    cross, between the coarse cells, instead of on the edges of s x s blocks as an argmax resized
    by nearest neighbour would draw them.
    """
    if logits.ndim != 3:
        raise ModelFormatError(f"segmentation logits must be C x h x w, got shape {logits.shape}")
    if (logits.shape[2], logits.shape[1]) == output_size:
        return logits.argmax(axis=0).astype(np.uint8)
    labels = np.zeros((output_size[1], output_size[0]), np.uint8)
    fill = np.empty_like(labels)
    best = _resize_linear(logits[0], output_size)
    for c in range(1, logits.shape[0]):  # a running argmax: no C x H x W array at full size
        score = _resize_linear(logits[c], output_size)
        better = cv2.compare(score, best, cv2.CMP_GT)
        fill.fill(c)
        cv2.copyTo(fill, better, labels)  # 2x faster than labels[better] = c (measured, 640x480)
        cv2.max(best, score, dst=best)
    return labels


def _resize_linear(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(channel, np.float32), size, interpolation=cv2.INTER_LINEAR)


@lru_cache(maxsize=8)
def _bgr_lut(palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[: len(palette), 0] = np.asarray(palette, np.uint8)[:, ::-1]
    return lut


def colorize(labels: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Class-id image (uint8 HxW) -> BGR colour image using an RGB ``palette``.

    cv2.LUT on a 3-channel view is ~6x faster than NumPy fancy indexing at 640x480.
    """
    return cv2.LUT(cv2.merge((labels, labels, labels)), _bgr_lut(tuple(palette)))


def overlay(
    image_bgr: np.ndarray, colour_bgr: np.ndarray, labels: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """Blend the colour map over the image where a class other than 0 (unlabelled) was predicted."""
    blended = cv2.addWeighted(image_bgr, 1.0 - alpha, colour_bgr, alpha, 0.0)
    out = image_bgr.copy()
    cv2.copyTo(blended, (labels > 0).view(np.uint8), out)
    return out


_BOX_COLOURS_BGR = ((0, 255, 255), (255, 128, 0), (0, 128, 255), (255, 0, 255))


def draw_detections(image_bgr: np.ndarray, detections: Detections, class_names: Sequence[str]) -> np.ndarray:
    """Copy of ``image_bgr`` with each box drawn and labelled "class score" (one colour per class)."""
    out = image_bgr.copy()
    for (x1, y1, x2, y2), score, cls in zip(
        np.rint(detections.boxes).astype(int), detections.scores, detections.class_ids, strict=True
    ):
        colour = _BOX_COLOURS_BGR[int(cls) % len(_BOX_COLOURS_BGR)]
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), colour, 2)
        name = class_names[int(cls)] if 0 <= int(cls) < len(class_names) else str(int(cls))
        label = f"{name} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(int(y1), th + 4)
        cv2.rectangle(out, (int(x1), ty - th - 4), (int(x1) + tw + 2, ty), colour, -1)
        cv2.putText(
            out, label, (int(x1) + 1, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    return out
