"""Image preprocessing shared by training, export and deployment (numpy + OpenCV only).

One path from camera arrays to network tensors and back, so the network sees at run time exactly
what it saw in training:

* thermal gain control: 8-bit IR is scaled by 1/255; 16-bit radiometric IR is windowed to [0, 1]
  by percentiles of the frame (robust to hot spots) or by a fixed raw window (stable across frames);
* registration: an optional 3x3 homography warps IR into the visible camera's pixel grid;
* colour: the visible image is split into Y (fused with IR) and Cb/Cr (restored after fusion);
* resizing to the network size, and the inverse mapping of boxes back to source pixels.

Arrays follow OpenCV conventions: HxW or HxWx3 (BGR), uint8 or uint16. Network tensors are float32
NCHW in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from .errors import ImageShapeError

__all__ = [
    "GAIN_MODES",
    "GainControl",
    "NetworkInput",
    "PreprocessConfig",
    "ResizeMapping",
    "fused_to_bgr",
    "prepare_pair",
    "thermal_to_unit",
    "to_gray",
    "unit_to_uint8",
    "visible_to_ycrcb",
    "warp_to_visible",
]

GAIN_MODES = ("percentile", "fixed")  # how 16-bit thermal frames are windowed (see GainControl)


@dataclass(frozen=True)
class GainControl:
    """How 16-bit thermal counts become [0, 1].

    Args:
        mode: ``"percentile"`` windows each frame between its ``low`` and ``high`` percentiles;
            ``"fixed"`` windows between the raw counts ``low`` and ``high``.
        low: lower percentile (0-100) or raw count.
        high: upper percentile (0-100) or raw count; must exceed ``low``.
        subsample: pixel stride used to estimate percentiles (16x fewer pixels at 4, same window
            to within a count on real frames, and it keeps gain control under 1 ms).
    """

    mode: Literal["percentile", "fixed"] = "percentile"
    low: float = 1.0
    high: float = 99.0
    subsample: int = 4

    def __post_init__(self) -> None:
        if self.mode not in GAIN_MODES:
            raise ValueError(f"gain mode must be one of {GAIN_MODES}, got {self.mode!r}")
        if not self.high > self.low:
            raise ValueError(f"gain window needs high > low, got low={self.low} high={self.high}")
        if self.mode == "percentile" and not (self.low >= 0.0 and self.high <= 100.0):
            raise ValueError(f"percentiles must lie in [0, 100], got {self.low}, {self.high}")
        if self.subsample < 1:
            raise ValueError(f"subsample must be >= 1, got {self.subsample}")

    def window(self, counts: np.ndarray) -> tuple[float, float]:
        """Return the raw (lo, hi) window for one 16-bit frame; hi > lo always."""
        if self.mode == "fixed":
            return float(self.low), float(self.high)
        sample = counts[:: self.subsample, :: self.subsample]
        lo, hi = np.percentile(sample, (self.low, self.high))
        return float(lo), float(max(hi, lo + 1.0))


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a single-channel view/copy of ``image`` (HxW, HxWx1 or HxWx3 BGR).

    IR files are often stored as three equal channels; those are sliced, not converted, so the
    counts survive exactly (cvtColor would round through its luma weights).
    """
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        first = image[:, :, 0]
        if np.array_equal(first, image[:, :, 1]) and np.array_equal(first, image[:, :, 2]):
            return first
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    raise ImageShapeError(f"expected an HxW or HxWx3 image, got shape {image.shape}")


def thermal_to_unit(ir: np.ndarray, gain: GainControl | None = None) -> np.ndarray:
    """Map an IR frame (uint8 or uint16, any channel layout) to float32 HxW in [0, 1].

    >>> thermal_to_unit(np.array([[0, 255]], np.uint8)).tolist()
    [[0.0, 1.0]]
    """
    ir = to_gray(ir)
    if ir.dtype == np.uint8:
        return ir.astype(np.float32) * np.float32(1.0 / 255.0)
    if ir.dtype == np.uint16:
        lo, hi = (gain or GainControl()).window(ir)
        scale = np.float32(1.0 / (hi - lo))
        out = (ir.astype(np.float32) - np.float32(lo)) * scale
        return np.clip(out, 0.0, 1.0, out=out)
    if ir.dtype == np.float32:
        return np.clip(ir, 0.0, 1.0)
    raise ImageShapeError(f"IR must be uint8, uint16 or float32 in [0, 1], got {ir.dtype}")


def visible_to_ycrcb(visible: np.ndarray) -> np.ndarray:
    """Return the visible frame as uint8 HxWx3 in OpenCV's YCrCb order (BT.601, full range).

    Grey visible cameras get neutral chroma (128), so the fused output stays grey.
    """
    if visible.dtype != np.uint8:
        raise ImageShapeError(f"visible image must be uint8, got {visible.dtype}")
    if visible.ndim == 2 or (visible.ndim == 3 and visible.shape[2] == 1):
        y = visible.reshape(visible.shape[:2])
        neutral = np.full_like(y, 128)
        return cv2.merge((y, neutral, neutral))
    if visible.ndim == 3 and visible.shape[2] == 3:
        return cv2.cvtColor(visible, cv2.COLOR_BGR2YCrCb)
    raise ImageShapeError(f"expected an HxW or HxWx3 visible image, got shape {visible.shape}")


