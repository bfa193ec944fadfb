"""Parameters of the fusion node: one table of names, defaults, ranges and descriptions.

The table is the single source of defaults (STYLE.md: "each setting has one source of defaults"):
the node declares from it, ``config/fusion_perception.yaml`` repeats it for robots, and the launch
file test checks the YAML against it. Validation beyond ranges (choices, homography length, gain
window) lives in :func:`settings_from_values` so a bad value fails with a sentence naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import FusionPerceptionError
from ..preprocessing import GainControl

__all__ = [
    "BACKEND_CHOICES",
    "PARAMS",
    "QOS_CHOICES",
    "NodeSettings",
    "ParamSpec",
    "ParameterValueError",
    "default_model_path",
    "settings_from_values",
]

QOS_CHOICES = ("sensor_data", "reliable")
PRECISIONS = ("fp16", "fp32", "int8")
BACKEND_CHOICES = ("onnxruntime", "tensorrt", "torch", "auto")
GAIN_CHOICES = ("percentile", "fixed")


class ParameterValueError(FusionPerceptionError, ValueError):
    """A node parameter has a value the node cannot run with; the message names it and why."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter.

    Args:
        name: parameter name.
        default: default value; its Python type fixes the ROS parameter type. ``()`` declares a
            double array without a value (ROS cannot infer a type from an empty list).
        description: shown by ``ros2 param describe``.
        read_only: True when a change needs a reconfigure (topics, QoS, model, threads).
        value_range: (from, to) for numbers, inclusive; None for no range.
        choices: allowed strings; empty for free text.
    """

    name: str
    default: Any
    description: str
    read_only: bool = True
    value_range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("ir_topic", "ir/image", "IR (thermal) sensor_msgs/Image input topic (relative)"),
    ParamSpec("visible_topic", "visible/image", "visible sensor_msgs/Image input topic (relative)"),
    ParamSpec("fused_topic", "fused/image", "fused bgr8 image output topic"),
    ParamSpec("labels_topic", "segmentation/labels", "mono8 segmentation class-id image output topic"),
    ParamSpec("overlay_topic", "segmentation/overlay", "bgr8 colour segmentation overlay output topic"),
    ParamSpec("detections_topic", "detections", "vision_msgs/Detection2DArray output topic"),
    ParamSpec("detection_labels_topic", "detections/label_info",
              "latched vision_msgs/LabelInfo: detection class id -> name"),
    ParamSpec("segmentation_labels_topic", "segmentation/label_info",
              "latched vision_msgs/LabelInfo: segmentation class id -> name"),
    ParamSpec("input_qos", "sensor_data", "input QoS: sensor_data (best effort) or reliable",
              choices=QOS_CHOICES),
    ParamSpec("queue_size", 5, "input QoS depth and frames held per stream while waiting for a partner",
              value_range=(1, 100)),
    ParamSpec("sync_slop_s", 0.015, "largest |visible - IR| stamp difference paired, seconds "
              "(keep below half a frame period)", value_range=(0.0, 1.0)),
    ParamSpec("stale_input_s", 1.0, "a camera silent this long while the other streams is reported (WARN)",
              value_range=(0.05, 60.0)),
    ParamSpec("model_file_path", "", "ONNX model; empty = bundled fusion_perception/assets/default.onnx"),
    ParamSpec("backend", "onnxruntime", "inference backend: onnxruntime, tensorrt, torch or auto",
              choices=BACKEND_CHOICES),
    ParamSpec("engine_file_path", "", "TensorRT engine file; empty = built and cached under ~/.cache"),
    ParamSpec("precision", "fp16", "TensorRT / torch precision: fp16, fp32 or int8", choices=PRECISIONS),
    ParamSpec("threads", 0, "backend intra-op CPU threads; 0 = every core", value_range=(0, 256)),
    ParamSpec("gain_mode", "percentile", "16-bit thermal gain: percentile (per frame) or fixed (raw counts)",
              read_only=False, choices=GAIN_CHOICES),
    ParamSpec("gain_low", 1.0, "lower percentile (0-100) or raw count of the thermal window",
              read_only=False, value_range=(0.0, 65535.0)),
    ParamSpec("gain_high", 99.0, "upper percentile (0-100) or raw count of the thermal window",
              read_only=False, value_range=(0.0, 65535.0)),
    ParamSpec("homography", (), "row-major 3x3 IR->visible pixel homography (9 doubles); "
              "unset or empty = cameras co-aligned", read_only=False),
    ParamSpec("score_threshold", 0.3, "minimum detection score", read_only=False, value_range=(0.0, 1.0)),
    ParamSpec("iou_threshold", 0.5, "NMS IoU threshold", read_only=False, value_range=(0.0, 1.0)),
    ParamSpec("max_detections", 100, "most detections per frame", read_only=False, value_range=(1, 10000)),
    ParamSpec("publish_overlay", True, "publish the colour segmentation overlay", read_only=False),
    ParamSpec("publish_timing", False, "publish per-frame pipeline milliseconds on ~/timing "
              "(diagnostic_msgs/DiagnosticArray carrying the visible header)", read_only=False),
    ParamSpec("diagnostics_period_s", 1.0, "period of the /diagnostics status, seconds",
              value_range=(0.1, 60.0)),
    ParamSpec("autostart", True, "configure and activate on start (a plain start just works)"),
)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


def default_model_path() -> Path:
    """The bundled model, found through the installed package (never relative to the cwd)."""
    return Path(str(files("fusion_perception") / "assets" / "default.onnx"))


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values, in the units the node uses."""

    ir_topic: str
    visible_topic: str
    fused_topic: str
    labels_topic: str
    overlay_topic: str
    detections_topic: str
    detection_labels_topic: str
    segmentation_labels_topic: str
    input_qos: str
    queue_size: int
    slop_ns: int
    stale_input_s: float
    model_path: Path
    backend: str
    engine_path: Path | None
    precision: str
    threads: int
    gain: GainControl
    homography: tuple[tuple[float, ...], ...] | None
    score_threshold: float
    iou_threshold: float
    max_detections: int
    publish_overlay: bool
    publish_timing: bool
    diagnostics_period_s: float
    autostart: bool


