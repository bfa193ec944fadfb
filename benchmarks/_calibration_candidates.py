"""The calibration method that lost the comparison, kept so the benchmark can reproduce it.

Candidate "per-pair ECC + median": the same coarse search as the shipped estimator, then
``cv2.findTransformECC`` (homography, coarse to fine) on each pair's gradient-magnitude maps alone,
and the per-corner median of the pairs' answers as the consensus. The shipped estimator
(``fusion_perception.calibration.estimate``) instead fits one homography to all pairs at once
(``joint.py``); docs/CALIBRATION.md has the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fusion_perception.calibration.features import edge_map, resize_to, to_unit
from fusion_perception.calibration.geometry import corners, normalize, rescale, size_guess, transform
from fusion_perception.calibration.search import coarse_search

__all__ = ["per_pair_ecc"]

LEVELS = ((160, 60), (320, 40), (640, 25))  # (visible width, iterations), coarse to fine


def _ecc_pair(ir: np.ndarray, vis: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """One pair, coarse to fine; None when ECC does not converge at some level."""
    h = normalize(start)
    vw = vis.shape[1]
    levels = [(w / vw, it) for w, it in LEVELS if w < vw] + [(1.0, LEVELS[-1][1])]
    for b, iterations in levels:
        a = min(1.0, b * float(np.sqrt(abs(np.linalg.det(h[:2, :2])))))
        tmpl = edge_map(resize_to(ir, a), 1.0)
        inp = edge_map(resize_to(vis, b), 1.0)
        a_true, b_true = tmpl.shape[1] / ir.shape[1], inp.shape[1] / vw
        warp = rescale(a_true, b_true, h).astype(np.float32)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, 1e-5)
        try:
            _, warp = cv2.findTransformECC(tmpl, inp, warp, cv2.MOTION_HOMOGRAPHY, criteria, None, 3)
        except cv2.error:
            return None
        h = rescale(1 / a_true, 1 / b_true, warp.astype(np.float64))
    return h


def per_pair_ecc(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """IR -> visible homography of ``pairs``: per-pair ECC, per-corner median (the losing candidate)."""
    irs = [to_unit(i) for i, _ in pairs]
    viss = [to_unit(v) for _, v in pairs]
    ir_size = (irs[0].shape[1], irs[0].shape[0])
    vis_size = (viss[0].shape[1], viss[0].shape[0])
    start = coarse_search(irs, viss, size_guess(ir_size, vis_size))[0].h
    answers = [h for h in (_ecc_pair(i, v, start) for i, v in zip(irs, viss, strict=True)) if h is not None]
    if not answers:
        return start
    c = corners(ir_size)
    median = np.median([transform(h, c) for h in answers], axis=0)
    return normalize(cv2.getPerspectiveTransform(c.astype(np.float32), median.astype(np.float32)))
