"""The fusion lifecycle node: ROS glue around :class:`~fusion_perception.runtime.pipeline.Pipeline`.

Lifecycle (STYLE.md, yolo_ros): ``__init__`` declares parameters and starts diagnostics;
``configure`` validates parameters and loads the model (a failure is a failed transition with the
reason logged and in /diagnostics, never a crash); ``activate`` subscribes and starts the inference
worker; ``deactivate`` / ``cleanup`` free them again. With ``autostart`` (default) the node
configures and activates itself, so a plain start just works.

Threads: subscription callbacks decode and pair on the executor thread; the newest pair goes to a
one-slot worker (see :mod:`.worker`) that runs the pipeline and publishes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from ..errors import EncodingError, ImageShapeError
from ..image_encoding import ACCEPTED_ENCODINGS
from ..pairing import Pair, StampPairer
from ..preprocessing import PreprocessConfig
from ..runtime.backend import Backend
from ..runtime.pipeline import Pipeline, PipelineConfig
from .backend_select import load_backend
from .diagnostics import ERROR, WARN, NodeStats
from .messages import (
    array_to_image,
    detections_to_msg,
    image_to_array,
    label_info,
    stamp_to_ns,
    status_to_msg,
    timing_to_msg,
)
from .params import PARAMS, SPECS, NodeSettings, ParameterValueError, ParamSpec, settings_from_values
from .worker import LatestWorker

__all__ = ["FusionPerceptionNode", "main"]

Frame = tuple[Header, Any, float]  # (header, decoded array, perf_counter() at receipt)
_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
          tuple: ParameterType.PARAMETER_DOUBLE_ARRAY}


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    text = spec.description + (f" ({'|'.join(spec.choices)})" if spec.choices else "")
    desc = ParameterDescriptor(name=spec.name, type=_TYPES[type(spec.default)], description=text,
                               read_only=spec.read_only)
    if spec.value_range is not None:
        lo, hi = spec.value_range
        if isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        else:
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return desc


def _input_qos(kind: str, depth: int) -> QoSProfile:
    if kind == "sensor_data":
        return QoSProfile(history=qos_profile_sensor_data.history, depth=depth,
                          reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


class FusionPerceptionNode(LifecycleNode):
    """IR + visible images in; fused image, segmentation, detections, labels and diagnostics out."""

    def __init__(self, node_name: str = "fusion_perception", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._param_errors = self._declare_parameters()
        self.stats = NodeStats()
        self._settings: NodeSettings | None = None
        self._backend: Backend | None = None
        self._pipeline: Pipeline | None = None
        self._pairer: StampPairer[Frame] | None = None
        self._pairer_seen: dict[tuple[str, str], int] = {}
        self._worker: LatestWorker[Pair[Frame]] | None = None
        self._subs: list[Any] = []
        self._pubs: dict[str, Any] = {}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        period = self.get_parameter("diagnostics_period_s").value
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(period, self._publish_diagnostics)

    # ----------------------------------------------------------------------------- parameters
    def _declare_parameters(self) -> list[str]:
        """Declare every parameter; a bad override is kept as an error for ``configure`` to report."""
        errors = []
        for spec in PARAMS:
            default = Parameter.Type.DOUBLE_ARRAY if spec.default == () else spec.default
            try:
                self.declare_parameter(spec.name, default, _descriptor(spec))
            except (InvalidParameterValueException, InvalidParameterTypeException) as err:
                errors.append(f"parameter {spec.name}: {err}")
                self.get_logger().error(f"{errors[-1]}; using the default until fixed")
                self.declare_parameter(spec.name, default, _descriptor(spec), ignore_override=True)
        return errors

    def _param_values(self, overrides: Sequence[Parameter] = ()) -> dict[str, Any]:
        """Current values (an unset homography reads as None), with ``overrides`` applied."""
        values = {name: self.get_parameter_or(name).value for name in SPECS}
        values.update({p.name: p.value for p in overrides})
        return values

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate a runtime change as a whole and apply the tunable ones to the pipeline."""
        try:
            settings = settings_from_values(self._param_values(params))
        except ParameterValueError as err:
            return SetParametersResult(successful=False, reason=str(err))
        if self._settings is not None:
            self._settings = settings
            if self._pipeline is not None:
                self._pipeline = Pipeline(self._pipeline.backend, self._pipeline_config(settings))
        return SetParametersResult(successful=True)

    @staticmethod
    def _pipeline_config(s: NodeSettings) -> PipelineConfig:
        return PipelineConfig(
            preprocess=PreprocessConfig(network_size=None, gain=s.gain, homography=s.homography),
            score_threshold=s.score_threshold, iou_threshold=s.iou_threshold, max_detections=s.max_detections,
        )

    @property
    def autostart(self) -> bool:
        return bool(self.get_parameter("autostart").value)

    def start(self) -> bool:
        """Configure and activate (what ``autostart`` does); returns True when the node is active."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        kind = str(self.get_parameter("backend").value)
        try:
            if self._param_errors:
                raise ParameterValueError("; ".join(self._param_errors))
            settings = settings_from_values(self._param_values())
            backend = load_backend(settings, self.get_logger())
            pipeline = Pipeline(backend, self._pipeline_config(settings))
        except Exception as err:  # boundary: any load failure is a failed transition, never a crash
            reason = f"configure failed: {type(err).__name__}: {err}"
            self.get_logger().error(reason)
            self.stats.error(reason)
            self.stats.backend(kind, "configure failed")
            return TransitionCallbackReturn.FAILURE
        self._settings, self._backend, self._pipeline = settings, backend, pipeline
        self._pairer = StampPairer(settings.slop_ns, settings.queue_size)
        self._pairer_seen = {}
        out = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pubs = {
            "fused": self.create_publisher(Image, settings.fused_topic, out),
            "labels": self.create_publisher(Image, settings.labels_topic, out),
            "overlay": self.create_publisher(Image, settings.overlay_topic, out),
            "detections": self.create_publisher(Detection2DArray, settings.detections_topic, out),
            "det_labels": self.create_publisher(LabelInfo, settings.detection_labels_topic, latched),
            "seg_labels": self.create_publisher(LabelInfo, settings.segmentation_labels_topic, latched),
            "timing": self.create_publisher(DiagnosticArray, "~/timing", out),
        }
        header = Header(stamp=self.get_clock().now().to_msg())
        info = backend.info
        self._pubs["det_labels"].publish(label_info(info.det_classes, header, settings.score_threshold))
        self._pubs["seg_labels"].publish(label_info(info.seg_classes, header))
        self.stats.backend(backend.name, "inactive", str(settings.model_path))
        for reason in getattr(backend, "fallback_reasons", ()):
            self.stats.note(f"backend fallback: {reason}")
        self.get_logger().info(
            f"loaded {settings.model_path} with {backend.name}: input {backend.info.input_size}, "
            f"det classes {list(backend.info.det_classes)}, training {backend.info.training}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self._settings
        self._pairer.reset()
        self._worker = LatestWorker(self._process_pair, self._on_worker_error)
        qos = _input_qos(s.input_qos, s.queue_size)
        for stream, topic in (("ir", s.ir_topic), ("visible", s.visible_topic)):
            events = SubscriptionEventCallbacks(incompatible_qos=lambda info, t=topic: self.get_logger().warn(
                f"QoS incompatible with a publisher on {t} (policy {info.last_policy_kind}); "
                f"input_qos is {s.input_qos}"))
            self._subs.append(self.create_subscription(
                Image, topic, lambda msg, st=stream: self._on_image(st, msg), qos, event_callbacks=events))
        self.stats.backend(self._backend.name, "active")
        topics = " + ".join(sub.topic_name for sub in self._subs)
        self.get_logger().info(f"active: {topics} ({s.input_qos})")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.stats.backend(self._backend.name, "inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_model()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop the worker, drop subscriptions, publishers and the model (idempotent)."""
        self._stop_inputs()
        self._release_model()

    def _stop_inputs(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def _release_model(self) -> None:
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        if self._backend is not None:
            self._backend.close()
            self.stats.backend(self._backend.name, "unconfigured")
        self._backend = self._pipeline = self._settings = self._pairer = None

    # ------------------------------------------------------------------------------ data path
    def _on_image(self, stream: str, msg: Image) -> None:
        """Decode, validate and pair one frame (executor thread; cheap, never runs the network)."""
        self.stats.input(stream)
        if self._pairer is None or self._worker is None:
            return
        try:
            image = image_to_array(msg)
        except EncodingError as err:
            reason = "unsupported_encoding" if msg.encoding not in ACCEPTED_ENCODINGS else "bad_layout"
            self.stats.drop(stream, reason, str(err))
            self.get_logger().warn(f"{stream} frame dropped: {err}", throttle_duration_sec=5.0)
            return
        frame = (msg.header, image, time.perf_counter())
        pairs = self._pairer.push(stream, stamp_to_ns(msg.header.stamp), frame)
        self.stats.drops_from_pairer(self._pairer.stats, self._pairer_seen)
        for pair in pairs:
            if self._worker.submit(pair):
                self.stats.drop("pair", "busy", "inference slower than the cameras; kept the newest pair")

    def _process_pair(self, pair: Pair[Frame]) -> None:
        """Run the pipeline on one pair and publish every output with the visible header (worker thread)."""
        pipeline, settings, pubs = self._pipeline, self._settings, self._pubs
        if pipeline is None or settings is None:
            return
        (header, visible, t_vis), (_, ir, t_ir) = pair.visible, pair.ir
        t_start = time.perf_counter()
        result = pipeline(ir, visible)
        pubs["fused"].publish(array_to_image(result.fused_bgr, header, "bgr8"))
        pubs["labels"].publish(array_to_image(result.labels, header, "mono8"))
        if settings.publish_overlay:
            pubs["overlay"].publish(array_to_image(pipeline.segmentation_overlay(result), header, "bgr8"))
        pubs["detections"].publish(detections_to_msg(result.detections, header))
        if settings.publish_timing:
            t_received = max(t_vis, t_ir)  # the pair existed from its second frame on
            node_ms = {"queue_wait": (t_start - t_received) * 1e3,
                       "node_total": (time.perf_counter() - t_received) * 1e3}
            pubs["timing"].publish(timing_to_msg({**result.timings_ms, **node_ms}, header))
        age_ns = self.get_clock().now().nanoseconds - stamp_to_ns(header.stamp)
        self.stats.output(result.timings_ms["total"], age_ns / 1e6)

    def _on_worker_error(self, err: BaseException) -> None:
        if isinstance(err, ImageShapeError):
            self.stats.drop("pair", "size_mismatch", str(err))
        elif isinstance(err, EncodingError):
            self.stats.drop("pair", "bad_image", str(err))
        else:
            self.stats.error(f"pipeline failed: {type(err).__name__}: {err}", ERROR)
        self.get_logger().error(f"pair dropped: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        if self._settings is not None and self._subs:
            for stream in self.stats.silent_streams(self._settings.stale_input_s):
                self.stats.error(f"no {stream} frames for more than {self._settings.stale_input_s:g} s", WARN)
        pairing = self._pairer.stats if self._pairer is not None else None
        status = self.stats.status(pairing)
        self._diag_pub.publish(status_to_msg(
            status, f"{self.get_fully_qualified_name()}: fusion_perception", self.stats.backend_name,
            self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> int:
    """Console script ``fusion_perception_node``: start the node, autostart it, spin until shutdown."""
    rclpy.init(args=args)
    node = None
    try:
        node = FusionPerceptionNode()
        if node.autostart and not node.start():
            node.get_logger().error("autostart did not reach 'active'; waiting for lifecycle transitions")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
