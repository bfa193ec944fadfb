"""What a deployed model file promises: tensor names, input size, classes, strides, palette.

The facts travel with the weights (ONNX ``metadata_props`` under the key ``fusion_perception``, and a
JSON file beside a TensorRT engine), so callers never hard-code them.

Deployed graph contract (one graph, three outputs):

==============  ==============================  ==============================================
tensor          shape                           meaning
==============  ==============================  ==============================================
``ir``          float32 [N, 1, H, W]            IR in [0, 1]
``visible``     float32 [N, 3, H, W]            visible (Y, Cb, Cr) in [0, 1]
``fused``       float32 [N, 1, H, W]            fused Y in [0, 1]
``segmentation``float32 [N, C, H/s, W/s]        class logits at ``seg_stride`` s
``detections``  float32 [N, A, 4 + K]           per anchor point: l, t, r, b distances in
                                                network pixels, K IoU-aware class logits
                                                (sigmoid = score); points ordered by
                                                ``det_strides``, row-major
==============  ==============================  ==============================================
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError

__all__ = [
    "INPUT_NAMES",
    "METADATA_KEY",
    "MSRS_SEG_CLASSES",
    "MSRS_SEG_PALETTE",
    "OUTPUT_NAMES",
    "ModelInfo",
]

METADATA_KEY = "fusion_perception"
INPUT_NAMES = ("ir", "visible")
OUTPUT_NAMES = ("fused", "segmentation", "detections")
#: 2: IoU-aware class scores, detections [N, A, 4 + K] (1 had a centerness column: 5 + K).
FORMAT_VERSION = 2

#: MSRS / MFNet segmentation classes (class id = index).
MSRS_SEG_CLASSES = (
    "unlabelled",
    "car",
    "person",
    "bike",
    "curve",
    "car_stop",
    "guardrail",
    "color_cone",
    "bump",
)
#: MSRS palette, RGB per class id (datasets/README.md); unlabelled is black.
MSRS_SEG_PALETTE = (
    (0, 0, 0),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
    (0, 0, 192),
    (128, 128, 0),
    (64, 64, 128),
    (192, 128, 128),
    (192, 64, 0),
)


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one deployed model; serialised as JSON.

    Args:
        input_width, input_height: network input size the file was exported for (a dynamic-shape
            model records its default size and sets ``dynamic``).
        det_classes: detection class names, index = class id.
        seg_classes: segmentation class names, index = class id.
        seg_palette: RGB colour per segmentation class.
        det_strides: detection feature strides, in the order the anchor points are laid out.
        seg_stride: stride of the segmentation logits relative to the network input.
        dynamic: whether H and W may change at run time (multiples of ``max(det_strides)``).
        training: free-form provenance (scheme, data, steps), shown in logs and diagnostics.
    """

    input_width: int = 640
    input_height: int = 480
    det_classes: tuple[str, ...] = ("person", "bicycle", "car")
    seg_classes: tuple[str, ...] = MSRS_SEG_CLASSES
    seg_palette: tuple[tuple[int, int, int], ...] = MSRS_SEG_PALETTE
    det_strides: tuple[int, ...] = (16, 32)
    seg_stride: int = 8
    dynamic: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if len(self.seg_palette) != len(self.seg_classes):
            raise ModelFormatError(
                f"seg_palette has {len(self.seg_palette)} colours for {len(self.seg_classes)} classes"
            )

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the network input."""
        return self.input_width, self.input_height

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "metadata") -> ModelInfo:
        """Parse JSON written by :meth:`to_json`; errors name ``source``."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelFormatError(f"{source}: model metadata is not valid JSON: {err}") from err
        if raw.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(
                f"{source}: model metadata format {raw.get('format_version')!r}, expected {FORMAT_VERSION}; "
                "re-export the model with this version of fusion_perception"
            )
        try:
            return cls(
                input_width=int(raw["input_width"]),
                input_height=int(raw["input_height"]),
                det_classes=tuple(raw["det_classes"]),
                seg_classes=tuple(raw["seg_classes"]),
                seg_palette=tuple(tuple(int(c) for c in rgb) for rgb in raw["seg_palette"]),
                det_strides=tuple(int(s) for s in raw["det_strides"]),
                seg_stride=int(raw["seg_stride"]),
                dynamic=bool(raw.get("dynamic", False)),
                training=dict(raw.get("training", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFormatError(f"{source}: model metadata lacks or mistypes {err}") from err

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelInfo:
        path = Path(path)
        if not path.is_file():
            raise ModelFormatError(f"model metadata file {path} does not exist")
        return cls.from_json(path.read_text(), source=str(path))
