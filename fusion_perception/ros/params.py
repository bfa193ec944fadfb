"""Parameters of the fusion node: one table of names, defaults, ranges and descriptions.

The table is the single source of defaults (docs/DESIGN.md "Conventions": one default per setting):
the node declares from it, ``config/fusion_perception.yaml`` repeats it for robots, and the launch
file test checks the YAML against it. Validation beyond ranges (choices, homography length, gain
window) lives in :func:`settings_from_values` so a bad value fails with a sentence naming it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..backend_factory import BACKEND_KINDS
from ..errors import FusionPerceptionError
from ..preprocessing import GAIN_MODES, GainControl
from ..runtime.backends import sized_model_path
from ..runtime.engine_cache import PRECISIONS, parse_size
from ..runtime.pipeline import PipelineConfig
from .liveness import POLICIES

__all__ = [
    "PARAMS",
    "QOS_CHOICES",
    "NodeSettings",
    "ParamSpec",
    "ParameterValueError",
    "default_model_path",
    "settings_from_values",
    "unknown_parameters",
]

QOS_CHOICES = ("sensor_data", "reliable")
# Declared by rclpy itself for every node; valid in a params file although not in PARAMS.
ROS_BUILTIN_PARAMS = ("use_sim_time", "start_type_description_service")


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
    ParamSpec("stale_input_s", 1.0, "a camera silent this long is stale: WARN, and camera_loss_policy "
              "applies", value_range=(0.05, 60.0)),
    ParamSpec("stale_error_s", 5.0, "a camera silent this long is an ERROR (>= stale_input_s)",
              value_range=(0.05, 3600.0)),
    ParamSpec("camera_loss_policy", "degrade", "one camera stale: degrade (outputs from the live camera "
              "alone, marked degraded) or drop (publish nothing)", read_only=False, choices=POLICIES),
    ParamSpec("time_jump_reset_s", 1.0, "a stamp this much older than its stream's newest restarts pairing "
              "(bag loop, simulation reset), seconds; 0 = never (such frames are dropped as out of order)",
              value_range=(0.0, 86400.0)),
    ParamSpec("max_input_pixels", 4_194_304, "largest accepted frame, width x height pixels "
              "(4 MP = 2048x2048); larger frames are dropped as too_large", value_range=(1, 268_435_456)),
    ParamSpec("model_file_path", "", "ONNX model; empty = bundled fusion_perception/assets/default.onnx"),
    ParamSpec("network_size", "", "network input WxH (multiples of 32), e.g. 384x288 to trade accuracy for "
              "rate on a CPU; loads the model's <stem>_WxH.onnx sibling (fusion-perception export --size); "
              "empty = the model's own size"),
    ParamSpec("backend", "onnxruntime", "inference backend: onnxruntime, tensorrt, torch or auto",
              choices=BACKEND_KINDS),
    ParamSpec("engine_file_path", "", "TensorRT engine file; empty = built and cached under ~/.cache"),
    ParamSpec("precision", "fp16", "fp16, fp32 or int8: TensorRT / torch precision; onnxruntime runs the "
              "FP32 file, or for int8 its <stem>_int8.onnx sibling (fusion-perception quantize)",
              choices=PRECISIONS),
    ParamSpec("threads", 0, "backend intra-op CPU threads; 0 = every core", value_range=(0, 256)),
    ParamSpec("gain_mode", "percentile", "16-bit thermal gain: percentile (per frame) or fixed (raw counts)",
              read_only=False, choices=GAIN_MODES),
    ParamSpec("gain_low", 1.0, "lower percentile (0-100) or raw count of the thermal window",
              read_only=False, value_range=(0.0, 65535.0)),
    ParamSpec("gain_high", 99.0, "upper percentile (0-100) or raw count of the thermal window",
              read_only=False, value_range=(0.0, 65535.0)),
    ParamSpec("homography", (), "row-major 3x3 IR->visible pixel homography (9 doubles); "
              "unset or empty = cameras co-aligned", read_only=False),
    ParamSpec("alignment_check_period_s", 5.0, "with a homography: seconds between online checks that the "
              "cameras are still registered (WARN when a camera moved on its mount); 0 = never",
              read_only=False, value_range=(0.0, 3600.0)),
    ParamSpec("alignment_warn_px", 8.0, "WARN when the IR content lies this many visible pixels or more "
              "from the visible content (mean over the last 5 checks)", read_only=False,
              value_range=(1.0, 1000.0)),
    ParamSpec("score_threshold", PipelineConfig.score_threshold,
              "minimum detection score (best F1 on MSRS val)",
              read_only=False, value_range=(0.0, 1.0)),
    ParamSpec("iou_threshold", PipelineConfig.iou_threshold, "NMS IoU threshold", read_only=False,
              value_range=(0.0, 1.0)),
    ParamSpec("max_detections", PipelineConfig.max_detections, "most detections per frame", read_only=False,
              value_range=(1, 10000)),
    ParamSpec("publish_overlay", True, "publish the colour segmentation overlay", read_only=False),
    ParamSpec("publish_fused", True, "publish the fused image; with publish_overlay also false the "
              "colour restoration is skipped too", read_only=False),
    ParamSpec("publish_thread", False, "convert and publish outputs on their own thread, overlapping the "
              "next pair's inference (false: the inference worker publishes before its next pair)"),
    ParamSpec("publish_timing", False, "publish per-frame pipeline milliseconds on ~/timing "
              "(diagnostic_msgs/DiagnosticArray carrying the visible header)", read_only=False),
    ParamSpec("diagnostics_period_s", 1.0, "period of the /diagnostics status, seconds",
              value_range=(0.1, 60.0)),
    ParamSpec("autostart", True, "configure and activate on start (a plain start just works)"),
    ParamSpec("exit_on_configure_failure", False, "end the process with status 1 when configure fails "
              "(for supervisors: systemd, a launch respawn); false: stay up reporting the failure, for a "
              "lifecycle manager to fix parameters and configure again"),
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
    stale_error_s: float
    camera_loss_policy: str
    jump_reset_ns: int | None
    max_input_pixels: int
    model_path: Path
    network_size: tuple[int, int] | None
    backend: str
    engine_path: Path | None
    precision: str
    threads: int
    gain: GainControl
    homography: tuple[tuple[float, ...], ...] | None
    alignment_check_period_s: float
    alignment_warn_px: float
    score_threshold: float
    iou_threshold: float
    max_detections: int
    publish_overlay: bool
    publish_fused: bool
    publish_thread: bool
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


def _network_size(text: str) -> tuple[int, int] | None:
    """"WxH" -> (W, H), both positive multiples of 32; "" -> None (the model's own size)."""
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError as err:
        raise ParameterValueError(f"parameter network_size={text!r}: {err}") from err


def unknown_parameters(names: Iterable[str]) -> str:
    """An error sentence for the names that are not parameters of the node ("" when all are).

    Each unknown name comes with the closest declared one, so a typo in a params file reads
    ``unknown parameter 'sync_slop' (did you mean 'sync_slop_s'?)`` instead of being ignored.
    ``qos_overrides.*`` (rclpy's QoS override parameters) and rclpy's own parameters are valid.
    """
    unknown = sorted(n for n in set(names) - set(SPECS) - set(ROS_BUILTIN_PARAMS)
                     if not n.startswith("qos_overrides."))
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(SPECS), n=1, cutoff=0.6)
        parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    if not parts:
        return ""
    return f"unknown parameter{'s' if len(parts) > 1 else ''} {', '.join(parts)}"


