"""sensor_msgs/Image buffers <-> NumPy arrays, without cv_bridge (pure NumPy, no rclpy import).

PyPI's ``cv-bridge`` is a ROS 1 port that decodes 16UC1 as 8-bit; the node, bag evaluation and bag
making all use these two functions instead. They honour ``step`` (row padding) and
``is_bigendian``, and reject anything else with an :class:`EncodingError` that says why.

Accepted encodings: mono8, 8UC1, mono16, 16UC1, bgr8, rgb8, bgra8, rgba8, 8UC3 (taken as bgr8).
Colour images come back as BGR (OpenCV order); alpha is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EncodingError

__all__ = ["ACCEPTED_ENCODINGS", "ImageLayout", "decode_image", "encode_image"]


@dataclass(frozen=True)
class ImageLayout:
    """How one encoding lays out a pixel."""

    dtype: type
    channels: int
    to_bgr: tuple[int, ...] | None  # channel order that yields BGR, None for grey


_LAYOUTS: dict[str, ImageLayout] = {
    "mono8": ImageLayout(np.uint8, 1, None),
    "8UC1": ImageLayout(np.uint8, 1, None),
    "mono16": ImageLayout(np.uint16, 1, None),
    "16UC1": ImageLayout(np.uint16, 1, None),
    "bgr8": ImageLayout(np.uint8, 3, (0, 1, 2)),
    "8UC3": ImageLayout(np.uint8, 3, (0, 1, 2)),
    "rgb8": ImageLayout(np.uint8, 3, (2, 1, 0)),
    "bgra8": ImageLayout(np.uint8, 4, (0, 1, 2)),
    "rgba8": ImageLayout(np.uint8, 4, (2, 1, 0)),
}
ACCEPTED_ENCODINGS = tuple(_LAYOUTS)


def decode_image(
    *,
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool,
    data: bytes | bytearray | memoryview,
) -> np.ndarray:
    """Decode the fields of a sensor_msgs/Image into HxW (grey) or HxWx3 (BGR) array.

    The result owns its memory only when a conversion was needed; callers must not rely on
    writing into it.

    Raises:
        EncodingError: unsupported encoding, non-positive size, ``step`` shorter than a row, or a
            buffer length that disagrees with ``height * step``.
    """
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise EncodingError(
            f"unsupported image encoding {encoding!r}; accepted: {', '.join(ACCEPTED_ENCODINGS)}"
        )
    if height <= 0 or width <= 0:
        raise EncodingError(f"image size must be positive, got {width}x{height}")
    itemsize = np.dtype(layout.dtype).itemsize
    row_bytes = width * layout.channels * itemsize
    if step < row_bytes:
        raise EncodingError(
            f"step {step} is shorter than one {encoding} row of {width} pixels ({row_bytes} bytes)"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size != height * step:
        raise EncodingError(
            f"{encoding} {width}x{height} with step {step} needs {height * step} bytes, got {buf.size}"
        )
    rows = buf.reshape(height, step)[:, :row_bytes]
    dtype = np.dtype(layout.dtype).newbyteorder(">" if is_bigendian else "<")
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, layout.channels)
    if dtype.byteorder not in ("=", "|") and not dtype.isnative:
        pixels = pixels.astype(dtype.newbyteorder("="))
    if layout.to_bgr is None:
        return pixels[:, :, 0]
    if layout.to_bgr == (0, 1, 2) and layout.channels == 3:
        return pixels
    return np.ascontiguousarray(pixels[:, :, list(layout.to_bgr)])


def encode_image(image: np.ndarray, encoding: str | None = None) -> tuple[str, int, int, int, memoryview]:
    """Encode an array for a sensor_msgs/Image: returns (encoding, height, width, step, data).

    ``image`` is uint8 HxW (mono8), uint16 HxW (mono16) or uint8 HxWx3 BGR (bgr8, or rgb8 when asked).
    ``data`` is a read-only, flat byte view (little-endian, unpadded): of ``image`` itself when it
    is already laid out so (no copy; the node publishes ~2 MB a pair), else of a converted copy.
    Copy it (``bytes(data)``, ``array.frombytes``) before ``image`` changes.
    """
    if encoding is None:
        if image.ndim == 2:
            encoding = {np.dtype(np.uint8): "mono8", np.dtype(np.uint16): "mono16"}.get(image.dtype, "")
        elif image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
            encoding = "bgr8"
        if not encoding:
            raise EncodingError(
                f"cannot pick an encoding for an array of shape {image.shape} and dtype {image.dtype}"
            )
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise EncodingError(
            f"unsupported image encoding {encoding!r}; accepted: {', '.join(ACCEPTED_ENCODINGS)}"
        )
    expected_channels = 1 if layout.to_bgr is None else 3
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != layout.dtype or channels != expected_channels or layout.channels == 4:
        raise EncodingError(f"cannot encode {image.dtype} array of shape {image.shape} as {encoding}")
    if layout.to_bgr is not None and layout.to_bgr != (0, 1, 2):
        image = image[:, :, list(layout.to_bgr)]
    pixels = np.ascontiguousarray(image, dtype=np.dtype(layout.dtype).newbyteorder("<"))
    data = memoryview(pixels.reshape(-1).view(np.uint8)).toreadonly()
    height, width = image.shape[:2]
    return encoding, height, width, width * expected_channels * np.dtype(layout.dtype).itemsize, data
