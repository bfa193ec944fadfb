"""The node's online registration check: a camera knocked on its mount becomes a WARN in /diagnostics.

With a ``homography`` set, the inference worker hands every ``alignment_check_period_s`` one pair
it has processed to :meth:`AlignmentWatch.maybe_check`; the image work is
:mod:`fusion_perception.calibration.monitor` (is the calibrated homography still the best alignment
nearby?). Pure Python, no rclpy: the node reads :meth:`values` and :meth:`health` for its status.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..calibration.monitor import AlignmentCheck, AlignmentMonitor, alignment_surface
from .diagnostics import OK, WARN
from .params import NodeSettings

__all__ = ["AlignmentWatch"]


class AlignmentWatch:
    """Rate-limited alignment checks and their verdict (thread-safe: worker writes, timer reads).

    Args:
        period_s: seconds between checks (0 = never).
        warn_px: offset of the agreement peak, in visible pixels, that makes the status WARN.
        window: checks averaged for the verdict (see ``AlignmentMonitor``).
    """

    def __init__(self, period_s: float, warn_px: float, window: int = 5) -> None:
        self.period_s, self.warn_px = period_s, warn_px
        self._monitor = AlignmentMonitor(window)
        self._lock = threading.Lock()
        self._last_check = -float("inf")
        self._latest: AlignmentCheck | None = None
        self._checks = 0

    def due(self, now: float) -> bool:
        return self.period_s > 0 and now - self._last_check >= self.period_s

    def maybe_check(self, ir: np.ndarray, visible: np.ndarray, settings: NodeSettings) -> None:
        """Check one processed pair when a check is due and a homography is set (worker thread)."""
        now = time.monotonic()
        if settings.homography is None or not self.due(now):
            return
        self._last_check = now
        scores, factor = alignment_surface(ir, visible, np.asarray(settings.homography), gain=settings.gain)
        with self._lock:
            self._latest = self._monitor.add(scores, factor)
            self._checks += 1

    def reset(self) -> None:
        """Forget past checks (a new homography was set: the old surfaces describe another one)."""
        with self._lock:
            self._monitor.clear()
            self._latest, self._checks, self._last_check = None, 0, -float("inf")

    def values(self) -> list[tuple[str, str]]:
        """Key/values for /diagnostics ("nan" before the first check)."""
        with self._lock:
            latest, checks = self._latest, self._checks
        if latest is None:
            return [("alignment_checks", "0")]
        return [
            ("alignment_checks", str(checks)),
            ("alignment_score", f"{latest.score:.3f}"),
            ("alignment_best_score", f"{latest.best_score:.3f}"),
            ("alignment_offset_x_px", f"{latest.offset_px[0]:.1f}"),
            ("alignment_offset_y_px", f"{latest.offset_px[1]:.1f}"),
        ]

    def health(self) -> tuple[int, str]:
        """(WARN, why) when the IR content sits ``warn_px`` or more away from the visible content."""
        with self._lock:
            latest = self._latest
        if latest is None or not latest.misaligned(self.warn_px):
            return OK, ""
        dx, dy = latest.offset_px
        return WARN, (f"IR/visible misregistered by ({dx:+.0f}, {dy:+.0f}) px (edge agreement "
                      f"{latest.score:.2f} at the homography, {latest.best_score:.2f} shifted): a camera "
                      f"may have moved on its mount; recalibrate with `fusion-perception calibrate`")
