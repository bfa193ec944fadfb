"""Online check of the IR -> visible registration: has a camera moved since calibration?

The node runs this every few seconds on one processed pair (docs/ROBOT.md, "Registration"). An
absolute edge-agreement score cannot tell by itself: a foggy or empty scene scores low however well
the cameras are registered. The check therefore asks a relative question that the scene cannot
fake: is the calibrated homography the *best* alignment nearby? It compares the edges of the warped
IR frame with the visible frame's edges at the calibrated position and at small shifts around it.
A camera knocked on its mount moves the peak away from zero; the offset of the peak says by how
much and in which direction. Rotations and zooms show up as a shift of the peak as well, only less
cleanly, which is enough for a warning.

Everything runs on copies decimated to ``width`` pixels (160 by default: 5-9 ms per check on one
core), and edges within a few pixels of the IR field of view's border are ignored (the border
itself is a strong artificial edge). One pair's agreement surface is noisy; :class:`AlignmentMonitor`
judges the mean over the last few checks. Measured on the six bundled MSRS pairs (registered by
the dataset's authors): single-pair peaks within 5 px of zero, gains over the calibrated position
at most 0.03; with the IR shifted by (10, -6) px the calibrated position lost 0.03-0.15 of
agreement on every pair and the peaks moved 8-12 px right.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from ..preprocessing import GainControl, warp_to_visible
from .features import edge_map, to_unit
from .geometry import parabola_vertex

__all__ = ["AlignmentCheck", "AlignmentMonitor", "alignment_surface", "peak"]


@dataclass(frozen=True)
class AlignmentCheck:
    """One check.

    Attributes:
        score: edge agreement (normalised cross-correlation of gradient magnitudes, -1..1) at the
            calibrated homography; NaN when the frames share no usable area.
        best_score: the highest agreement among the shifts tried.
        offset_px: (dx, dy) visible pixels by which the IR content lies away from the visible
            content (where the peak is; sub-pixel by a parabola through its neighbours); (0, 0)
            when the calibration still holds.
    """

    score: float
    best_score: float
    offset_px: tuple[float, float]

    @property
    def offset_norm_px(self) -> float:
        return float(np.hypot(*self.offset_px))

    def misaligned(self, warn_px: float, min_gain: float = 0.02) -> bool:
        """True when the peak lies at least ``warn_px`` away and beats the calibrated position by
        ``min_gain`` (a flat agreement surface, e.g. an empty scene, never warns)."""
        return self.offset_norm_px >= warn_px and self.best_score - self.score >= min_gain


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-12 else float("nan")


def alignment_surface(
    ir: np.ndarray,
    visible: np.ndarray,
    homography: np.ndarray,
    *,
    gain: GainControl | None = None,
    width: int = 160,
    max_shift: int = 4,
) -> tuple[np.ndarray, float]:
    """Edge agreement of ``ir`` warped by ``homography`` with ``visible`` at shifts around it.

    Args:
        ir: the IR frame as the camera sent it (uint8 or uint16, any size).
        visible: the visible frame (uint8 grey or BGR).
        homography: 3x3, IR pixels -> visible pixels (the node's ``homography``).
        gain: gain control for 16-bit IR (the node's).
        width: width of the decimated copies the check runs on.
        max_shift: shifts tried in each direction, in decimated pixels (``max_shift * vis_width /
            width`` visible pixels: +-16 px at 640 wide with the defaults).

    Returns:
        ``(scores, factor)``: scores[max_shift + dy, max_shift + dx] is the agreement when the IR
        content is taken to lie (dx, dy) decimated pixels away from the visible content (NaN where
        undefined); ``factor`` is decimated pixels per visible pixel.
    """
    vis_h, vis_w = visible.shape[:2]
    factor = width / vis_w
    small = (width, max(8, round(vis_h * factor)))
    to_small = np.diag([factor, factor, 1.0]) @ np.asarray(homography, np.float64)
    ir_small = warp_to_visible(to_unit(ir, gain), to_small, small)
    vis_small = cv2.resize(to_unit(visible), small, interpolation=cv2.INTER_AREA)
    covered = warp_to_visible(np.ones(ir.shape[:2], np.uint8), to_small, small)
    margin = max_shift + 3
    valid = cv2.erode(covered, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    valid[:margin], valid[-margin:], valid[:, :margin], valid[:, -margin:] = False, False, False, False
    n = 2 * max_shift + 1
    scores = np.full((n, n), np.nan)
    if valid.sum() < 64:
        return scores, factor
    # local contrast normalisation: a dim night-time visible frame contributes edges as a bright one
    e_ir, e_vis = edge_map(ir_small, local_sigma=4.0), edge_map(vis_small, local_sigma=4.0)
    target = e_vis[valid]
    for iy, dy in enumerate(range(-max_shift, max_shift + 1)):
        for ix, dx in enumerate(range(-max_shift, max_shift + 1)):
            scores[iy, ix] = _ncc(np.roll(e_ir, (-dy, -dx), axis=(0, 1))[valid], target)
    return scores, factor


def peak(scores: np.ndarray, factor: float) -> AlignmentCheck:
    """The check's verdict from an agreement surface (one pair's, or the mean over several)."""
    n = scores.shape[0]
    centre = n // 2
    if np.isnan(scores).all():
        return AlignmentCheck(float("nan"), float("nan"), (0.0, 0.0))
    iy, ix = np.unravel_index(np.nanargmax(scores), scores.shape)
    fx = parabola_vertex(scores[iy, ix - 1], scores[iy, ix], scores[iy, ix + 1]) if 0 < ix < n - 1 else 0.0
    fy = parabola_vertex(scores[iy - 1, ix], scores[iy, ix], scores[iy + 1, ix]) if 0 < iy < n - 1 else 0.0
    offset = ((ix - centre + fx) / factor, (iy - centre + fy) / factor)
    return AlignmentCheck(float(scores[centre, centre]), float(scores[iy, ix]), offset)


class AlignmentMonitor:
    """Keeps the agreement surfaces of the last ``window`` checks and judges their mean.

    One pair's surface is noisy (a pair with little shared structure can peak a few pixels off);
    the mean over several pairs, seconds apart, peaks where the cameras really are.
    """

    def __init__(self, window: int = 5) -> None:
        self._surfaces: deque[np.ndarray] = deque(maxlen=window)
        self._factor = 1.0

    def add(self, scores: np.ndarray, factor: float) -> AlignmentCheck:
        """Add one check's surface; returns the verdict of the mean surface."""
        if self._surfaces and (self._surfaces[0].shape != scores.shape or factor != self._factor):
            self._surfaces.clear()  # frame size or settings changed: the old surfaces do not compare
        self._surfaces.append(scores)
        self._factor = factor
        with warnings.catch_warnings():  # a shift undefined in every surface stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return peak(np.nanmean(np.stack(self._surfaces), axis=0), factor)

    def clear(self) -> None:
        self._surfaces.clear()
