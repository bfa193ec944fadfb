"""The fusion lifecycle node: ROS glue around :class:`~fusion_perception.runtime.pipeline.Pipeline`.

Lifecycle (docs/DESIGN.md "ROS conventions"; the pattern of mgonzs13/yolo_ros): ``__init__``
declares parameters and starts diagnostics; ``configure`` validates parameters and loads the model
(a failure is a failed transition with the reason logged and in /diagnostics, never a crash);
``activate`` subscribes and starts the inference worker; ``deactivate`` / ``cleanup`` free them
again. With ``autostart`` (default) the node configures and activates itself, so a plain start just
works.

Threads: subscription callbacks (:mod:`.camera_inputs`) count, guard and decode frames on the
executor thread, and the intake (:mod:`.intake`) pairs them, or passes one camera's frames on alone
while the other is silent (each after waiting the pairing window for a returning partner, timed by
a steady-clock timer on the same thread); each job goes to a one-slot worker (see :mod:`.worker`)
that runs the pipeline and publishes. Every frame ends as an output or in a
``dropped_<stream>_<reason>`` counter.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
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
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.timer import Timer
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from ..errors import EncodingError, ImageShapeError
from ..pairing import StampPairer
from ..runtime.backend import Backend
from ..runtime.pipeline import PerceptionResult, Pipeline
from ..vision_messages import label_infos
from .alignment_watch import AlignmentWatch
from .camera_inputs import CameraInputs
from .diagnostics import ERROR, NodeStats
from .intake import FrameIntake, Job, single_camera_inputs
from .messages import (
    array_to_image,
    detections_to_msg,
    stamp_to_ns,
    status_to_msg,
    timing_to_msg,
)
from .msg_types import rclpy_type
from .params import (
    PARAMS,
    SPECS,
    NodeSettings,
    ParameterValueError,
    ParamSpec,
    settings_from_values,
    unknown_parameters,
)
from .pipeline_setup import load_backend, pipeline_config, stamp_pairer
from .process import (
    HEAP_RELEASE_PERIOD_S,
    params_file_error,
    release_free_heap_memory,
    reuse_image_buffers,
    spin_until_finished,
)
from .transport import XML_QOS_VAR, configure_dds_transport, use_profile_reader_memory
from .worker import HandoffStage, LatestWorker

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


class FusionPerceptionNode(LifecycleNode):
    """IR + visible images in; fused image, segmentation, detections, labels and diagnostics out."""

    def __init__(self, node_name: str = "fusion_perception", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._param_errors = self._declare_parameters()
        self.stats = NodeStats()
        self._settings: NodeSettings | None = None
        self._backend: Backend | None = None
        self._pipeline: Pipeline | None = None
        self._single_pipeline: Pipeline | None = None  # one camera alone: no homography (see intake)
        self._intake: FrameIntake[Frame] | None = None
        self._intake_seen: dict[tuple[str, str], int] = {}
        self._alignment: AlignmentWatch | None = None  # online registration check (with a homography)
        self._hold_timer: Timer | None = None  # ends the intake's wait for a lone frame's partner
        self._inputs: CameraInputs | None = None
        self._worker: LatestWorker[Job[Frame]] | None = None
        self._publisher: HandoffStage[Callable[[], None]] | None = None  # publish_thread
        self._pubs: dict[str, Any] = {}
        self.finished = False  # set by the shutdown transition; main() then ends the process
        self.exit_code = 0  # 1 after a failed configure with exit_on_configure_failure
        self.stats.backend("none", "unconfigured", reason="not configured yet" if self.autostart else
                           "autostart is false: waiting for a configure transition")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        period = self.get_parameter("diagnostics_period_s").value
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(period, self._publish_diagnostics)
        self._heap_timer = self.create_timer(HEAP_RELEASE_PERIOD_S, release_free_heap_memory)

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
                self.get_logger().error(f"{errors[-1]}; configure fails until it is fixed")
                self.declare_parameter(spec.name, default, _descriptor(spec), ignore_override=True)
        unknown = unknown_parameters(self._parameter_overrides)
        if unknown:
            errors.append(f"{unknown} in the params file or -p overrides; valid names are in "
                          f"config/fusion_perception.yaml")
            self.get_logger().error(errors[-1])
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
            before_homography = self._settings.homography
            self._settings = settings
            if self._pipeline is not None:
                backend, before = self._pipeline.backend, self._pipeline.config.score_threshold
                self._pipeline = Pipeline(backend, pipeline_config(settings))
                self._single_pipeline = Pipeline(backend, pipeline_config(settings, single_camera=True))
                if settings.score_threshold != before and self._pubs:
                    self._publish_label_tables(backend, settings)
            if self._intake is not None:
                self._intake.set_policy(settings.camera_loss_policy)
            if self._alignment is not None:
                self._alignment.period_s = settings.alignment_check_period_s
                self._alignment.warn_px = settings.alignment_warn_px
                if settings.homography != before_homography:
                    self._alignment.reset()
        return SetParametersResult(successful=True)

    def _publish_label_tables(self, backend: Backend, settings: NodeSettings) -> None:
        """Latch both class tables; the detection table carries the score threshold in force."""
        tables = label_infos(rclpy_type, backend.info, Header(stamp=self.get_clock().now().to_msg()),
                             settings.score_threshold)
        self._pubs["det_labels"].publish(tables["detections"])
        self._pubs["seg_labels"].publish(tables["segmentation"])

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
            pipeline = Pipeline(backend, pipeline_config(settings))
        except Exception as err:  # boundary: any load failure is a failed transition, never a crash
            reason = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"configure failed: {reason}")
            self.stats.error(f"configure failed: {reason}")  # last_error; the status text says it once
            self.stats.backend(kind, "configure failed", reason=reason)
            if self.get_parameter("exit_on_configure_failure").value:
                self.get_logger().error("exit_on_configure_failure is true: ending the process with status 1")
                self.exit_code, self.finished = 1, True
            return TransitionCallbackReturn.FAILURE
        self._settings, self._backend, self._pipeline = settings, backend, pipeline
        self._single_pipeline = Pipeline(backend, pipeline_config(settings, single_camera=True))
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
        self._publish_label_tables(backend, settings)
        model_file = getattr(backend, "model_path", settings.model_path)  # the INT8 sibling for int8
        self.stats.backend(backend.name, "inactive", str(model_file), "configured; waiting for activate")
        for reason in getattr(backend, "fallback_reasons", ()):
            self.stats.note(f"backend fallback: {reason}")
        self.get_logger().info(
            f"loaded {model_file} with {backend.name}: input {backend.info.input_size}, "
            f"det classes {list(backend.info.det_classes)}, training {backend.info.training}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self._settings
        pairer: StampPairer[Frame] = stamp_pairer(s)
        self._intake = FrameIntake(pairer, s.stale_input_s, s.camera_loss_policy, time.monotonic())
        self._intake_seen = {}
        # Steady clock: the wait is wall time after receipt, also when the node runs on sim time.
        self._hold_timer = self.create_timer(self._intake.wait_s, self._on_hold_timeout,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME), autostart=False)
        self._alignment = AlignmentWatch(s.alignment_check_period_s, s.alignment_warn_px)
        self._worker = LatestWorker(self._process_job, self._on_worker_error)
        if s.publish_thread:
            self._publisher = HandoffStage(lambda publish: publish(), self._on_worker_error)
        self._inputs = CameraInputs(self, s, self.stats, self._on_frame)
        self.stats.backend(self._backend.name, "active")
        self.get_logger().info(f"active: {self._inputs.topics} ({s.input_qos})")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.stats.backend(self._backend.name, "inactive", reason="deactivated by a lifecycle transition")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_model()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free everything and let :func:`main` end the process (a finalized node serves nothing)."""
        self.release()
        self.stats.backend(self.stats.backend_name, "finalized", reason="shut down by a lifecycle transition")
        self.get_logger().info("shutdown transition: exiting")
        self.finished = True
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop the worker, drop subscriptions, publishers and the model (idempotent)."""
        self._stop_inputs()
        self._release_model()

    def _stop_inputs(self) -> None:
        if self._inputs is not None:
            self._inputs.destroy()
            self._inputs = None
        if self._hold_timer is not None:
            self.destroy_timer(self._hold_timer)
            self._hold_timer = None
        self._intake = None
        self._alignment = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._publisher is not None:  # after the worker: it may still hand over its last outputs
            self._publisher.stop()
            self._publisher = None

    def _release_model(self) -> None:
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        if self._backend is not None:
            self._backend.close()
            self.stats.backend(self._backend.name, "unconfigured", reason="cleaned up; waiting for configure")
        self._backend = self._pipeline = self._single_pipeline = self._settings = None

    # ------------------------------------------------------------------------------ data path
    def _on_frame(self, stream: str, header: Header, image: Any, received: float) -> None:
        """Pair one decoded frame, or pass it on alone while its partner is silent (executor thread)."""
        intake, worker = self._intake, self._worker
        if intake is None or worker is None:
            return
        stamp, resets = stamp_to_ns(header.stamp), intake.pairer.stats.resets
        jobs = intake.push(stream, stamp, (header, image, received), time.monotonic())
        if intake.pairer.stats.resets > resets:
            self.get_logger().info(
                f"{stream} stamp went back in time by more than time_jump_reset_s = "
                f"{self._settings.jump_reset_ns / 1e9:g} s (bag loop or simulation reset): pairing restarts "
                f"at {stamp / 1e9:.3f} s ({intake.pairer.stats.resets} reset(s) so far)")
        self._dispatch(intake, worker, jobs)

    def _on_hold_timeout(self) -> None:
        """The held lone frame waited the pairing window for its partner in vain (executor thread)."""
        intake, worker = self._intake, self._worker
        if intake is not None and worker is not None:
            self._dispatch(intake, worker, intake.expire(time.monotonic()))

    def _dispatch(self, intake: FrameIntake[Frame], worker: LatestWorker[Job[Frame]],
                  jobs: list[Job[Frame]]) -> None:
        """Fold the intake's drops, submit ``jobs``, and time the wait of a frame the intake now holds."""
        self.stats.fold(intake.drops(), self._intake_seen)
        for job in jobs:
            if worker.submit(job):
                self.stats.drop("pair", "busy", "inference slower than the cameras; kept the newest pair")
        if intake.holding:
            self._hold_timer.reset()  # a frame newly held: its wait starts now
        else:
            self._hold_timer.cancel()

    def _process_job(self, job: Job[Frame]) -> None:
        """Run the pipeline on one job and publish every output (worker thread).

        A pair's outputs carry the visible header; a single camera's carry that camera's header
        (its stamp and frame), since they are computed in its pixel grid.
        """
        pipeline, settings, pubs = self._pipeline, self._settings, self._pubs
        if job.degraded:
            pipeline = self._single_pipeline
        if pipeline is None or settings is None:
            return
        frames = [f for f in (job.visible, job.ir) if f is not None]
        header, t_received = frames[0][0], max(f[2] for f in frames)  # a pair exists from its 2nd frame on
        ir, visible = (job.ir[1] if job.ir else None), (job.visible[1] if job.visible else None)
        if job.degraded:
            ir, visible = single_camera_inputs(ir, visible, settings.gain)
        t_start = time.perf_counter()
        result = pipeline(ir, visible)
        publish = functools.partial(self._publish_outputs, pipeline, settings, pubs, job, header, result,
                                    (t_received, t_start))
        if self._publisher is None or not self._publisher.put(publish):
            publish()  # publish_thread off (or stopping): publish here, before the next job
        alignment = self._alignment
        if alignment is not None and not job.degraded:  # after publishing: never delays an output
            alignment.maybe_check(ir, visible, settings)

    def _publish_outputs(self, pipeline: Pipeline, settings: NodeSettings, pubs: dict[str, Any],
                         job: Job[Frame], header: Header, result: PerceptionResult,
                         times: tuple[float, float]) -> None:
        """Convert and publish one job's outputs (``publish_thread``: on the publish thread, while the
        worker already runs the next job). ``times``: perf_counter() at receipt and at pipeline start."""
        t_received, t_start = times
        # fused_bgr is None when colour restoration was off (both outputs disabled); a parameter
        # change swaps settings before the pipeline, so check the result, not only the settings.
        if settings.publish_fused and result.fused_bgr is not None:
            pubs["fused"].publish(array_to_image(result.fused_bgr, header, "bgr8"))
        pubs["labels"].publish(array_to_image(result.labels, header, "mono8"))
        if settings.publish_overlay and result.fused_bgr is not None:
            pubs["overlay"].publish(array_to_image(pipeline.segmentation_overlay(result), header, "bgr8"))
        pubs["detections"].publish(detections_to_msg(result.detections, header))
        if settings.publish_timing:
            node_ms = {"queue_wait": (t_start - t_received) * 1e3,
                       "node_total": (time.perf_counter() - t_received) * 1e3}
            pubs["timing"].publish(timing_to_msg({**result.timings_ms, **node_ms}, header,
                                                 sources=job.sources))
        age_ns = self.get_clock().now().nanoseconds - stamp_to_ns(header.stamp)
        self.stats.output(result.timings_ms["total"], age_ns / 1e6, job.degraded)

    def _on_worker_error(self, err: BaseException) -> None:
        if isinstance(err, ImageShapeError):
            self.stats.drop("pair", "size_mismatch", str(err))
        elif isinstance(err, EncodingError):
            self.stats.drop("pair", "bad_image", str(err))
        else:
            self.stats.error(f"pipeline failed: {type(err).__name__}: {err}", ERROR)
        self.get_logger().error(f"pair dropped: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        extra: list[tuple[str, str]] = []
        health = None
        intake, settings = self._intake, self._settings
        if self._inputs is not None:
            self._inputs.settle()
        if intake is not None and settings is not None:
            live = intake.watch.assess(time.monotonic(), settings.stale_error_s, settings.camera_loss_policy)
            health = (live.level, live.message)
            extra += [*intake.values(), *live.values()]
            alignment = self._alignment
            if alignment is not None and settings.homography is not None:
                extra += alignment.values()
                level, why = alignment.health()
                if why:
                    health = (max(health[0], level), "; ".join(m for m in (health[1], why) if m))
        status = self.stats.status(extra, health)
        self._diag_pub.publish(status_to_msg(
            status, f"{self.get_fully_qualified_name()}: fusion_perception", self.stats.backend_name,
            self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> int:
    """Console script ``fusion_perception_node``: start the node, autostart it, spin until shutdown.

    Returns 0 after Ctrl-C, SIGTERM or the lifecycle ``shutdown`` transition; 1 after a failed
    configure when ``exit_on_configure_failure`` is true (for supervisors); 2 (with one line on
    stderr) when a params file cannot be read or parsed.

    SIGINT and SIGTERM only ask the spin loop to end (rclpy's own handlers are off): the node then
    stops its inputs, lets the pair in flight finish and publish, and only after that is the ROS
    context shut down. With rclpy's handlers the context died first, and a pair still in inference
    failed to publish with an ERROR on every stop.
    """
    argv = list(sys.argv if args is None else args)
    problem = params_file_error(argv)
    if problem:
        print(f"fusion_perception_node: error: {problem}", file=sys.stderr)
        return 2
    transport = configure_dds_transport()
    if use_profile_reader_memory():
        transport += f", {XML_QOS_VAR}=1 (reader memory policy from the profile)"
    reuse_image_buffers()
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as err:  # rcl refused the arguments; its own text, on one line
        print(f"fusion_perception_node: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = None
    try:
        node = FusionPerceptionNode()
        node.stats.note(f"DDS transport: {transport}")
        node.get_logger().info(f"DDS transport: {transport}")
        if node.autostart and not node.start() and not node.finished:
            node.get_logger().error("autostart did not reach 'active'; waiting for lifecycle transitions")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_until_finished(executor, lambda: node.finished or stop.is_set())
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return node.exit_code if node is not None else 0


if __name__ == "__main__":
    sys.exit(main())
