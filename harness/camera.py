"""``python harness/camera.py``: a stand-in IR + visible camera pair in its own process (test and
benchmark harness; not part of the installed package).

Why a separate process: on a robot the cameras are other processes (drivers), and what reaches the
node depends on the DDS transport between processes (a 921 kB bgr8 frame is not a 2 kB message).
Tests and benchmarks that publish from their own process hide exactly the failures a robot sees, so
the delivery test, the soak benchmark and the transport benchmark all drive the node from here.

It publishes the bundled MSRS sample pairs (IR mono8, visible bgr8, 640x480) at ``rate_hz`` with
sensor-data (best effort) or reliable QoS, both frames of a pair stamped alike (``ir_offset_s``
shifts the IR stamp). Parameters (``--ros-args -p name:=value``):

    rate_hz (30.0)             pairs per second
    count (0)                  pairs to send, 0 = until SIGINT or ``duration_s``
    duration_s (0.0)           seconds to send, 0 = no limit
    qos (sensor_data)          sensor_data | reliable
    ir_enabled, visible_enabled (true)   runtime switches: a false stream stays silent (a camera
                               going dark), set with ``ros2 param set`` or the parameter service
    ir_offset_s (0.0)          added to the IR stamp (cameras out of sync); runtime too
    wait_for_subscribers_s (0) wait for a subscriber on both topics before the first pair
    settle_s (1.0)             pause after that wait (DDS loses the first samples after discovery)
    stamps_file ("")           JSON written at the end: the stamps sent per stream, in order
    linger_s (2.0)             keep the process up this long after the last pair (DDS sends
                               asynchronously; exiting at once would lose the last frames)

The camera loads the shipped Fast DDS profile like the node does
(:mod:`fusion_perception.ros.transport`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fusion_perception.assets import load_sample_pairs as sample_pairs
from fusion_perception.ros.client import spin_until
from fusion_perception.ros.messages import array_to_image
from fusion_perception.ros.params import QOS_CHOICES, SPECS
from fusion_perception.ros.transport import configure_dds_transport

__all__ = ["CameraPair", "main"]



class _Encoded:
    """One sample pair as ready messages; only the header changes per publish (no per-frame copies)."""

    def __init__(self, ir: Any, visible: Any) -> None:
        self.ir = array_to_image(ir, Header(frame_id="ir_camera"))
        self.visible = array_to_image(visible, Header(frame_id="visible_camera"))


class CameraPair(Node):
    """Publishes the sample pairs on ``ir/image`` and ``visible/image`` (relative, remappable)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("camera_pair", **kwargs)
        for name, default in (("rate_hz", 30.0), ("count", 0), ("duration_s", 0.0), ("qos", "sensor_data"),
                              ("ir_enabled", True), ("visible_enabled", True), ("ir_offset_s", 0.0),
                              ("wait_for_subscribers_s", 0.0), ("settle_s", 1.0), ("stamps_file", ""),
                              ("linger_s", 2.0)):
            self.declare_parameter(name, default)
        qos_name = self.param("qos")
        if qos_name not in QOS_CHOICES:
            raise ValueError(f"parameter qos={qos_name!r} is not one of {', '.join(QOS_CHOICES)}")
        qos = qos_profile_sensor_data
        if qos_name == "reliable":
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.ir_pub = self.create_publisher(Image, SPECS["ir_topic"].default, qos)
        self.visible_pub = self.create_publisher(Image, SPECS["visible_topic"].default, qos)
        self.frames = [_Encoded(ir, vi) for _, ir, vi in sample_pairs()]
        self.sent: dict[str, list[int]] = {"ir": [], "visible": []}
        self.pairs = 0

    def param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def publish_next(self, stamp_ns: int) -> None:
        """Publish the next pair (its enabled streams) stamped ``stamp_ns`` (IR + ``ir_offset_s``)."""
        frame = self.frames[self.pairs % len(self.frames)]
        offset = round(float(self.param("ir_offset_s")) * 1e9)
        for stream, pub, msg, t in (("ir", self.ir_pub, frame.ir, stamp_ns + offset),
                                    ("visible", self.visible_pub, frame.visible, stamp_ns)):
            if not self.param(f"{stream}_enabled"):
                continue
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 1_000_000_000)
            pub.publish(msg)
            self.sent[stream].append(t)
        self.pairs += 1

    def matched(self) -> bool:
        return self.ir_pub.get_subscription_count() > 0 and self.visible_pub.get_subscription_count() > 0

    def write_stamps(self) -> None:
        if self.param("stamps_file"):
            Path(self.param("stamps_file")).write_text(json.dumps(self.sent) + "\n")


def _run(node: CameraPair, executor: Executor) -> None:
    """Wait for subscribers, then publish on a fixed schedule (no drift) until count or duration."""
    wait_s = float(node.param("wait_for_subscribers_s"))
    if wait_s > 0 and not spin_until(executor, node.matched, wait_s):
        node.get_logger().warn(f"no subscriber on both topics after {wait_s:g} s; publishing anyway")
    spin_until(executor, lambda: False, float(node.param("settle_s")))
    count, duration = int(node.param("count")), float(node.param("duration_s"))
    start = time.monotonic()
    node.get_logger().info(f"publishing pairs at {node.param('rate_hz'):g} Hz ({node.param('qos')})")
    while (count <= 0 or node.pairs < count) and (duration <= 0 or time.monotonic() - start < duration):
        due = start + node.pairs / float(node.param("rate_hz"))
        while (left := due - time.monotonic()) > 0:
            executor.spin_once(timeout_sec=min(left, 0.02))
        node.publish_next(node.get_clock().now().nanoseconds)
    node.get_logger().info(f"sent {node.pairs} pairs: {len(node.sent['ir'])} IR, "
                           f"{len(node.sent['visible'])} visible frames")


def main(args: list[str] | None = None) -> int:
    """Run the camera pair until done; returns 0, or 2 on a bad parameter."""
    configure_dds_transport()
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args)
    node = None
    try:
        try:
            node = CameraPair()
        except ValueError as err:
            print(f"camera: error: {err}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        _run(node, executor)
        node.write_stamps()
        spin_until(executor, lambda: False, float(node.param("linger_s")))
    except (KeyboardInterrupt, ExternalShutdownException):
        if node is not None:
            node.write_stamps()
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
