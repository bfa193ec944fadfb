"""A cheap alignment-quality score of one IR frame already warped into the visible grid.

Used by ``calibrate`` (before/after, per pair) and available to the node (an absolute score, next
to the relative peak test of ``monitor.py``), so it is numpy + OpenCV only and costs about a
millisecond at 640x480 (docs/CALIBRATION.md has the timing and the values measured on MSRS).

Definition: both frames are shrunk to 1/``decimate`` size (area averaging), their gradient
magnitudes are taken after a 1-pixel blur, divided by their local mean (so dim and bright parts of
the frame count alike; the same edge features the estimator uses), and the score is the normalised
cross-correlation of the two magnitude maps over the pixels the IR frame covers, clipped to
[0, 1]. Edges that coincide raise it; a misalignment of a few pixels at 1/4 size (10 px at full
size) moves every edge off its partner and drops it towards the level of unrelated images.
Absolute values depend on the scene (how many edges the two cameras share), so compare a rig with
itself: the same scene before/after, or a running value against the one measured at calibration.
"""

from __future__ import annotations

import cv2
import numpy as np

from .features import edge_map, to_unit

__all__ = ["alignment_score"]


def alignment_score(
    ir_in_visible_grid: np.ndarray,
    visible: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    decimate: int = 4,
) -> float:
    """Edge agreement of a warped IR frame and the visible frame, in [0, 1] (higher = better aligned).

    Args:
        ir_in_visible_grid: IR frame in the visible pixel grid (e.g. ``warp_to_visible`` output),
            uint8 (uint16 goes through the default gain control), same height and width as ``visible``.
        visible: visible frame, grey or BGR uint8.
        valid: optional mask (nonzero = covered by the IR frame). Default: the IR pixels that are
            not exactly 0, since ``warp_to_visible`` fills what it does not cover with 0; without
            that, the border of the IR footprint would count as an edge the visible frame lacks.
        decimate: shrink factor before comparing (4: ~1 ms at 640x480).

    Returns:
        0.0 when fewer than 64 covered pixels remain or either frame is flat there.
    """
    if ir_in_visible_grid.shape[:2] != visible.shape[:2]:
        raise ValueError(
            f"IR {ir_in_visible_grid.shape[:2]} and visible {visible.shape[:2]} must share the pixel grid"
        )
    h, w = visible.shape[:2]
    size = (max(8, w // decimate), max(8, h // decimate))
    ir = cv2.resize(to_unit(ir_in_visible_grid), size, interpolation=cv2.INTER_AREA)
    vis = cv2.resize(to_unit(visible), size, interpolation=cv2.INTER_AREA)
    mask_full = (ir_in_visible_grid if ir_in_visible_grid.ndim == 2 else ir_in_visible_grid[..., 0]) > 0
    if valid is not None:
        mask_full = np.asarray(valid).astype(bool)
    mask = cv2.resize(mask_full.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
    if mask.sum() < 64:
        return 0.0
    local = 0.025 * size[0]
    a = edge_map(ir, 1.0, local)[mask]
    b = edge_map(vis, 1.0, local)[mask]
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a @ a) * (b @ b)))
    if denom < 1e-12:
        return 0.0
    return float(np.clip((a @ b) / denom, 0.0, 1.0))
