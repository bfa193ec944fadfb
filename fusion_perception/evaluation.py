"""Scoring what a :class:`~fusion_perception.runtime.pipeline.Pipeline` publishes (torch-free).

One definition of "quality of the node's outputs", shared by ``bag evaluate`` (recorded bags) and
``benchmarks/bench_precision.py`` (FP32 vs INT8 on a labelled folder):

* fusion metrics of the published fused image (uint8 BGR, reduced to Y by the metrics) against the
  two sources as the network saw them: IR after registration and gain control, 8-bit, in the
  visible grid, and the visible frame itself;
* detection mAP (COCO, pycocotools) of the published boxes, in source pixels, against YOLO labels.

``training/evaluate.py`` scores a torch checkpoint on network-size tensors instead (it also needs
IR-only and visible-only inputs through the task net alone), so it keeps its own loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .image_pairs import find_pairs, read_pair
from .metrics.detection import DetectionEvaluator, load_yolo_labels
from .metrics.fusion import FUSION_METRICS, fusion_metrics
from .preprocessing import PreprocessConfig, thermal_to_unit, to_gray, unit_to_uint8, warp_to_visible
from .runtime.pipeline import PerceptionResult, Pipeline

__all__ = ["DET_LABELS_DIR", "evaluate_pipeline", "ir_as_seen", "published_fusion_metrics"]

#: MSRS-layout folder of detection labels for the fused (visible-registered) frames.
DET_LABELS_DIR = "labels_det_fusion"


def ir_as_seen(ir: np.ndarray, visible_size: tuple[int, int], config: PreprocessConfig) -> np.ndarray:
    """IR as the network sees it: grey, 16-bit gain-controlled to 8 bits (on the frame as sent, as
    :func:`~fusion_perception.preprocessing.prepare_pair` does), then warped into the visible grid
    when a homography is set; uint8 HxW. ``visible_size`` is (width, height)."""
    grey = to_gray(ir)
    ir8 = grey if grey.dtype == np.uint8 else unit_to_uint8(thermal_to_unit(grey, config.gain))
    if config.homography is not None:
        ir8 = warp_to_visible(ir8, np.asarray(config.homography), visible_size)
    return ir8


def published_fusion_metrics(
    ir: np.ndarray, visible: np.ndarray, fused_bgr: np.ndarray, config: PreprocessConfig
) -> dict[str, float]:
    """The nine fusion metrics of a published fused image against its sources (docs/METRICS.md)."""
    size = (visible.shape[1], visible.shape[0])
    return fusion_metrics(fused_bgr, ir_as_seen(ir, size, config), visible)


def evaluate_pipeline(
    pipeline: Pipeline,
    root: Path | str,
    names: Sequence[str] | None = None,
    *,
    labels_dir: str = DET_LABELS_DIR,
    on_result: Callable[[str, PerceptionResult], None] | None = None,
) -> dict[str, Any]:
    """Run ``pipeline`` on each pair of ``root`` (or ``names``) and score its published outputs.

    Args:
        pipeline: the pipeline to score (its score threshold decides which boxes reach mAP; COCO
            practice is a low one, e.g. 0.05).
        root: MSRS-layout folder: ir/, vi/ and ``labels_dir`` with one YOLO .txt per stem.
        names: stems to use, in order; None = every pair.
        labels_dir: detection label folder under ``root``.
        on_result: called with (stem, result) after each pair (e.g. to compare two models).

    Returns:
        ``{"num_pairs", "fusion": {metric: mean}, "detection": DetectionEvaluator.summarize(),
        "timings_ms": {stage: {"p50", "p95"}}, "seconds"}``.

    Raises:
        DatasetError: missing folders, pairs or label files.
        ValueError: the pipeline does not restore the fused image's colour (nothing to score).
    """
    if not pipeline.config.restore_colour:
        raise ValueError("scoring the fused image needs a pipeline with restore_colour on")
    root = Path(root)
    if not (root / labels_dir).is_dir():
        raise DatasetError(f"{root} has no {labels_dir}/ folder (MSRS layout: ir/, vi/, {labels_dir}/)")
    pairs = find_pairs(root, names)
    detections = DetectionEvaluator(pipeline.info.det_classes)
    fusion_rows: list[dict[str, float]] = []
    timings: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for stem, ir_path, vi_path in pairs:
        ir, visible = read_pair(ir_path, vi_path)
        result = pipeline(ir, visible)
        for stage, ms in result.timings_ms.items():
            timings.setdefault(stage, []).append(ms)
        config = pipeline.config.preprocess
        fusion_rows.append(published_fusion_metrics(ir, visible, result.fused_bgr, config))
        size = (visible.shape[1], visible.shape[0])
        gt_boxes, gt_classes = load_yolo_labels(root / labels_dir / f"{stem}.txt", size)
        dets = result.detections
        detections.add(stem, gt_boxes, gt_classes, dets.boxes, dets.scores, dets.class_ids)
        if on_result is not None:
            on_result(stem, result)
    return {
        "num_pairs": len(pairs),
        "fusion": {k: float(np.nanmean([row[k] for row in fusion_rows])) for k in FUSION_METRICS},
        "detection": detections.summarize(),
        "timings_ms": {
            stage: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
            for stage, v in timings.items()
        },
        "seconds": time.perf_counter() - t0,
    }