def settings_from_values(values: dict[str, Any]) -> NodeSettings:
    """Validate every parameter value and return them as :class:`NodeSettings`.

    Raises:
        ParameterValueError: a value is outside its range or choices, the gain window is empty, the
            homography is not 9 numbers, or a topic name is empty; the message names the parameter.
    """
    unknown = unknown_parameters(values)
    if unknown:
        raise ParameterValueError(unknown)
    merged = {p.name: values.get(p.name, p.default) for p in PARAMS}
    for name in ("gain_low", "gain_high", "sync_slop_s", "stale_input_s", "stale_error_s",
                 "time_jump_reset_s", "diagnostics_period_s", "alignment_check_period_s",
                 "alignment_warn_px"):
        if isinstance(merged[name], int) and not isinstance(merged[name], bool):
            merged[name] = float(merged[name])
    for spec in PARAMS:
        _check(spec, merged[spec.name])
    try:
        gain = GainControl(mode=merged["gain_mode"], low=merged["gain_low"], high=merged["gain_high"])
    except ValueError as err:
        raise ParameterValueError(f"parameters gain_mode/gain_low/gain_high: {err}") from err
    if merged["stale_error_s"] < merged["stale_input_s"]:
        raise ParameterValueError(f"parameter stale_error_s={merged['stale_error_s']} must be >= "
                                  f"stale_input_s={merged['stale_input_s']} (WARN comes before ERROR)")
    model = merged["model_file_path"]
    base_model = Path(model).expanduser() if model else default_model_path()
    network_size = _network_size(merged["network_size"])
    jump_s = float(merged["time_jump_reset_s"])
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
        stale_error_s=float(merged["stale_error_s"]),
        camera_loss_policy=merged["camera_loss_policy"],
        jump_reset_ns=round(jump_s * 1e9) if jump_s > 0 else None,
        max_input_pixels=int(merged["max_input_pixels"]),
        model_path=sized_model_path(base_model, network_size) if network_size else base_model,
        network_size=network_size,
        backend=merged["backend"],
        engine_path=Path(merged["engine_file_path"]).expanduser() if merged["engine_file_path"] else None,
        precision=merged["precision"],
        threads=int(merged["threads"]),
        gain=gain,
        homography=_homography(merged["homography"]),
        alignment_check_period_s=float(merged["alignment_check_period_s"]),
        alignment_warn_px=float(merged["alignment_warn_px"]),
        score_threshold=float(merged["score_threshold"]),
        iou_threshold=float(merged["iou_threshold"]),
        max_detections=int(merged["max_detections"]),
        publish_overlay=bool(merged["publish_overlay"]),
        publish_fused=bool(merged["publish_fused"]),
        publish_thread=bool(merged["publish_thread"]),
        publish_timing=bool(merged["publish_timing"]),
        diagnostics_period_s=float(merged["diagnostics_period_s"]),
        autostart=bool(merged["autostart"]),
    )
