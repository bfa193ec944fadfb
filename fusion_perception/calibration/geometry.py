"""Homography helpers: the size-based guess, grid changes, corner error, overlap and sanity checks.

Convention (the one of ``preprocessing.warp_to_visible`` and of the node's ``homography``
parameter): ``H`` maps IR pixel coordinates to visible pixel coordinates, pixel centres at integer
coordinates (OpenCV's), normalised so ``H[2, 2] == 1``. Sizes are (width, height).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "corner_error",
    "corners",
    "is_convex_quad",
    "normalize",
    "overlap",
    "rescale",
    "size_guess",
    "transform",
]


def normalize(h: np.ndarray) -> np.ndarray:
    """``h`` as float64 with ``h[2, 2] = 1`` (the node rejects h33 = 0; scale is meaningless)."""
    h = np.asarray(h, np.float64)
    return h / h[2, 2]


def size_guess(ir_size: tuple[int, int], visible_size: tuple[int, int]) -> np.ndarray:
    """IR scaled by the width ratio and centred on the visible frame.

    What a rig with parallel optical axes and similar fields of view looks like, so it is the
    starting point of the search and the "before" of the report (identity for equal sizes).
    """
    s = visible_size[0] / ir_size[0]
    # pixel centres: visible x + 0.5 = s (IR x + 0.5) about the centre of each frame
    tx = (visible_size[0] - s * ir_size[0]) / 2.0 + 0.5 * (s - 1.0)
    ty = (visible_size[1] - s * ir_size[1]) / 2.0 + 0.5 * (s - 1.0)
    return np.array([[s, 0.0, tx], [0.0, s, ty], [0.0, 0.0, 1.0]])


def rescale(factor_ir: float, factor_visible: float, h: np.ndarray) -> np.ndarray:
    """``h`` expressed between grids resized by ``factor_ir`` and ``factor_visible``.

    Resizing by f maps a pixel centre x to f (x + 0.5) - 0.5 (cv2.resize's convention).
    """

    def scaling(f: float) -> np.ndarray:
        return np.array([[f, 0.0, 0.5 * f - 0.5], [0.0, f, 0.5 * f - 0.5], [0.0, 0.0, 1.0]])

    return normalize(scaling(factor_visible) @ h @ np.linalg.inv(scaling(factor_ir)))


def corners(size: tuple[int, int]) -> np.ndarray:
    """The four outer corners (pixel edges) of a frame, clockwise from top left, 4x2."""
    w, h = size
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]], np.float64)


def transform(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``h`` to Nx2 points."""
    p = np.asarray(points, np.float64)
    q = np.c_[p, np.ones(len(p))] @ np.asarray(h, np.float64).T
    return q[:, :2] / q[:, 2:3]


def corner_error(h_est: np.ndarray, h_true: np.ndarray, ir_size: tuple[int, int]) -> float:
    """Mean distance, in visible pixels, between the IR frame's corners mapped by both homographies.

    The usual "average corner error" of homography estimation: it weighs every part of the IR
    frame, so a small rotation error is not hidden by a good centre.
    """
    c = corners(ir_size)
    return float(np.linalg.norm(transform(h_est, c) - transform(h_true, c), axis=1).mean())


def is_convex_quad(quad: np.ndarray) -> bool:
    """True when the 4x2 polygon is convex and keeps the clockwise order (no fold, no mirror)."""
    q = np.asarray(quad, np.float64)
    edges = np.roll(q, -1, axis=0) - q
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    return bool(np.all(cross > 0))  # image axes: y down, so clockwise on screen is positive


def overlap(
    h: np.ndarray, ir_size: tuple[int, int], visible_size: tuple[int, int]
) -> tuple[float, np.ndarray]:
    """(fraction of the visible frame covered by the warped IR frame, that region's polygon Nx2).

    The polygon is the warped IR frame clipped to the visible frame; empty (0x2) when they miss.
    """
    quad = transform(h, corners(ir_size)).astype(np.float32)
    frame = corners(visible_size).astype(np.float32)
    if not is_convex_quad(quad):
        return 0.0, np.zeros((0, 2))
    area, poly = cv2.intersectConvexConvex(quad, frame)
    if poly is None or area <= 0:
        return 0.0, np.zeros((0, 2))
    return float(area) / (visible_size[0] * visible_size[1]), poly.reshape(-1, 2).astype(np.float64)


def parabola_vertex(left: float, centre: float, right: float) -> float:
    """Offset of the vertex of the parabola through three equally spaced samples around a maximum,
    in [-0.5, 0.5] (0 where they are not curved downwards): the sub-pixel position of a peak."""
    curvature = left - 2 * centre + right
    if not np.isfinite(curvature) or curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
