"""The coarse start: scale and shift of the IR frame inside the visible frame, pooled over pairs.

The joint fit (``joint.py``) converges only from within a few pixels at its coarsest level, but a
rig's IR field of view may be 30 % narrower than the size-based guess assumes, and off-centre. So
first a global search at low resolution (visible frame ``level_width`` px wide): for each IR scale
on a geometric grid, the IR edge map resized to that scale is slid over the visible edge map
(``cv2.matchTemplate``, normalised correlation), and the correlation maps of all pairs are
**summed**: a pair with little shared structure adds a flat map, the pairs that agree add their
peaks at the same shift.

Scales are compared by ``NCC * sqrt(template area / frame area)``, not by NCC alone: a smaller
template has fewer independent samples, so its best chance correlation is higher and plain NCC
always prefers the smallest scale tried (measured: monotonic over 0.5-1.5 on the shipped samples);
the square-root factor makes it a significance-like score. The few best local maxima over scale are
returned, each refined on a finer scale grid, and the caller keeps the one its refinement fits best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .features import edge_map, resize_to
from .geometry import parabola_vertex

__all__ = ["SearchResult", "coarse_search"]

LOCAL_FRACTION = 0.025  # contrast normalisation window, fraction of the width (as in joint.py)


@dataclass(frozen=True)
class SearchResult:
    """One start: ``h`` (IR -> visible, full-resolution pixels, a similarity) and its pooled score."""

    h: np.ndarray
    score: float
    scale: float  # visible pixels per IR pixel


def _peak(total: np.ndarray) -> tuple[float, float, float]:
    """(value, x, y) of the maximum, with a parabolic sub-pixel position."""
    _, peak, _, (x, y) = cv2.minMaxLoc(total)
    dx = parabola_vertex(*total[y, x - 1:x + 2]) if 0 < x < total.shape[1] - 1 else 0.0
    dy = parabola_vertex(*total[y - 1:y + 2, x]) if 0 < y < total.shape[0] - 1 else 0.0
    return float(peak), x + dx, y + dy


def _score_scale(
    ir_units: Sequence[np.ndarray], vis_edges: Sequence[np.ndarray], b: float, scale: float
) -> tuple[float, float, float] | None:
    """(score, tx, ty) in level pixels for one IR scale (visible px per IR px), or None if no fit."""
    f = scale * b  # IR pixel -> level pixel
    local = LOCAL_FRACTION * vis_edges[0].shape[1]
    total = None
    crop = (0, 0)
    area = 0.0
    for ir, vis in zip(ir_units, vis_edges, strict=True):
        tmpl = edge_map(resize_to(ir, f), 1.0, local)
        vh, vw = vis.shape
        th, tw = tmpl.shape
        # an IR footprint wider than the visible frame: match its centre part
        cy, cx = max(0, (th - vh) // 2 + 2), max(0, (tw - vw) // 2 + 2)
        tmpl = tmpl[cy : th - cy, cx : tw - cx]
        crop = (cx, cy)
        if tmpl.shape[0] < 8 or tmpl.shape[1] < 8 or float(tmpl.std()) < 1e-6:
            return None
        area = tmpl.size / vis.size
        ncc = cv2.matchTemplate(vis, tmpl, cv2.TM_CCOEFF_NORMED)
        total = ncc if total is None else total + ncc
    if total is None:
        return None
    peak, x, y = _peak(total)
    return peak / len(ir_units) * float(np.sqrt(area)), x - crop[0], y - crop[1]


def _to_full(scale: float, b: float, x: float, y: float) -> np.ndarray:
    f = scale * b
    # template pixel 0 at level (x, y): IR pixel u -> level f (u + 0.5) - 0.5 + (x, y)
    level = np.array([[f, 0.0, x + 0.5 * f - 0.5], [0.0, f, y + 0.5 * f - 0.5], [0.0, 0.0, 1.0]])
    to_full = np.array([[1 / b, 0, 0.5 / b - 0.5], [0, 1 / b, 0.5 / b - 0.5], [0, 0, 1]])
    return to_full @ level


def coarse_search(
    ir_units: Sequence[np.ndarray],
    vis_units: Sequence[np.ndarray],
    start: np.ndarray,
    *,
    scale_range: tuple[float, float] = (0.5, 1.5),
    level_width: int = 128,
    steps: int = 20,
    candidates: int = 3,
) -> list[SearchResult]:
    """The best ``candidates`` similarity starts around ``start`` (e.g. ``geometry.size_guess``), best first.

    Args:
        ir_units, vis_units: the pairs as float [0, 1] frames (all IR frames one size, all visible
            frames one size).
        scale_range: IR scales tried, relative to ``start``'s scale.
        level_width: width of the visible frame during the search.
        steps: scales on the coarse grid (geometric); each kept maximum is refined on 5 more.
    """
    vw = vis_units[0].shape[1]
    b = min(1.0, level_width / vw)
    vis_small = [resize_to(v, b) for v in vis_units]
    local = LOCAL_FRACTION * vis_small[0].shape[1]
    vis_edges = [edge_map(v, 1.0, local) for v in vis_small]
    s0 = float(np.sqrt(abs(np.linalg.det(np.asarray(start)[:2, :2]))))
    grid = s0 * np.exp(np.linspace(np.log(scale_range[0]), np.log(scale_range[1]), steps))
    step = np.log(scale_range[1] / scale_range[0]) / (steps - 1)
    scored = [(_score_scale(ir_units, vis_edges, b, s), s) for s in grid]
    values = np.array([r[0] if r else -np.inf for r, _ in scored])
    last = len(values) - 1
    maxima = [k for k in range(len(values)) if np.isfinite(values[k])
              and (k == 0 or values[k] >= values[k - 1]) and (k == last or values[k] >= values[k + 1])]
    maxima = sorted(maxima, key=lambda k: -values[k])[:candidates]
    out = []
    for k in maxima:
        best = (values[k], grid[k], scored[k][0][1], scored[k][0][2])
        for s in grid[k] * np.exp(np.linspace(-step, step, 5)):
            got = _score_scale(ir_units, vis_edges, b, s)
            if got is not None and got[0] > best[0]:
                best = (got[0], s, got[1], got[2])
        out.append(SearchResult(_to_full(best[1], b, best[2], best[3]), float(best[0]), float(best[1])))
    if not out:
        out.append(SearchResult(np.asarray(start, np.float64), 0.0, s0))
    return sorted(out, key=lambda r: -r.score)
