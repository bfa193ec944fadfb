"""The images the teacher is run on: IR, visible and simple fusions of the two, uint8 as published.

One function for the judge (:mod:`.judge`) and the labeller (:mod:`.labels`), so both score exactly
the same average and max fusion baselines.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..preprocessing import to_gray, visible_to_ycrcb

__all__ = ["judge_inputs"]


def judge_inputs(
    ir: np.ndarray, visible_bgr: np.ndarray, fused_bgr: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The images the judge scores, uint8 at the visible frame's size.

    Args:
        ir: 8-bit IR registered to the visible frame (HxW, or 3 equal channels).
        visible_bgr: the visible frame, HxWx3 BGR uint8.
        fused_bgr: the model's published fused image, or None when there is none to score.

    Returns:
        ``fused`` (when given), ``ir`` (grey), ``visible``, and ``average`` / ``max`` fusion of IR
        with the visible Y channel, colour restored from the visible Cr/Cb (BT.601), rounded to uint8.
    """
    grey = to_gray(ir)
    if grey.dtype != np.uint8 or grey.shape != visible_bgr.shape[:2]:
        raise ValueError(
            f"IR must be uint8 at the visible size {visible_bgr.shape[:2]}, got {grey.shape} {grey.dtype}"
        )
    ycrcb = visible_to_ycrcb(visible_bgr)
    y = ycrcb[:, :, 0]
    out: dict[str, np.ndarray] = {} if fused_bgr is None else {"fused": fused_bgr}
    out["ir"], out["visible"] = grey, visible_bgr
    average = ((grey.astype(np.uint16) + y + 1) // 2).astype(np.uint8)  # round half up
    for name, plane in (("average", average), ("max", np.maximum(grey, y))):
        merged = ycrcb.copy()
        merged[:, :, 0] = plane
        out[name] = cv2.cvtColor(merged, cv2.COLOR_YCrCb2BGR)
    return out
