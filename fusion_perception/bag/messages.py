"""The rosbags typestore this package writes with, and conversions between arrays and messages.

rosbags ships the standard ROS 2 message types but not vision_msgs (it is not a core package), so
:func:`typestore` registers them from the same ``.msg`` files the interface package is built from;
the bag and the node then agree on the definition byte for byte, and Foxglove can decode the
detections from the definition stored in the bag.

Image buffers go through :mod:`fusion_perception.image_encoding` (never cv_bridge).
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ..errors import BagError
from ..image_encoding import decode_image, encode_image
from ..runtime.postprocess import Detections
from ..vision_messages import detection_array

__all__ = [
    "CAMERA_INFO",
    "CLOCK",
    "DETECTIONS",
    "IMAGE",
    "LABEL_INFO",
    "camera_info_msg",
    "detections_msg",
    "header_msg",
    "image_from_msg",
    "image_msg",
    "stamp_ns",
    "typestore",
    "vision_msgs_dir",
]

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
CLOCK = "rosgraph_msgs/msg/Clock"
LABEL_INFO = "vision_msgs/msg/LabelInfo"


def vision_msgs_dir() -> Path:
    """Folder holding the vision_msgs ``.msg`` files: the source tree's, else the installed package's."""
    candidates = (
        Path(__file__).resolve().parents[2] / "interfaces" / "vision_msgs" / "msg",
        Path(sys.prefix) / "share" / "vision_msgs" / "msg",
    )
    for folder in candidates:
        if any(folder.glob("*.msg")):
            return folder
    raise BagError(f"vision_msgs .msg files not found in {' or '.join(map(str, candidates))}")


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """ROS 2 Jazzy types plus vision_msgs, registered from their ``.msg`` files (cached)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for path in sorted(vision_msgs_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    store.register(types)
    return store


def stamp_ns(header: Any) -> int:
    """Nanoseconds of a ``std_msgs/Header`` stamp."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def header_msg(stamp: int, frame_id: str) -> Any:
    """A ``std_msgs/Header`` for ``stamp`` nanoseconds."""
    types = typestore().types
    sec, nanosec = divmod(int(stamp), 1_000_000_000)
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def image_msg(image: np.ndarray, header: Any, encoding: str | None = None) -> Any:
    """``sensor_msgs/Image`` holding ``image`` (uint8/uint16 HxW, or uint8 HxWx3 BGR)."""
    enc, height, width, step, data = encode_image(image, encoding)
    return typestore().types[IMAGE](
        header=header,
        height=height,
        width=width,
        encoding=enc,
        is_bigendian=0,
        step=step,
        data=np.frombuffer(data, np.uint8),
    )


def image_from_msg(msg: Any) -> np.ndarray:
    """Array of a deserialized ``sensor_msgs/Image`` (raises EncodingError on a bad layout)."""
    return decode_image(
        encoding=msg.encoding,
        height=int(msg.height),
        width=int(msg.width),
        step=int(msg.step),
        is_bigendian=bool(msg.is_bigendian),
        data=msg.data,
    )


def camera_info_msg(width: int, height: int, header: Any, *, hfov_deg: float = 60.0) -> Any:
    """A nominal pinhole ``sensor_msgs/CameraInfo`` (no distortion, principal point at the centre).

    Image-pair datasets carry no calibration; the focal length follows from ``hfov_deg`` so that
    tools which need intrinsics (3D panels) get a plausible camera, not a calibrated one.
    """
    types = typestore().types
    f = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return types[CAMERA_INFO](
        header=header,
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5, np.float64),
        k=np.array([f, 0, cx, 0, f, cy, 0, 0, 1], np.float64),
        r=np.eye(3).ravel(),
        p=np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], np.float64),
        binning_x=0,
        binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def detections_msg(detections: Detections, header: Any) -> Any:
    """``vision_msgs/Detection2DArray`` of boxes in source pixels, built as the node builds it
    (:func:`fusion_perception.vision_messages.detection_array`)."""
    return detection_array(typestore().types.__getitem__, detections, header)