def _check(spec: ParamSpec, value: Any) -> None:
    if spec.choices and value not in spec.choices:
        raise ParameterValueError(f"parameter {spec.name}={value!r} is not one of {', '.join(spec.choices)}")
    if spec.value_range is not None:
        lo, hi = spec.value_range
        if not lo <= value <= hi:
            raise ParameterValueError(f"parameter {spec.name}={value!r} is outside [{lo}, {hi}]")
    if isinstance(spec.default, str) and spec.name.endswith("_topic") and not value:
        raise ParameterValueError(f"parameter {spec.name} must name a topic, got an empty string")


def _homography(values: list[float] | tuple[float, ...] | None) -> tuple[tuple[float, ...], ...] | None:
    """9 doubles -> 3x3 rows; unset (None) or empty -> None (co-aligned cameras)."""
    values = [float(v) for v in values or ()]
    if not values:
        return None
    if len(values) != 9:
        raise ParameterValueError(f"parameter homography needs 9 values (row-major 3x3), got {len(values)}")
    if values[8] == 0.0:
        raise ParameterValueError("parameter homography has h33 = 0; a homography is normalised so h33 = 1")
    return tuple(tuple(values[r * 3: r * 3 + 3]) for r in range(3))


def settings_from_values(values: dict[str, Any]) -> NodeSettings:
    """Validate every parameter value and return them as :class:`NodeSettings`.

    Raises:
        ParameterValueError: a value is outside its range or choices, the gain window is empty, the
            homography is not 9 numbers, or a topic name is empty; the message names the parameter.
    """
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ParameterValueError(f"unknown parameters {unknown}")
    merged = {p.name: values.get(p.name, p.default) for p in PARAMS}
    for name in ("gain_low", "gain_high", "sync_slop_s", "stale_input_s", "diagnostics_period_s"):
        if isinstance(merged[name], int) and not isinstance(merged[name], bool):
            merged[name] = float(merged[name])
    for spec in PARAMS:
        _check(spec, merged[spec.name])
    try:
        gain = GainControl(mode=merged["gain_mode"], low=merged["gain_low"], high=merged["gain_high"])
    except ValueError as err:
        raise ParameterValueError(f"parameters gain_mode/gain_low/gain_high: {err}") from err
    model = merged["model_file_path"]
    return NodeSettings(
        ir_topic=merged["ir_topic"],
        visible_topic=merged["visible_topic"],
        fused_topic=merged["fused_topic"],
        labels_topic=merged["labels_topic"],
        overlay_topic=merged["overlay_topic"],
        detections_topic=merged["detections_topic"],
        detection_labels_topic=merged["detection_labels_topic"],
        segmentation_labels_topic=merged["segmentation_labels_topic"],
        input_qos=merged["input_qos"],
        queue_size=int(merged["queue_size"]),
        slop_ns=round(float(merged["sync_slop_s"]) * 1e9),
        stale_input_s=float(merged["stale_input_s"]),
        model_path=Path(model).expanduser() if model else default_model_path(),
        backend=merged["backend"],
        engine_path=Path(merged["engine_file_path"]).expanduser() if merged["engine_file_path"] else None,
        precision=merged["precision"],
        threads=int(merged["threads"]),
        gain=gain,
        homography=_homography(merged["homography"]),
        score_threshold=float(merged["score_threshold"]),
        iou_threshold=float(merged["iou_threshold"]),
        max_detections=int(merged["max_detections"]),
        publish_overlay=bool(merged["publish_overlay"]),
        publish_timing=bool(merged["publish_timing"]),
        diagnostics_period_s=float(merged["diagnostics_period_s"]),
        autostart=bool(merged["autostart"]),
    )
