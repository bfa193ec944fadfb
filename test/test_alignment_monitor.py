"""The online registration check on the bundled MSRS pairs (registered by the dataset's authors)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fusion_perception.assets import load_sample_pairs
from fusion_perception.calibration.monitor import AlignmentMonitor, alignment_surface, peak

IDENTITY = np.eye(3)


def _monitor(shift: tuple[float, float] = (0.0, 0.0), ir_size: tuple[int, int] | None = None):
    """Mean verdict over the six pairs, with the IR content moved by ``shift`` visible pixels and,
    with ``ir_size``, delivered by a smaller thermal camera (and the matching homography)."""
    monitor, verdict = AlignmentMonitor(window=6), None
    for _, ir, vi in load_sample_pairs():
        ir = cv2.warpAffine(ir, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (640, 480))
        homography = IDENTITY
        if ir_size is not None:
            sx, sy = 640 / ir_size[0], 480 / ir_size[1]
            ir = cv2.resize(ir, ir_size, interpolation=cv2.INTER_AREA).astype(np.uint16) * 64
            homography = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]])
        verdict = monitor.add(*alignment_surface(ir, vi, homography))
    return verdict


def test_registered_pairs_peak_at_the_homography() -> None:
    verdict = _monitor()
    assert verdict.offset_norm_px < 5.0 and not verdict.misaligned(warn_px=8.0)


@pytest.mark.parametrize("ir_size", [None, (320, 256)])
def test_a_knocked_camera_moves_the_peak_by_its_offset(ir_size) -> None:
    verdict = _monitor((12.0, -6.0), ir_size)
    assert verdict.misaligned(warn_px=8.0), verdict
    assert 8.0 < verdict.offset_px[0] < 16.0 and -10.0 < verdict.offset_px[1] < 0.0, verdict
    assert verdict.best_score - verdict.score > 0.05


def test_a_flat_scene_never_warns() -> None:
    flat_ir, flat_vi = np.full((480, 640), 90, np.uint8), np.full((480, 640, 3), 120, np.uint8)
    scores, factor = alignment_surface(flat_ir, flat_vi, IDENTITY)
    verdict = peak(scores, factor)
    assert not verdict.misaligned(warn_px=8.0)


def test_no_shared_area_gives_nan_not_a_verdict() -> None:
    _, ir, vi = next(load_sample_pairs(1))
    far_away = np.array([[1.0, 0, 5000.0], [0, 1.0, 0], [0, 0, 1.0]])
    scores, factor = alignment_surface(ir, vi, far_away)
    verdict = peak(scores, factor)
    assert np.isnan(verdict.score) and not verdict.misaligned(warn_px=8.0)