def warp_to_visible(ir: np.ndarray, homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp an IR frame into the visible camera's grid; ``size`` is the visible (width, height).

    Pixels that fall outside the IR field of view become 0 (cold), which the fusion net treats
    as "no thermal evidence" rather than as a hot edge.
    """
    h = np.asarray(homography, dtype=np.float64)
    if h.shape != (3, 3):
        raise ImageShapeError(f"homography must be 3x3, got shape {h.shape}")
    return cv2.warpPerspective(ir, h, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@dataclass(frozen=True)
class ResizeMapping:
    """Scale between source pixels (the visible frame) and network pixels.

    Boxes are (x1, y1, x2, y2) in pixel-edge coordinates, so a box covering the whole network
    input maps to one covering the whole source image.
    """

    source_size: tuple[int, int]  # (width, height) of the visible frame
    network_size: tuple[int, int]  # (width, height) the network runs at

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): source pixels per network pixel."""
        return (
            self.source_size[0] / self.network_size[0],
            self.source_size[1] / self.network_size[1],
        )

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map Nx4 network-pixel boxes to source pixels, clipped to the source image."""
        sx, sy = self.scale
        out = np.asarray(boxes, dtype=np.float32) * np.array([sx, sy, sx, sy], np.float32)
        w, h = self.source_size
        np.clip(out[:, 0::2], 0.0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, h, out=out[:, 1::2])
        return out

    def boxes_to_network(self, boxes: np.ndarray) -> np.ndarray:
        """Map Nx4 source-pixel boxes to network pixels (the inverse of ``boxes_to_source``)."""
        sx, sy = self.scale
        return np.asarray(boxes, dtype=np.float32) / np.array([sx, sy, sx, sy], np.float32)


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that turns a camera pair into network input.

    Args:
        network_size: (width, height) the network runs at, or None to keep the source size
            (training crops, dynamic-shape models). Both must be multiples of 32.
        gain: thermal gain control for 16-bit IR.
        homography: 3x3 matrix mapping IR pixels to visible pixels, or None when co-aligned.
    """

    network_size: tuple[int, int] | None = (640, 480)
    gain: GainControl = field(default_factory=GainControl)
    homography: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.network_size is not None and any(v <= 0 or v % 32 for v in self.network_size):
            raise ValueError(f"network_size must be positive multiples of 32, got {self.network_size}")
        if self.homography is not None and np.asarray(self.homography).shape != (3, 3):
            raise ValueError("homography must be a 3x3 matrix")


@dataclass(frozen=True)
class NetworkInput:
    """One prepared pair.

    Attributes:
        ir: float32 [1, 1, h, w] in [0, 1].
        visible: float32 [1, 3, h, w] in [0, 1], channels (Y, Cb, Cr).
        ycrcb: uint8 HxWx3 visible frame at source size (OpenCV YCrCb order), for colour restore.
        mapping: network <-> source pixel mapping.
    """

    ir: np.ndarray
    visible: np.ndarray
    ycrcb: np.ndarray
    mapping: ResizeMapping


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    shrinking = size[0] < image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def prepare_pair(ir: np.ndarray, visible: np.ndarray, config: PreprocessConfig) -> NetworkInput:
    """Turn an IR frame and a visible frame into network tensors.

    Raises:
        ImageShapeError: the frames differ in size and no homography registers them, or the
            source size is not a multiple of 32 while ``network_size`` is None.
    """
    vis_h, vis_w = visible.shape[:2]
    ir = to_gray(ir)
    if config.homography is None and ir.shape[:2] != (vis_h, vis_w):
        raise ImageShapeError(
            f"IR is {ir.shape[1]}x{ir.shape[0]} but visible is {vis_w}x{vis_h}; "
            "set a homography to register them"
        )
    net_size = config.network_size or (vis_w, vis_h)
    if net_size[0] % 32 or net_size[1] % 32:
        raise ImageShapeError(f"network input {net_size[0]}x{net_size[1]} is not a multiple of 32")
    ycrcb = visible_to_ycrcb(visible)
    # Gain on the IR frame as the camera sent it (a warped frame's empty border would drag a
    # percentile window down), then one warp straight into the network grid: the homography
    # followed by the visible -> network scale, so a small IR frame is never upsampled twice.
    ir_unit = thermal_to_unit(ir, config.gain)
    if config.homography is not None:
        to_network = np.diag([net_size[0] / vis_w, net_size[1] / vis_h, 1.0])
        ir_unit = warp_to_visible(ir_unit, to_network @ np.asarray(config.homography), net_size)
    else:
        ir_unit = _resize(ir_unit, net_size)
    ycc = _resize(ycrcb, net_size)
    vis = np.empty((1, 3, net_size[1], net_size[0]), np.float32)
    for dst, src in enumerate((0, 2, 1)):  # YCrCb -> (Y, Cb, Cr)
        np.multiply(ycc[:, :, src], np.float32(1.0 / 255.0), out=vis[0, dst], dtype=np.float32)
    return NetworkInput(
        ir=ir_unit[None, None],
        visible=vis,
        ycrcb=ycrcb,
        mapping=ResizeMapping((vis_w, vis_h), net_size),
    )


def unit_to_uint8(image: np.ndarray) -> np.ndarray:
    """Map float [0, 1] to uint8 [0, 255] with rounding (values outside are clipped)."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def fused_to_bgr(fused_y: np.ndarray, prepared: NetworkInput) -> np.ndarray:
    """Restore colour: fused Y (float [h, w] in [0, 1], network size) + source Cb/Cr -> BGR uint8."""
    y8 = _resize(unit_to_uint8(fused_y), prepared.mapping.source_size)
    ycrcb = prepared.ycrcb.copy()
    ycrcb[:, :, 0] = y8
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)
