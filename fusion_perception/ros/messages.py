"""Message <-> array converters: one small pure function per message type (rclpy message classes only).

Decoding goes through :func:`fusion_perception.image_encoding.decode_image` (no cv_bridge).
Detections and class tables are built by :mod:`fusion_perception.vision_messages` (shared with the
bag writer), given :func:`.msg_types.rclpy_type` as the message-class lookup.
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from ..image_encoding import decode_image, encode_image
from ..runtime.postprocess import Detections
from ..vision_messages import detection_array
from .diagnostics import Status
from .msg_types import rclpy_type

__all__ = [
    "array_to_image",
    "detections_to_msg",
    "image_to_array",
    "stamp_to_ns",
    "status_to_msg",
    "timing_to_msg",
]


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> HxW (grey, uint8/uint16) or HxWx3 BGR uint8; raises EncodingError."""
    return decode_image(
        encoding=msg.encoding, height=msg.height, width=msg.width, step=msg.step,
        is_bigendian=bool(msg.is_bigendian), data=msg.data,
    )


def array_to_image(image: np.ndarray, header: Header, encoding: str | None = None) -> Image:
    """Array -> sensor_msgs/Image carrying ``header`` (mono8, mono16 or bgr8 picked from the array)."""
    enc, height, width, step, data = encode_image(image, encoding)
    msg = Image(header=header, height=height, width=width, encoding=enc, is_bigendian=0, step=step)
    # One copy out of the array (frombytes reads the buffer; no tobytes() in between). The setter
    # stores an array.array('B') as is under ROS_PYTHON_CHECK_FIELDS=1 and copies it once more
    # (memcpy) otherwise; any other sequence would be converted, or checked, element by element.
    buf = array.array("B")
    buf.frombytes(data)
    msg.data = buf
    return msg


def detections_to_msg(dets: Detections, header: Header) -> Detection2DArray:
    """Boxes (x1, y1, x2, y2 source pixels) -> Detection2DArray (:func:`vision_messages.detection_array`)."""
    return detection_array(rclpy_type, dets, header)


def msg_to_detections(msg: Detection2DArray) -> Detections:
    """Detection2DArray as written by :func:`detections_to_msg` -> boxes, scores, class ids."""
    if not msg.detections:
        return Detections.empty()
    boxes, scores, classes = [], [], []
    for det in msg.detections:
        cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
        boxes.append((cx - det.bbox.size_x / 2, cy - det.bbox.size_y / 2,
                      cx + det.bbox.size_x / 2, cy + det.bbox.size_y / 2))
        scores.append(det.results[0].hypothesis.score)
        classes.append(int(det.results[0].hypothesis.class_id))
    return Detections(
        np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(classes, np.int64)
    )


def status_to_msg(status: Status, name: str, hardware_id: str, stamp: Time) -> DiagnosticArray:
    """One :class:`Status` -> a DiagnosticArray holding one DiagnosticStatus."""
    st = DiagnosticStatus(level=bytes([status.level]), name=name, message=status.message,
                          hardware_id=hardware_id)
    st.values = [KeyValue(key=k, value=v) for k, v in status.values]
    return DiagnosticArray(header=Header(stamp=stamp), status=[st])


def timing_to_msg(
    timings_ms: dict[str, float], header: Header, sources: str = "ir+visible"
) -> DiagnosticArray:
    """Per-frame milliseconds (pipeline stages; the node's queue wait and receipt -> published total),
    stamped with the frame's header so receivers match them by stamp.

    ``sources`` says what the outputs were computed from: a frame from one camera alone (the other
    silent) is marked level WARN, message ``degraded: <camera> only`` and value ``degraded`` = 1
    (every value stays a number, so consumers can parse them all as floats).
    """
    degraded = sources != "ir+visible"
    status = DiagnosticStatus(level=DiagnosticStatus.WARN if degraded else DiagnosticStatus.OK,
                              name="pipeline_ms", message=f"degraded: {sources} only" if degraded else "")
    status.values = [KeyValue(key=k, value=f"{v:.3f}") for k, v in timings_ms.items()]
    status.values.append(KeyValue(key="degraded", value="1" if degraded else "0"))
    return DiagnosticArray(header=header, status=[status])
