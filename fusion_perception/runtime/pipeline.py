"""One IR + visible pair in; fused image, class map and detections out (torch-free).

The same object serves the node, bag evaluation, the demo and the benchmarks, so all of them
measure and publish exactly one code path: ``prepare_pair`` -> ``Backend.infer`` -> decoders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..preprocessing import NetworkInput, PreprocessConfig, fused_to_bgr, prepare_pair
from .backend import Backend
from .model_info import ModelInfo
from .postprocess import Detections, colorize, decode_detections, overlay, segmentation_labels

__all__ = ["PerceptionResult", "Pipeline", "PipelineConfig"]


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the pipeline around the network.

    Args:
        preprocess: preprocessing; ``network_size`` None means "the model's own size".
        score_threshold: minimum detection score in [0, 1].
        iou_threshold: NMS IoU threshold in [0, 1].
        max_detections: most boxes kept per image.
        overlay_alpha: opacity of the class colours in the segmentation overlay.
        restore_colour: build the fused BGR image (fused Y + the visible chroma at source size).
            A node publishing neither the fused image nor the overlay turns it off and saves the
            resize, the YCrCb copy and the colour conversion; ``fused_bgr`` is then None.
    """

    preprocess: PreprocessConfig = field(default_factory=lambda: PreprocessConfig(network_size=None))
    score_threshold: float = 0.45
    iou_threshold: float = 0.5
    max_detections: int = 100
    overlay_alpha: float = 0.5
    restore_colour: bool = True

    def __post_init__(self) -> None:
        for name in ("score_threshold", "iou_threshold", "overlay_alpha"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")


@dataclass
class PerceptionResult:
    """Outputs for one pair, in the visible frame's pixel grid.

    Attributes:
        fused_bgr: uint8 HxWx3 fused image (colour restored from the visible frame); None when
            the pipeline's ``restore_colour`` is off.
        labels: uint8 HxW segmentation class ids.
        detections: boxes in source pixels.
        timings_ms: ``preprocess``, ``inference``, ``postprocess`` and ``total`` milliseconds.
    """

    fused_bgr: np.ndarray | None
    labels: np.ndarray
    detections: Detections
    timings_ms: dict[str, float]


class Pipeline:
    """Preprocess, infer, decode. Not thread-safe: give each thread its own Pipeline or a lock."""

    def __init__(self, backend: Backend, config: PipelineConfig | None = None) -> None:
        self.backend = backend
        config = config or PipelineConfig()
        info = backend.info
        size = config.preprocess.network_size
        if size is None or not info.dynamic:
            if size is not None and size != info.input_size:
                raise ValueError(
                    f"network_size {size} differs from the model's fixed input {info.input_size}; "
                    "export a dynamic-shape model to change it"
                )
            config = replace(config, preprocess=replace(config.preprocess, network_size=info.input_size))
        self.config = config

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    def prepare(self, ir: np.ndarray, visible: np.ndarray) -> NetworkInput:
        """Preprocess only (exposed for benchmarks and training parity tests)."""
        return prepare_pair(ir, visible, self.config.preprocess)

    def __call__(self, ir: np.ndarray, visible: np.ndarray) -> PerceptionResult:
        """Run the whole pipeline on one pair (IR any accepted dtype, visible uint8 BGR or grey)."""
        t0 = time.perf_counter()
        prepared = self.prepare(ir, visible)
        t1 = time.perf_counter()
        outputs = self.backend.infer(prepared.ir, prepared.visible)
        t2 = time.perf_counter()
        info = self.info
        cfg = self.config
        net_size = prepared.mapping.network_size
        dets = decode_detections(
            outputs["detections"][0],
            input_size=net_size,
            strides=info.det_strides,
            score_threshold=cfg.score_threshold,
            iou_threshold=cfg.iou_threshold,
            max_detections=cfg.max_detections,
        )
        dets = Detections(prepared.mapping.boxes_to_source(dets.boxes), dets.scores, dets.class_ids)
        result = PerceptionResult(
            fused_bgr=fused_to_bgr(outputs["fused"][0, 0], prepared) if cfg.restore_colour else None,
            labels=segmentation_labels(outputs["segmentation"][0], prepared.mapping.source_size),
            detections=dets,
            timings_ms={},
        )
        t3 = time.perf_counter()
        result.timings_ms.update(
            preprocess=(t1 - t0) * 1e3,
            inference=(t2 - t1) * 1e3,
            postprocess=(t3 - t2) * 1e3,
            total=(t3 - t0) * 1e3,
        )
        return result

    def segmentation_overlay(self, result: PerceptionResult) -> np.ndarray:
        """BGR overlay of the class colours on the fused image.

        Raises:
            ValueError: the pipeline runs without ``restore_colour`` (there is no fused image).
        """
        if result.fused_bgr is None:
            raise ValueError("the segmentation overlay needs the fused image; enable restore_colour")
        colour = colorize(result.labels, self.info.seg_palette)
        return overlay(result.fused_bgr, colour, result.labels, self.config.overlay_alpha)
