"""Client nodes of the fusion node: a pair publisher and an output collector.

``fusion-perception demo`` drives the real node over DDS with these two (the node tests and the
benchmarks reuse them), so all of them measure the same thing: stamped pairs in, outputs matched
back to their stamps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from .messages import array_to_image, stamp_to_ns
from .params import SPECS

__all__ = ["OutputCollector", "PairPublisher", "Received", "spin_until"]



def spin_until(executor: Executor, done: Callable[[], bool], timeout_s: float) -> bool:
    """Spin ``executor`` until ``done()`` or the timeout; returns ``done()``."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return done()


class PairPublisher(Node):
    """Publishes IR/visible pairs on the node's default (relative) input topics.

    Args:
        reliable: publish reliably (pair with the node's ``input_qos: reliable``). Large images sent
            best effort between processes can be lost (Fast DDS sends frames over its 512 KiB
            shared-memory segment as UDP fragments), which a camera tolerates and a test must not.
    """

    def __init__(self, name: str = "pair_publisher", namespace: str = "", reliable: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(name, namespace=namespace, **kwargs)
        qos = qos_profile_sensor_data
        if reliable:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.ir = self.create_publisher(Image, SPECS["ir_topic"].default, qos)
        self.visible = self.create_publisher(Image, SPECS["visible_topic"].default, qos)

    def matched(self) -> bool:
        return self.ir.get_subscription_count() > 0 and self.visible.get_subscription_count() > 0

    def publish_pair(
        self, ir: np.ndarray | Image, visible: np.ndarray | Image, stamp_ns: int | None = None,
        ir_offset_ns: int = 0, frame_ids: tuple[str, str] = ("ir_camera", "visible_camera"),
    ) -> int:
        """Publish one pair stamped now (or ``stamp_ns``), the IR stamp shifted by ``ir_offset_ns``.

        Arrays are encoded (mono8/mono16/bgr8); ready messages are sent as given apart from header.
        Returns the visible stamp in nanoseconds.
        """
        stamp_ns = self.get_clock().now().nanoseconds if stamp_ns is None else stamp_ns
        for pub, image, offset, frame in ((self.ir, ir, ir_offset_ns, frame_ids[0]),
                                          (self.visible, visible, 0, frame_ids[1])):
            t = stamp_ns + offset
            header = Header(frame_id=frame)
            header.stamp.sec, header.stamp.nanosec = divmod(t, 1_000_000_000)
            if isinstance(image, Image):
                image.header = header
                msg = image
            else:
                msg = array_to_image(image, header)
            pub.publish(msg)
        return stamp_ns


@dataclass
class Received:
    """Outputs that arrived for one visible stamp: topic key -> (message, receive time ns)."""

    stamp_ns: int
    messages: dict[str, tuple[Any, int]] = field(default_factory=dict)


class OutputCollector(Node):
    """Subscribes to every output of the fusion node and files them by header stamp.

    Args:
        node_name: the fusion node's name, to pick its status out of /diagnostics.
        timing: also collect the node's per-frame ``~/timing`` (needs ``publish_timing``).
        keys: the outputs to subscribe to (default all of :attr:`KEYS`); a benchmark that only
            counts outputs subscribes to ``("detections",)`` and so decodes no images itself.
    """

    KEYS = ("fused", "labels", "overlay", "detections")

    def __init__(self, name: str = "output_collector", namespace: str = "",
                 node_name: str = "fusion_perception", timing: bool = False,
                 keys: tuple[str, ...] = KEYS, **kwargs: Any) -> None:
        super().__init__(name, namespace=namespace, **kwargs)
        self.by_stamp: dict[int, Received] = {}
        self.diagnostics: list[Any] = []
        self.label_info: dict[str, LabelInfo] = {}
        self._node_name = node_name
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        topics = {"fused": (Image, "fused_topic"), "labels": (Image, "labels_topic"),
                  "overlay": (Image, "overlay_topic"), "detections": (Detection2DArray, "detections_topic")}
        unknown = sorted(set(keys) - set(topics))
        if unknown:
            raise ValueError(f"unknown output keys {unknown}; known: {list(topics)}")
        for key in keys:
            msg_type, param = topics[key]
            self.create_subscription(msg_type, SPECS[param].default,
                                     lambda m, k=key: self._file(k, m), reliable)
        if timing:
            ns = namespace.rstrip("/")
            self.create_subscription(DiagnosticArray, f"{ns}/{node_name}/timing",
                                     lambda m: self._file("timing", m), reliable)
        for key, param in (("detections", "detection_labels_topic"),
                           ("segmentation", "segmentation_labels_topic")):
            self.create_subscription(LabelInfo, SPECS[param].default,
                                     lambda m, k=key: self.label_info.__setitem__(k, m), latched)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _file(self, key: str, msg: Any) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        self.by_stamp.setdefault(stamp, Received(stamp)).messages[key] = (msg, time.time_ns())

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.split(":")[0].rsplit("/", 1)[-1] == self._node_name:
                self.diagnostics.append(status)

    def complete(self, stamp_ns: int, keys: tuple[str, ...] = ("fused", "labels", "detections")) -> bool:
        got = self.by_stamp.get(stamp_ns)
        return got is not None and all(k in got.messages for k in keys)

    def latest_values(self) -> dict[str, str]:
        """Key/values of the newest status of the fusion node ({} before the first one)."""
        return {kv.key: kv.value for kv in self.diagnostics[-1].values} if self.diagnostics else {}
