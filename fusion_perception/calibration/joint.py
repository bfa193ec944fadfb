"""Joint refinement: one homography that maximises the summed edge correlation of all pairs.

Why joint: the edge maps of an IR frame and a visible frame agree only in part (a warm person,
a painted marking), so the correlation of one pair is a flat landscape whose peak can sit pixels
away from the truth, and eight parameters fitted to one pair drift along it (measured:
docs/CALIBRATION.md, candidate "per-pair ECC"). A rig has *one* homography for every pair; summing
the pairs' correlations keeps what they share (the geometry) and averages out what each has alone.

Method: Levenberg-Marquardt on the sum over pairs of ``|| t_k - w_k(H) ||^2``, where ``t_k`` is the
zero-mean, unit-norm IR edge map of pair k and ``w_k(H)`` the zero-mean, unit-norm visible edge map
warped into the IR grid by ``H``. Each term equals ``2 - 2 NCC_k``, so this maximises the summed
normalised cross-correlation, and every pair weighs the same whatever its contrast. The update is
forward-compositional, ``H <- H (I + A(dp))``, with the parameters in normalised IR coordinates
(conditioning); the Jacobian comes from the gradient of the warped visible edge map.

Coarse to fine, and the motion model grows with the level (similarity, then affine, then the full
homography): perspective terms fitted at a coarse level, before the shift is right, bend the
corners to fit a wrong match, and never come back (measured: p95 corner error 31 px with a
homography at every level, 7 px staged, on MSRS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .features import edge_map, resize_to
from .geometry import normalize, rescale

__all__ = ["BASIS", "JointFit", "JointSettings", "refine_joint"]

#: dp = BASIS[motion] @ q: each motion model's free parameters among the 8 of a homography
BASIS: dict[str, np.ndarray] = {
    "translation": np.eye(8)[:, [2, 5]],
    "similarity": np.array([[1, 0, 0, 0, 1, 0, 0, 0], [0, -1, 0, 1, 0, 0, 0, 0],
                            [0, 0, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0]], np.float64).T,
    "affine": np.eye(8)[:, :6],
    "homography": np.eye(8),
}


@dataclass(frozen=True)
class JointSettings:
    """Pyramid, features and stopping rules of the joint fit.

    Args:
        level_widths: visible width at each level, coarse to fine (levels not narrower than the
            frame are skipped; the frame itself, capped at ``max_width``, is always the last).
        iterations: most steps per level (the last entry serves every further level).
        motions: motion model per level (``BASIS`` keys; the last entry serves further levels).
        sigma: pre-smoothing of each frame before the gradient (pixels at the level).
        blur: Gaussian blur of the edge maps (pixels at the level): a thin edge a pixel off still
            overlaps its partner, and the basin of convergence is wider.
        local_fraction: contrast normalisation window (``features.edge_map``'s ``local_sigma``) as a
            fraction of the visible width, so it covers the same part of the scene at every level;
            0 = off. Measured on MSRS: lower spread across pair groups and higher mutual
            information of the result (docs/CALIBRATION.md).
        max_width: the finest level's visible width (wider frames are refined at this width).
        max_samples: pixels per pair used per step; larger levels take every 2nd (4th, ...) pixel
            in each direction (the edge maps are smooth, so little is lost, and steps stay fast).
        tolerance: stop a level when the IR corners move less than this (level pixels).
    """

    level_widths: tuple[int, ...] = (160, 320, 640)
    iterations: tuple[int, ...] = (40, 25, 15)
    motions: tuple[str, ...] = ("similarity", "affine", "homography")
    sigma: float = 1.0
    blur: float = 1.0
    local_fraction: float = 0.025
    max_width: int = 1280
    max_samples: int = 80_000
    tolerance: float = 0.02

    def __post_init__(self) -> None:
        if any(m not in BASIS for m in self.motions):
            raise ValueError(f"motions must be among {sorted(BASIS)}, got {self.motions}")
        if not self.level_widths or not self.iterations or not self.motions:
            raise ValueError("level_widths, iterations and motions must not be empty")


@dataclass(frozen=True)
class JointFit:
    """The joint answer: ``h`` (full-resolution IR -> visible), each pair's NCC at ``h``, their mean."""

    h: np.ndarray
    ncc: tuple[float, ...]
    score: float
    iterations: int


def _levels(vis_width: int, settings: JointSettings) -> list[tuple[float, int, str]]:
    """(visible factor, iterations, motion) per level, coarse to fine."""
    top = min(vis_width, settings.max_width)
    its, mot = settings.iterations, settings.motions
    widths = [w for w in settings.level_widths if w < top] + [top]
    return [(w / vis_width, its[min(i, len(its) - 1)], mot[min(i, len(mot) - 1)])
            for i, w in enumerate(widths)]


def features(unit: np.ndarray, factor: float, local_sigma: float, settings: JointSettings) -> np.ndarray:
    """The edge map the fit compares: ``unit`` resized by ``factor``, gradient magnitude, blurred."""
    e = edge_map(resize_to(unit, factor), settings.sigma, local_sigma)
    return cv2.GaussianBlur(e, (0, 0), settings.blur) if settings.blur > 0 else e


class _Level:
    """The pairs at one pyramid level, and the normal equations of one step."""

    def __init__(self, templates: list[np.ndarray], inputs: list[np.ndarray], max_samples: int) -> None:
        self.templates, self.inputs = templates, inputs
        th, tw = templates[0].shape
        self.size = (tw, th)
        self.scale = max(tw, th) / 2.0
        # normalised IR coordinates u = (x - c) / scale
        self.norm = np.array([[1 / self.scale, 0, -(tw - 1) / 2 / self.scale],
                              [0, 1 / self.scale, -(th - 1) / 2 / self.scale], [0, 0, 1]])
        stride = 1
        while (th // stride) * (tw // stride) > max_samples:
            stride += 1
        self.stride = stride
        ys, xs = np.mgrid[0:th:stride, 0:tw:stride].astype(np.float32)
        self.u = ((xs - (tw - 1) / 2) / self.scale).ravel()
        self.v = ((ys - (th - 1) / 2) / self.scale).ravel()
        self.t_sampled = [t[::stride, ::stride].ravel() for t in templates]
        self.ones = [np.ones(i.shape, np.uint8) for i in inputs]
        self.kernel = np.ones((5, 5), np.uint8)

    def _sample(self, image: np.ndarray) -> np.ndarray:
        return image[:: self.stride, :: self.stride].ravel()

    def step(self, h: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(NCC per pair, summed normal matrix, summed right-hand side) at ``h``."""
        m = basis.shape[1]
        a, g = np.zeros((m, m)), np.zeros(m)
        nccs = []
        inv = cv2.WARP_INVERSE_MAP
        basis32 = basis.astype(np.float32)
        for tmpl, inp, ones in zip(self.t_sampled, self.inputs, self.ones, strict=True):
            warped = cv2.warpPerspective(inp, h, self.size, flags=cv2.INTER_LINEAR | inv)
            valid = cv2.warpPerspective(ones, h, self.size, flags=cv2.INTER_NEAREST | inv)
            mask = self._sample(cv2.erode(valid, self.kernel)).astype(bool)
            if mask.sum() < 64:
                nccs.append(0.0)
                continue
            t, i = tmpl[mask], self._sample(warped)[mask]
            tc, ic = t - t.mean(), i - i.mean()
            nt, ni = float(np.linalg.norm(tc)), float(np.linalg.norm(ic))
            if nt < 1e-9 or ni < 1e-9:
                nccs.append(0.0)
                continue
            tn, inn = tc / nt, ic / ni
            nccs.append(float(tn @ inn))
            gx = self._sample(cv2.Sobel(warped, cv2.CV_32F, 1, 0, ksize=3, scale=0.125))[mask] * self.scale
            gy = self._sample(cv2.Sobel(warped, cv2.CV_32F, 0, 1, ksize=3, scale=0.125))[mask] * self.scale
            u, v = self.u[mask], self.v[mask]
            radial = gx * u + gy * v
            jac = np.stack([gx * u, gx * v, gx, gy * u, gy * v, gy, -radial * u, -radial * v], axis=1)
            jac = jac @ basis32
            # The derivative of the normalised warped map is Jn = (Jc - inn c^T) / ni, with Jc the
            # column-centred Jacobian and c = Jc^T inn. Its normal equations follow from J alone
            # (inn and tn are zero-mean, so centring J does not change J^T inn or J^T tn):
            # Jn^T Jn = (J^T J - N mu mu^T - c c^T) / ni^2 and Jn^T (tn - inn) = (J^T tn - c (inn.tn)) / ni;
            # no N x m temporaries beyond J itself.
            jtj = (jac.T @ jac).astype(np.float64)
            mu = jac.mean(axis=0).astype(np.float64)
            c = (jac.T @ inn).astype(np.float64)
            jt = (jac.T @ tn).astype(np.float64)
            a += (jtj - len(inn) * np.outer(mu, mu) - np.outer(c, c)) / ni**2
            g += (jt - c * float(inn @ tn)) / ni
        return np.array(nccs), a, g

    def update(self, h: np.ndarray, dp: np.ndarray) -> np.ndarray:
        step = np.array([[1 + dp[0], dp[1], dp[2]], [dp[3], 1 + dp[4], dp[5]], [dp[6], dp[7], 1.0]])
        return normalize(h @ np.linalg.inv(self.norm) @ step @ self.norm)

    def corner_move(self, h0: np.ndarray, h1: np.ndarray) -> float:
        tw, th = self.size
        c = np.array([[0, 0, 1], [tw, 0, 1], [tw, th, 1], [0, th, 1]], np.float64).T
        p0, p1 = h0 @ c, h1 @ c
        return float(np.abs(p0[:2] / p0[2] - p1[:2] / p1[2]).max())


def refine_joint(
    ir_units: Sequence[np.ndarray],
    vis_units: Sequence[np.ndarray],
    start: np.ndarray,
    settings: JointSettings | None = None,
) -> JointFit:
    """Refine ``start`` (IR -> visible) on all pairs at once (float [0, 1] frames; all IR frames one
    size, all visible frames one size); see the module docstring."""
    settings = settings or JointSettings()
    h = normalize(start)
    total = 0
    nccs = np.zeros(len(ir_units))
    vis_width = vis_units[0].shape[1]
    for b, iterations, motion in _levels(vis_width, settings):
        scale = float(np.sqrt(abs(np.linalg.det(h[:2, :2]))))  # visible px per IR px
        a = min(1.0, b * scale)  # IR pixels about as large as the visible level's
        local = settings.local_fraction * vis_width * b
        templates = [features(i, a, local, settings) for i in ir_units]
        inputs = [features(v, b, local, settings) for v in vis_units]
        a_true = templates[0].shape[1] / ir_units[0].shape[1]
        b_true = inputs[0].shape[1] / vis_width
        level = _Level(templates, inputs, settings.max_samples)
        basis = BASIS[motion]
        hl = rescale(a_true, b_true, h)
        nccs, mat, vec = level.step(hl, basis)
        lam = 1e-3
        for _ in range(iterations):
            total += 1
            try:
                dp = np.linalg.solve(mat + lam * np.diag(np.diag(mat) + 1e-9), vec)
            except np.linalg.LinAlgError:
                break
            trial = level.update(hl, basis @ dp)
            t_nccs, t_mat, t_vec = level.step(trial, basis)
            if t_nccs.sum() >= nccs.sum():
                moved = level.corner_move(hl, trial)
                hl, nccs, mat, vec = trial, t_nccs, t_mat, t_vec
                lam = max(lam / 3, 1e-6)
                if moved < settings.tolerance:
                    break
            else:
                lam *= 10
                if lam > 1e4:
                    break
        h = rescale(1 / a_true, 1 / b_true, hl)
    return JointFit(h, tuple(float(x) for x in nccs), float(np.mean(nccs)) if len(nccs) else 0.0, total)
