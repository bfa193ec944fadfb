"""Known-answer rigs made from registered pairs: the benchmark's and the tests' ground truth.

Registered datasets (MSRS, RoadScene, TNO, LLVIP) share one pixel grid between IR and visible.
A rig is imitated by re-sampling the IR image through a chosen homography ``H`` (IR canvas pixel ->
visible pixel) into an IR canvas of another size (320x256, 640x512, ...), so ``H`` is exactly the
answer :func:`~fusion_perception.calibration.estimate.estimate_homography` should return. The
random ``H`` keeps the IR footprint inside the visible frame: outside it there is no IR data, and
a black border would add an edge that no real thermal camera has.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..preprocessing import to_gray
from .geometry import corners

__all__ = ["RigSpec", "make_ir", "random_homography"]


@dataclass(frozen=True)
class RigSpec:
    """Ranges of the random IR->visible homography.

    Args:
        width_fraction: (min, max) width of the IR footprint as a fraction of the visible width.
        rotation_deg: largest |roll| between the cameras.
        shift_fraction: largest centre offset, as a fraction of the visible width/height (also
            limited by keeping the footprint inside the frame).
        perspective_fraction: largest independent move of each footprint corner, as a fraction
            of the visible width (a small tilt between the optical axes).
    """

    width_fraction: tuple[float, float] = (0.7, 0.95)
    rotation_deg: float = 4.0
    shift_fraction: float = 0.06
    perspective_fraction: float = 0.015


def random_homography(
    rng: np.random.Generator,
    ir_size: tuple[int, int],
    visible_size: tuple[int, int],
    spec: RigSpec | None = None,
) -> np.ndarray:
    """A random IR->visible homography whose IR footprint lies inside the visible frame."""
    spec = spec or RigSpec()
    vw, vh = visible_size
    src = corners(ir_size)
    for _ in range(1000):
        width = rng.uniform(*spec.width_fraction) * vw
        height = width * ir_size[1] / ir_size[0]
        if height > 0.98 * vh:  # a 5:4 IR footprint on a 4:3 frame: limit by height too
            height = rng.uniform(0.85, 0.98) * vh
            width = height * ir_size[0] / ir_size[1]
        theta = np.deg2rad(rng.uniform(-spec.rotation_deg, spec.rotation_deg))
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * [width / 2, height / 2]
        centre = np.array([vw / 2, vh / 2]) + rng.uniform(-1, 1, 2) * spec.shift_fraction * np.array([vw, vh])
        dst = half @ rot.T + centre + rng.uniform(-1, 1, (4, 2)) * spec.perspective_fraction * vw
        inside = (dst[:, 0] >= -0.5) & (dst[:, 0] <= vw - 0.5) & (dst[:, 1] >= -0.5) & (dst[:, 1] <= vh - 0.5)
        if inside.all():
            h = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
            return h / h[2, 2]
    raise ValueError(f"no IR footprint of {spec} fits a {vw}x{vh} frame")


def make_ir(ir_in_visible_grid: np.ndarray, h: np.ndarray, ir_size: tuple[int, int]) -> np.ndarray:
    """The IR frame a camera with IR->visible homography ``h`` and size ``ir_size`` would see.

    ``ir_in_visible_grid`` is a registered IR image in the visible pixel grid (8 or 16 bit). It is
    blurred in proportion to the down-sampling first (a sensor integrates over its pixel; plain
    bilinear sampling would alias fine texture into edges that the visible image does not have).
    """
    src = to_gray(ir_in_visible_grid)
    scale = np.sqrt(abs(np.linalg.det(np.asarray(h)[:2, :2])))  # visible pixels per IR pixel
    if scale > 1.2:
        sigma = 0.5 * np.sqrt(scale**2 - 1.0)
        src = cv2.GaussianBlur(src, (0, 0), sigma)
    return cv2.warpPerspective(
        src, np.asarray(h, np.float64), ir_size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
