"""The two camera subscriptions of an active node: QoS, loss accounting, size guard, decoding.

Every frame a camera sends ends in exactly one counter of /diagnostics: ``dropped_<stream>_
lost_in_transport`` (Fast DDS's ``message_lost`` event), ``dropped_<stream>_lost_in_queue``
(never reached the callback without any transport event: overwritten in a DDS history, usually the
subscription's when the executor fell behind; seen as a gap in the publisher's sequence numbers,
see :mod:`.delivery`), ``dropped_<stream>_too_large`` /
``unsupported_encoding`` / ``bad_layout`` (rejected here, with the reason logged), or it is passed
on to the node's intake, which pairs, processes or drops it with its own reasons.

The size guard runs before decoding: a 4000x3000 frame cost 5 s a pair and kept 157 MB of
buffers in the process; ``max_input_pixels`` turns it into a counted, logged drop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ..errors import EncodingError
from ..image_encoding import ACCEPTED_ENCODINGS
from .delivery import LossLedger
from .diagnostics import NodeStats
from .messages import image_to_array
from .params import NodeSettings

__all__ = ["CameraInputs", "input_qos"]

FrameCallback = Callable[[str, Header, np.ndarray, float], None]


def input_qos(kind: str, depth: int) -> QoSProfile:
    """sensor_data: best effort, keep last ``depth`` (what camera drivers publish); else reliable."""
    if kind == "sensor_data":
        return QoSProfile(history=qos_profile_sensor_data.history, depth=depth,
                          reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


class CameraInputs:
    """Subscribes to the IR and visible topics of ``settings`` on ``node``; valid frames go to ``on_frame``.

    Args:
        node: the node that owns the subscriptions (their callbacks run on its executor).
        settings: topics, QoS, depth and ``max_input_pixels``.
        stats: where receipts and drops are counted.
        on_frame: called with (stream, header, decoded array, perf_counter() at receipt).
    """

    def __init__(self, node: Node, settings: NodeSettings, stats: NodeStats, on_frame: FrameCallback) -> None:
        self._node, self._settings, self._stats, self._on_frame = node, settings, stats, on_frame
        self.ledgers = {"ir": LossLedger(), "visible": LossLedger()}
        self._seen: dict[tuple[str, str], int] = {}
        qos = input_qos(settings.input_qos, settings.queue_size)
        self.subs: dict[str, Any] = {}
        for stream, topic in (("ir", settings.ir_topic), ("visible", settings.visible_topic)):
            events = SubscriptionEventCallbacks(
                incompatible_qos=lambda info, t=topic: self._log.warn(
                    f"QoS incompatible with a publisher on {t} (policy {info.last_policy_kind}); "
                    f"input_qos is {settings.input_qos}"),
                message_lost=lambda status, s=stream: self._on_lost(s, status))
            self.subs[stream] = node.create_subscription(
                Image, topic, lambda msg, info, s=stream: self._on_image(s, msg, info), qos,
                event_callbacks=events)

    @property
    def _log(self) -> Any:
        return self._node.get_logger()

    @property
    def topics(self) -> str:
        return " + ".join(sub.topic_name for sub in self.subs.values())

    def destroy(self) -> None:
        """Drop both subscriptions (deactivate); counters already folded stay in ``stats``."""
        for sub in self.subs.values():
            self._node.destroy_subscription(sub)
        self.subs = {}

    def settle(self) -> None:
        """Once per diagnostics period: attribute sequence gaps to the queue, fold loss totals in."""
        for ledger in self.ledgers.values():
            ledger.settle()
        self._fold()

    def _fold(self) -> None:
        totals = {}
        for stream, ledger in self.ledgers.items():
            totals[(stream, "lost_in_transport")] = ledger.transport
            totals[(stream, "lost_in_queue")] = ledger.queue
        self._stats.fold(totals, self._seen)

    def _on_lost(self, stream: str, status: Any) -> None:
        self.ledgers[stream].transport_lost(status.total_count)
        self._fold()
        self._log.warn(f"{status.total_count_change} {stream} frame(s) lost in transport "
                       f"({status.total_count} so far); see docs/ROBOT.md on the DDS profile",
                       throttle_duration_sec=5.0)

    def _on_image(self, stream: str, msg: Image, info: dict[str, Any]) -> None:
        """Count, guard and decode one frame (executor thread; cheap, never runs the network)."""
        received = time.perf_counter()
        self._stats.input(stream)
        sub = self.subs.get(stream)
        single = sub is not None and sub.get_publisher_count() <= 1
        self.ledgers[stream].message(int(info.get("publication_sequence_number", 0)), single)
        pixels, limit = msg.width * msg.height, self._settings.max_input_pixels
        if pixels > limit:
            self._drop(stream, "too_large", f"{msg.width}x{msg.height} = {pixels} pixels is more than "
                                            f"max_input_pixels = {limit}")
            return
        try:
            image = image_to_array(msg)
        except EncodingError as err:
            reason = "unsupported_encoding" if msg.encoding not in ACCEPTED_ENCODINGS else "bad_layout"
            self._drop(stream, reason, str(err))
            return
        self._on_frame(stream, msg.header, image, received)

    def _drop(self, stream: str, reason: str, detail: str) -> None:
        self._stats.drop(stream, reason, detail)
        self._log.warn(f"{stream} frame dropped ({reason}): {detail}", throttle_duration_sec=5.0)
