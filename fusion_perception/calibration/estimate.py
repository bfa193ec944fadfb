"""``estimate_homography``: the IR -> visible homography of a rig, from pairs of its frames.

Steps (the measurements behind each are in docs/CALIBRATION.md):

1. **Frames to [0, 1]**: 16-bit radiometric IR through the node's gain control, so calibration sees
   what the node sees; frames larger than ``working_width`` are shrunk (the answer is scaled back).
2. **Structure check**: pairs whose IR or visible frame is flat (lens cap, fog, a wall) carry no
   geometry and are left out; too few left is the verdict ``no_structure``.
3. **Coarse search** (``search.py``): scale and shift of the IR frame in the visible frame, from the
   size-based guess, by normalised correlation of edge maps summed over pairs.
4. **Joint refinement** (``joint.py``): one homography for all pairs, coarse to fine, similarity ->
   affine -> homography. A mean edge correlation below ``min_ncc`` means the cameras share no
   edges (unrelated streams, one camera dark): ``no_structure``.
5. **Consistency**: each pair alone is searched exhaustively for the shift that best aligns its
   edges given the joint answer (``_pair_offset``); the size of that shift, in visible pixels, is
   the pair's *deviation*. A rig seen at one depth range gives small deviations; parallax (near
   objects in some pairs, far in others) or pairs from different rigs give large ones. If fewer
   than ``min_agreement`` of the informative pairs (own edge correlation >= ``pair_min_ncc``) lie
   within ``consistency_fraction`` of the frame diagonal: ``inconsistent``. Otherwise the outliers
   are dropped and the joint fit is repeated on the rest.
6. **Sanity** of the result: finite, no mirror or fold, not near-singular, and covering at least
   ``min_overlap`` of the visible frame; else ``degenerate``.

Every verdict is a :class:`~fusion_perception.errors.CalibrationError` with a one-word ``reason``.
NumPy + OpenCV only (no torch, no rclpy): the node may import it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from ..errors import CalibrationError, ImageShapeError
from ..preprocessing import GainControl, unit_to_uint8, warp_to_visible
from .features import edge_map, resize_to, structure, to_unit
from .geometry import corners, is_convex_quad, normalize, overlap, rescale, size_guess, transform
from .joint import JointSettings, refine_joint
from .score import alignment_score
from .search import LOCAL_FRACTION, SearchResult, coarse_search

__all__ = ["CalibrationOptions", "CalibrationResult", "PairResult", "estimate_homography"]


@dataclass(frozen=True)
class CalibrationOptions:
    """Thresholds of the verdicts and settings of the search; defaults measured in docs/CALIBRATION.md.

    Args:
        min_pairs: fewest usable pairs (with structure, and agreeing) that may give an answer.
        max_pairs: most pairs used (evenly spread over those with structure); time grows about
            linearly with them (8 pairs 2.3 s, 24 pairs 10 s at 640x480 on one core).
        min_structure: ``features.structure`` below this (either frame) = flat pair. Real frames
            measured 0.004-0.03; a flat frame with sensor noise of 8 grey levels 0.0014.
        min_ncc: mean edge correlation at the answer below this = no shared structure (unrelated
            streams measured 0.01, MSRS pairs 0.1-0.4).
        pair_min_ncc: a pair whose own correlation is below this has no say in the consistency vote.
        consistency_fraction: largest deviation of an agreeing pair, as a fraction of the visible
            frame's diagonal (0.02 = 16 px at 640x480).
        min_agreement: fraction of informative pairs that must agree.
        min_overlap: fraction of the visible frame the warped IR frame must cover.
        max_anisotropy: largest ratio of the singular values of the homography's linear part (a
            rig does not squeeze one axis 3x against the other; beyond that it is near-singular).
        scale_range: IR scales searched, relative to the size-based guess (IR field of view from
            half to 1.5x what equal fields of view would give).
        working_width: frames wider than this are shrunk for the estimate.
        gain: gain control for 16-bit frames (the node's ``gain_*`` parameters).
        joint: settings of the joint refinement.
        start: a prior homography (e.g. the current one) instead of the size-based guess; it is
            also the "before" of the scores.
    """

    min_pairs: int = 3
    max_pairs: int = 24
    min_structure: float = 0.002
    min_ncc: float = 0.05
    pair_min_ncc: float = 0.05
    consistency_fraction: float = 0.02
    min_agreement: float = 0.6
    min_overlap: float = 0.2
    max_anisotropy: float = 3.0
    scale_range: tuple[float, float] = (0.5, 1.5)
    working_width: int = 1280
    gain: GainControl = field(default_factory=GainControl)
    joint: JointSettings = field(default_factory=JointSettings)
    start: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.min_pairs < 1:
            raise ValueError(f"min_pairs must be >= 1, got {self.min_pairs}")
        if self.max_pairs < self.min_pairs:
            raise ValueError(f"max_pairs ({self.max_pairs}) must be >= min_pairs ({self.min_pairs})")
        if not 0 < self.min_agreement <= 1:
            raise ValueError(f"min_agreement must lie in (0, 1], got {self.min_agreement}")


@dataclass
class PairResult:
    """What happened to one input pair.

    Attributes:
        index: position in the input.
        status: ``used``, ``flat`` (no structure), ``outlier`` (disagreed) or ``unused`` (beyond
            ``max_pairs``).
        structure: (IR, visible) ``features.structure``.
        ncc: edge correlation at the answer (joint fit), None if not fitted.
        deviation_px: shift that best aligns this pair alone, given the answer, visible pixels.
        score_before, score_after: ``alignment_score`` with the start and with the answer.
    """

    index: int
    status: str
    structure: tuple[float, float]
    ncc: float | None = None
    deviation_px: float | None = None
    score_before: float | None = None
    score_after: float | None = None


@dataclass
class CalibrationResult:
    """The answer and the evidence for it.

    Attributes:
        homography: 3x3, IR pixel -> visible pixel, ``[2, 2] == 1``.
        ir_size, visible_size: (width, height) of the frames.
        start: the size-based guess (or the given prior): the "before".
        pairs: one :class:`PairResult` per input pair.
        overlap: fraction of the visible frame covered by the warped IR frame.
        overlap_polygon: that region, visible pixels (Nx2).
        score_before, score_after: median ``alignment_score`` over the used pairs.
        search_score: pooled correlation of the coarse search.
        ncc: mean edge correlation of the used pairs at the answer.
        seconds: wall time of the estimate.
    """

    homography: np.ndarray
    ir_size: tuple[int, int]
    visible_size: tuple[int, int]
    start: np.ndarray
    pairs: list[PairResult]
    overlap: float
    overlap_polygon: np.ndarray
    score_before: float
    score_after: float
    search_score: float
    ncc: float
    seconds: float

    def as_parameter(self) -> list[float]:
        """The node's ``homography`` parameter: 9 doubles, row-major."""
        return [float(v) for v in normalize(self.homography).ravel()]

    @property
    def used(self) -> list[PairResult]:
        return [p for p in self.pairs if p.status == "used"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``report.json``)."""

        def r(v: float | None, n: int = 4) -> float | None:
            return None if v is None else round(float(v), n)

        return {
            "homography": self.as_parameter(),
            "ir_size": list(self.ir_size),
            "visible_size": list(self.visible_size),
            "start": [float(v) for v in normalize(self.start).ravel()],
            "pairs_total": len(self.pairs),
            "pairs_used": len(self.used),
            "overlap_fraction": r(self.overlap),
            "overlap_polygon": [[r(x, 2), r(y, 2)] for x, y in self.overlap_polygon],
            "ir_corners_in_visible": [
                [r(x, 2), r(y, 2)] for x, y in transform(self.homography, corners(self.ir_size))
            ],
            "alignment_score": {"before": r(self.score_before), "after": r(self.score_after)},
            "search_score": r(self.search_score),
            "edge_ncc": r(self.ncc),
            "seconds": r(self.seconds, 2),
            "pairs": [
                {"index": p.index, "status": p.status, "structure": [r(s, 5) for s in p.structure],
                 "ncc": r(p.ncc), "deviation_px": r(p.deviation_px, 2),
                 "score_before": r(p.score_before), "score_after": r(p.score_after)}
                for p in self.pairs
            ],
        }


def _common_size(frames: Sequence[np.ndarray], role: str) -> tuple[int, int]:
    sizes = {(f.shape[1], f.shape[0]) for f in frames}
    if len(sizes) != 1:
        raise ImageShapeError(f"all {role} frames must have one size, got {sorted(sizes)}")
    return sizes.pop()


def _pair_offset(ir: np.ndarray, vis: np.ndarray, h: np.ndarray, search: float = 0.15,
                 width: int = 256) -> tuple[float, float]:
    """(this pair's best edge correlation, and how far, in visible pixels, its best shift lies from
    ``h``) by an exhaustive translation search in the IR grid.

    Exhaustive rather than a local refinement: a pair seen 25 px away from the others (parallax)
    sits outside a local fit's basin, and would only look like a pair without shared edges. The
    shift is the mode parallax takes; ``search`` is its range, a fraction of the IR width.
    """
    a = min(1.0, width / ir.shape[1])
    scale = float(np.sqrt(abs(np.linalg.det(h[:2, :2]))))
    b = min(1.0, a * scale)
    tmpl = edge_map(resize_to(ir, a), 1.0, LOCAL_FRACTION * width)
    th, tw = tmpl.shape
    small = resize_to(vis, b)
    hl = rescale(tmpl.shape[1] / ir.shape[1], small.shape[1] / vis.shape[1], h)
    inv = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(small, hl, (tw, th), flags=inv)
    valid = cv2.warpPerspective(np.ones(small.shape, np.uint8), hl, (tw, th), flags=cv2.INTER_NEAREST | inv)
    edges = edge_map(warped, 1.0, LOCAL_FRACTION * width) * cv2.erode(valid, np.ones((5, 5), np.uint8))
    m = max(2, round(search * tw))
    crop = tmpl[m : th - m, m : tw - m]
    if crop.shape[0] < 8 or crop.shape[1] < 8 or float(crop.std()) < 1e-9:
        return 0.0, 0.0
    ncc = cv2.matchTemplate(edges, crop, cv2.TM_CCOEFF_NORMED)
    _, peak, _, (x, y) = cv2.minMaxLoc(ncc)
    shift = float(np.hypot(x - m, y - m))  # IR-level pixels
    return float(peak), shift / (tmpl.shape[1] / ir.shape[1]) * scale


def _best_start(irs: list[np.ndarray], viss: list[np.ndarray], starts: list[SearchResult],
                settings: JointSettings) -> SearchResult:
    """The search candidate that a quick joint fit (the two coarsest levels) correlates best.

    The coarse search ranks scales by a low-resolution score that can tie between a right and a
    wrong scale; a short refinement at the coarsest level separates them (the right one keeps
    climbing).
    """
    if len(starts) == 1:
        return starts[0]
    quick = replace(settings, level_widths=settings.level_widths[:1], max_width=settings.level_widths[0])
    fits = [refine_joint(irs, viss, s.h, quick) for s in starts]
    k = int(np.argmax([f.score for f in fits]))
    return SearchResult(fits[k].h, starts[k].score, starts[k].scale)


def _check_sane(h: np.ndarray, ir_size: tuple[int, int], vis_size: tuple[int, int],
                opts: CalibrationOptions) -> tuple[float, np.ndarray]:
    if not np.all(np.isfinite(h)):
        raise CalibrationError("degenerate", "the estimate is not finite")
    lin = h[:2, :2]
    if np.linalg.det(lin) <= 0:
        raise CalibrationError("degenerate", "the estimate mirrors the IR image (negative determinant)")
    quad = transform(h, corners(ir_size))
    if not is_convex_quad(quad):
        raise CalibrationError("degenerate", "the estimate folds the IR frame (its corners are not convex)")
    sv = np.linalg.svd(lin, compute_uv=False)
    if sv[0] / max(sv[1], 1e-12) > opts.max_anisotropy:
        raise CalibrationError(
            "degenerate",
            f"the estimate is near-singular (axis ratio {sv[0] / sv[1]:.1f} > {opts.max_anisotropy})",
        )
    frac, poly = overlap(h, ir_size, vis_size)
    if frac < opts.min_overlap:
        raise CalibrationError(
            "degenerate",
            f"the warped IR frame covers {100 * frac:.0f}% of the visible frame "
            f"(< {100 * opts.min_overlap:.0f}%)",
        )
    return frac, poly


def estimate_homography(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], options: CalibrationOptions | None = None
) -> CalibrationResult:
    """The IR -> visible homography shared by ``pairs`` of (IR frame, visible frame).

    Frames as the cameras deliver them: IR uint8 or uint16 (radiometric), grey or 3-channel;
    visible grey or BGR uint8. All IR frames one size, all visible frames one size; the two sizes
    may differ (320x256 IR against 1280x720 visible, ...).

    Raises:
        CalibrationError: the pairs cannot determine a homography (``reason``: too_few_pairs,
            no_structure, inconsistent, degenerate); the message says why in one line.
        ImageShapeError: frames of one camera differ in size, or a frame is not an image.
    """
    opts = options or CalibrationOptions()
    t0 = time.perf_counter()
    if len(pairs) < opts.min_pairs:
        raise CalibrationError(
            "too_few_pairs", f"{len(pairs)} pair(s) given, at least {opts.min_pairs} needed"
        )
    ir_size = _common_size([p[0] for p in pairs], "IR")
    vis_size = _common_size([p[1] for p in pairs], "visible")
    start = normalize(opts.start) if opts.start is not None else size_guess(ir_size, vis_size)

    # 1-2: frames to [0, 1], structure
    f_vis = min(1.0, opts.working_width / vis_size[0])
    f_ir = min(1.0, opts.working_width / ir_size[0])
    results: list[PairResult] = []
    units: list[tuple[int, np.ndarray, np.ndarray]] = []
    for i, (ir, vis) in enumerate(pairs):
        iu, vu = to_unit(ir, opts.gain), to_unit(vis, opts.gain)
        s = (structure(iu), structure(vu))
        flat = min(s) < opts.min_structure
        results.append(PairResult(i, "flat" if flat else "used", s))
        if not flat:
            units.append((i, resize_to(iu, f_ir), resize_to(vu, f_vis)))
    if len(units) < opts.min_pairs:
        raise CalibrationError(
            "no_structure",
            f"{len(units)} of {len(pairs)} pairs show structure in both cameras (flat frames), "
            f"at least {opts.min_pairs} needed",
        )
    if len(units) > opts.max_pairs:
        keep = set(np.linspace(0, len(units) - 1, opts.max_pairs).round().astype(int).tolist())
        for k, (i, _, _) in enumerate(units):
            if k not in keep:
                results[i].status = "unused"
        units = [u for k, u in enumerate(units) if k in keep]
    w_ir = (units[0][1].shape[1], units[0][1].shape[0])
    w_vis = (units[0][2].shape[1], units[0][2].shape[0])
    to_work = rescale(w_ir[0] / ir_size[0], w_vis[0] / vis_size[0], start)

    # 3-4: search and joint fit
    irs, viss = [u[1] for u in units], [u[2] for u in units]
    starts = coarse_search(irs, viss, to_work, scale_range=opts.scale_range)
    found = _best_start(irs, viss, starts, opts.joint)
    fit = refine_joint(irs, viss, found.h, opts.joint)
    if fit.score < opts.min_ncc:
        raise CalibrationError(
            "no_structure",
            f"the cameras share no edges (edge correlation {fit.score:.3f} < {opts.min_ncc}): "
            "unrelated streams, or one camera sees nothing",
        )

    # 5: consistency
    tol = opts.consistency_fraction * float(np.hypot(*w_vis))
    offsets = [_pair_offset(i, v, fit.h) for i, v in zip(irs, viss, strict=True)]
    devs = [d for _, d in offsets]
    informative = [k for k, (peak, _) in enumerate(offsets) if peak >= opts.pair_min_ncc]
    agree = [k for k in informative if devs[k] <= tol]
    scale_back = vis_size[0] / w_vis[0]
    for k, (i, _, _) in enumerate(units):
        results[i].ncc, results[i].deviation_px = fit.ncc[k], devs[k] * scale_back
    if len(informative) < opts.min_pairs:
        raise CalibrationError(
            "no_structure",
            f"only {len(informative)} pair(s) share edges between the cameras, "
            f"at least {opts.min_pairs} needed",
        )
    if len(agree) < max(opts.min_pairs, opts.min_agreement * len(informative)):
        spread = np.median([devs[k] for k in informative]) * scale_back
        raise CalibrationError(
            "inconsistent",
            f"the pairs disagree: {len(agree)} of {len(informative)} within {tol * scale_back:.0f} px of one "
            f"homography (median deviation {spread:.0f} px); parallax (objects at different depths) "
            "or frames from different rigs",
        )
    outliers = [k for k in range(len(units)) if k not in agree]
    if outliers:
        for k in outliers:
            results[units[k][0]].status = "outlier"
        irs, viss = [irs[k] for k in agree], [viss[k] for k in agree]
        fit = refine_joint(irs, viss, fit.h, opts.joint)
        for k, n in zip(agree, fit.ncc, strict=True):
            results[units[k][0]].ncc = n

    # 6: back to full resolution, sanity, scores
    h = rescale(ir_size[0] / w_ir[0], vis_size[0] / w_vis[0], fit.h)
    frac, poly = _check_sane(h, ir_size, vis_size, opts)
    for res in results:
        if res.status == "used":
            ir, vis = pairs[res.index]
            res.score_before = _score(ir, vis, start, vis_size, opts.gain)
            res.score_after = _score(ir, vis, h, vis_size, opts.gain)
    used = [r for r in results if r.status == "used"]
    return CalibrationResult(
        homography=h, ir_size=ir_size, visible_size=vis_size, start=start, pairs=results,
        overlap=frac, overlap_polygon=poly,
        score_before=float(np.median([r.score_before for r in used])),
        score_after=float(np.median([r.score_after for r in used])),
        search_score=found.score, ncc=fit.score, seconds=time.perf_counter() - t0,
    )


def warped_ir_u8(ir: np.ndarray, h: np.ndarray, visible_size: tuple[int, int],
                 gain: GainControl | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(IR frame as uint8 warped into the visible grid, mask of the pixels it covers)."""
    ir8 = unit_to_uint8(to_unit(ir, gain))
    warped = warp_to_visible(ir8, h, visible_size)
    valid = warp_to_visible(np.full(ir8.shape, 255, np.uint8), h, visible_size) > 127
    return warped, valid


def _score(ir: np.ndarray, vis: np.ndarray, h: np.ndarray, vis_size: tuple[int, int],
           gain: GainControl) -> float:
    warped, valid = warped_ir_u8(ir, h, vis_size, gain)
    return alignment_score(warped, vis, valid=valid)
