"""Image-fusion quality metrics: EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM (NumPy/OpenCV/scikit-image).

Papers disagree on scale, sums versus means and rounding, so every choice is fixed here and written
down in docs/METRICS.md (docs/DESIGN.md "Measuring quality"):

* all metrics work on one grey channel on the 0-255 scale (BGR input is reduced to BT.601 luma Y);
* histogram metrics (EN, MI) use 256 bins, one per uint8 level (float input is rounded), and log2;
* two-source metrics are SUMS over the sources: MI = MI(F,IR) + MI(F,VIS), VIF = VIF(IR->F) +
  VIF(VIS->F), SSIM = SSIM(F,IR) + SSIM(F,VIS); so a fused image equal to both sources scores 2;
* Qabf is Xydeas-Petrovic with 3x3 Sobel and zero padding (as MATLAB ``filter2`` does, which the
  published numbers were computed with).

Every metric is torch-free and vectorised: the bag evaluator computes the suite per 640x480 frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cached_property, lru_cache

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from ..errors import ImageShapeError
from ..preprocessing import to_gray, visible_to_ycrcb

__all__ = [
    "FUSION_METRICS",
    "as_grey",
    "average_gradient",
    "entropy",
    "fusion_metrics",
    "mutual_information",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "vif",
]

FUSION_METRICS: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")

# Xydeas & Petrovic (2000) sigmoid constants for edge strength (g) and orientation (a).
_QABF_TG, _QABF_KG, _QABF_DG = 0.9994, -15.0, 0.5
_QABF_TA, _QABF_KA, _QABF_DA = 0.9879, -22.0, 0.8
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])  # d/dx (columns)
_SOBEL_Y = np.ascontiguousarray(_SOBEL_X.T)  # d/dy (rows)

# Sheikh & Bovik pixel-domain VIF: HVS noise variance and the guard against division by zero.
_VIF_SIGMA_NSQ = 2.0
_VIF_EPS = 1e-10
_VIF_MIN_SIDE = 41  # smallest side for which all four scales keep a non-empty 'valid' region

# SSIM as in Wang et al. (2004): 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma).
_SSIM_SIGMA = 1.5


def as_grey(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as float64 HxW grey on the 0-255 scale.

    Accepts HxW, HxWx1 or HxWx3 (BGR) arrays, uint8 or float already on 0-255. Colour is reduced to
    BT.601 luma Y (the channel the fusion net fuses); uint8 colour goes through
    ``preprocessing.visible_to_ycrcb`` exactly like the runtime, float colour is weighted without
    rounding.

    Raises:
        ImageShapeError: wrong shape or dtype, non-finite values, values outside 0-255, or a float
            image whose maximum is at most 1 (almost surely [0, 1] scale; multiply by 255 first).

    >>> as_grey(np.array([[0, 255]], np.uint8)).tolist()
    [[0.0, 255.0]]
    """
    arr = np.asarray(image)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return visible_to_ycrcb(arr)[:, :, 0].astype(np.float64)  # the Y the runtime fuses, bit for bit
    if arr.dtype == np.uint8:
        return to_gray(arr).astype(np.float64)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ImageShapeError(f"fusion metrics need uint8 or float (0-255) images, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 3:
        grey = 0.114 * arr[:, :, 0] + 0.587 * arr[:, :, 1] + 0.299 * arr[:, :, 2]
    else:
        grey = to_gray(arr).astype(np.float64)
    grey = np.asarray(grey, dtype=np.float64)
    if grey.size == 0:
        raise ImageShapeError(f"fusion metrics need a non-empty image, got shape {arr.shape}")
    lo, hi = float(grey.min()), float(grey.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ImageShapeError("image holds NaN or infinite values")
    if lo < 0.0 or hi > 255.0:
        raise ImageShapeError(f"float image must lie in [0, 255], got values in [{lo:g}, {hi:g}]")
    if 0.0 < hi <= 1.0:
        raise ImageShapeError(
            f"float image has maximum {hi:g}: it looks like [0, 1] scale; the metrics expect 0-255"
        )
    return grey


def _levels(grey: np.ndarray) -> np.ndarray:
    """uint8 grey levels (rounded half to even), the 256 histogram bins of EN and MI.

    ``grey`` comes from ``as_grey``, so it already lies in [0, 255] and needs no clipping.
    """
    return np.rint(grey).astype(np.uint8)


def _entropy_of_counts(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _entropy(levels: np.ndarray) -> float:
    return _entropy_of_counts(np.bincount(levels.ravel(), minlength=256))


def _mutual_information(la: np.ndarray, lb: np.ndarray) -> float:
    """MI in bits from the 256x256 joint histogram: H(a) + H(b) - H(a, b)."""
    joint = np.bincount((la.astype(np.intp) << 8 | lb).ravel(), minlength=256 * 256).reshape(256, 256)
    return (
        _entropy_of_counts(joint.sum(axis=1))
        + _entropy_of_counts(joint.sum(axis=0))
        - _entropy_of_counts(joint.ravel())
    )


def _spatial_frequency(g: np.ndarray) -> float:
    rf2 = np.mean(np.diff(g, axis=1) ** 2)
    cf2 = np.mean(np.diff(g, axis=0) ** 2)
    return float(math.sqrt(rf2 + cf2))


def _average_gradient(g: np.ndarray) -> float:
    dx = g[:-1, 1:] - g[:-1, :-1]
    dy = g[1:, :-1] - g[:-1, :-1]
    np.multiply(dx, dx, out=dx)  # in place: fresh 640x480 temporaries cost more than the arithmetic
    dx += np.multiply(dy, dy, out=dy)
    dx *= 0.5
    return float(np.sqrt(dx, out=dx).mean())


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either image is constant (it carries no signal to correlate)."""
    xc = (x - x.mean()).ravel()
    yc = (y - y.mean()).ravel()
    den = math.sqrt(_dot(xc, xc) * _dot(yc, yc))
    return _dot(xc, yc) / den if den > 0.0 else 0.0


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """Sum of x*y over all pixels without a temporary; einsum, not BLAS, whose worker threads spin
    and stall when the CPU is shared (a node, a bag evaluation and training on one robot)."""
    return float(np.einsum("i,i->", x.ravel(), y.ravel()))


def _scd(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> float:
    return _correlation(fused - vis, ir) + _correlation(fused - ir, vis)


@lru_cache(maxsize=8)
def _gaussian_taps(n: int) -> np.ndarray:
    """Normalised 1-D Gaussian of length n, sigma n/5 (MATLAB ``fspecial('gaussian', n, n/5)``)."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    taps = np.exp(-(x * x) / (2.0 * (n / 5.0) ** 2))
    return taps / taps.sum()


def _filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only the 'valid' part (no border handling enters the result)."""
    r = taps.size // 2
    out = cv2.sepFilter2D(img, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_REFLECT)
    return out[r:-r, r:-r]


def _vif_sum(references: Sequence[np.ndarray], distorted: np.ndarray) -> list[float]:
    """Pixel-domain VIF of each reference against one distorted image (4 scales, Sheikh & Bovik 2006).

    The distorted image's pyramid and local moments are computed once and shared by the references.
    """
    refs = list(references)
    if min(distorted.shape) < _VIF_MIN_SIDE:
        raise ImageShapeError(
            f"VIF needs images of at least {_VIF_MIN_SIDE}x{_VIF_MIN_SIDE} (4 scales), got {distorted.shape}"
        )
    nums = [0.0] * len(refs)
    dens = [0.0] * len(refs)
    dist = distorted
    for scale in range(4):
        taps = _gaussian_taps(2 ** (4 - scale) + 1)
        if scale > 0:
            dist = np.ascontiguousarray(_filter_valid(dist, taps)[::2, ::2])
            refs = [np.ascontiguousarray(_filter_valid(r, taps)[::2, ::2]) for r in refs]
        mu_d = _filter_valid(dist, taps)
        var_d = np.maximum(_filter_valid(dist * dist, taps) - mu_d * mu_d, 0.0)
        flat_dist = var_d < _VIF_EPS
        for i, ref in enumerate(refs):
            mu_r = _filter_valid(ref, taps)
            var_r = np.maximum(_filter_valid(ref * ref, taps) - mu_r * mu_r, 0.0)
            cov = _filter_valid(ref * dist, taps) - mu_r * mu_d
            gain = cov / (var_r + _VIF_EPS)
            # Degenerate windows transmit nothing (gain 0), as in vifp_mscale.m: a flat reference
            # (no signal), a flat output (all lost) or a negative gain (contrast inversion). Where
            # the gain is 0 the residual variance no longer matters, so it is not patched there.
            flat_ref = var_r < _VIF_EPS
            gain *= ~(flat_ref | flat_dist | (gain < 0.0))  # a multiply, cheaper than masked copies
            var_r *= ~flat_ref
            sv = var_d - gain * cov
            np.maximum(sv, _VIF_EPS, out=sv)
            # log1p(x)/ln 10 = log10(1 + x); the common 1/ln 10 cancels in num/den.
            sv += _VIF_SIGMA_NSQ
            gain *= gain
            gain *= var_r
            gain /= sv
            nums[i] += float(np.log1p(gain, out=gain).sum())
            var_r *= 1.0 / _VIF_SIGMA_NSQ
            dens[i] += float(np.log1p(var_r, out=var_r).sum())
    return [n / d if d > 0.0 else math.nan for n, d in zip(nums, dens, strict=True)]


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength and orientation arctan(gy/gx) in [-pi/2, pi/2] (pi/2 where gx == 0)."""
    gx = cv2.filter2D(img, cv2.CV_64F, _SOBEL_X, borderType=cv2.BORDER_CONSTANT)
    gy = cv2.filter2D(img, cv2.CV_64F, _SOBEL_Y, borderType=cv2.BORDER_CONSTANT)
    strength = cv2.magnitude(gx, gy)
    ratio = np.divide(gy, gx, out=np.full_like(gx, np.inf), where=gx != 0.0)
    return strength, np.arctan(ratio, out=ratio)


def _edge_preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Q^{SF}: how much of the source's edge strength and orientation survives in the fused image."""
    hi = np.maximum(g_src, g_f)
    rel_strength = np.divide(np.minimum(g_src, g_f), hi, out=np.ones_like(hi), where=hi > 0.0)
    rel_orient = np.abs(a_src - a_f)
    rel_orient *= -1.0 / (math.pi / 2.0)
    rel_orient += 1.0
    q_g = _sigmoid(rel_strength, _QABF_TG, _QABF_KG, _QABF_DG)
    q_g *= _sigmoid(rel_orient, _QABF_TA, _QABF_KA, _QABF_DA)
    return q_g


def _sigmoid(x: np.ndarray, top: float, slope: float, centre: float) -> np.ndarray:
    """top / (1 + exp(slope * (x - centre))), computed in place in ``x``."""
    x -= centre
    x *= slope
    np.exp(x, out=x)
    x += 1.0
    return np.divide(top, x, out=x)


def _qabf(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> float:
    g_a, a_a = _sobel(ir)
    g_b, a_b = _sobel(vis)
    g_f, a_f = _sobel(fused)
    weight = float(g_a.sum() + g_b.sum())
    if weight == 0.0:
        return math.nan  # neither source has an edge: nothing to transfer, the score is undefined
    q_a = _edge_preservation(g_a, a_a, g_f, a_f)
    q_b = _edge_preservation(g_b, a_b, g_f, a_f)
    return (_dot(q_a, g_a) + _dot(q_b, g_b)) / weight


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image SSIM run in float32 (1.5x faster; within 1e-5 of float64 on 0-255 images)."""
    return float(
        structural_similarity(
            a.astype(np.float32), b.astype(np.float32), data_range=255.0,
            gaussian_weights=True, sigma=_SSIM_SIGMA, use_sample_covariance=False,
        )
    )


# ---------------------------------------------------------------- public single-metric functions


def entropy(image: np.ndarray) -> float:
    """EN: Shannon entropy in bits of the 256-level histogram (0..8). A half/half two-level image is 1."""
    return _entropy(_levels(as_grey(image)))


def standard_deviation(image: np.ndarray) -> float:
    """SD: population standard deviation (ddof 0) of the grey values, 0-255 scale."""
    return float(np.std(as_grey(image)))


def spatial_frequency(image: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2), RF/CF the RMS of horizontal/vertical first differences.

    A horizontal ramp with slope s per pixel has SF = s.
    """
    return _spatial_frequency(as_grey(image))


def average_gradient(image: np.ndarray) -> float:
    """AG: mean over the (H-1)x(W-1) grid of sqrt((dx^2 + dy^2) / 2), forward differences.

    A horizontal ramp with slope s per pixel has AG = s / sqrt(2).
    """
    return _average_gradient(as_grey(image))


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """MI between two images in bits (256x256 joint histogram, log2). MI(a, a) = EN(a).

    sklearn's ``mutual_info_score`` returns nats: multiply it by 1/ln 2 to compare.
    """
    ga, gb = as_grey(a), as_grey(b)
    _check_same_shape(ga, gb)
    return _mutual_information(_levels(ga), _levels(gb))


def scd(ir: np.ndarray, visible: np.ndarray, fused: np.ndarray) -> float:
    """SCD (Aslantas & Bendes 2015): corr(F - VIS, IR) + corr(F - IR, VIS), in [-2, 2].

    F = IR + VIS scores 2. A difference image that is constant (F equals a source) contributes 0.
    """
    a, b, f = _grey_triplet(ir, visible, fused)
    return _scd(a, b, f)


def vif(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Pixel-domain VIF of ``distorted`` against ``reference`` (``sewar.vifp``, sigma_nsq 2); 1 if equal."""
    ref, dist = as_grey(reference), as_grey(distorted)
    _check_same_shape(ref, dist)
    return _vif_sum([ref], dist)[0]


def qabf(ir: np.ndarray, visible: np.ndarray, fused: np.ndarray) -> float:
    """Qabf (Xydeas & Petrovic 2000): edge-strength-weighted edge preservation, in [0, ~0.975].

    With the standard constants a perfect transfer scores Tg/(1+e^(kg(1-Dg))) * Ta/(1+e^(ka(1-Da)))
    = 0.9748, not 1. NaN when neither source has an edge.
    """
    a, b, f = _grey_triplet(ir, visible, fused)
    return _qabf(a, b, f)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (scikit-image, data_range 255, 11x11 Gaussian window sigma 1.5, population moments)."""
    ga, gb = as_grey(a), as_grey(b)
    _check_same_shape(ga, gb)
    return _ssim(ga, gb)


# ---------------------------------------------------------------- the suite


def _check_same_shape(*images: np.ndarray) -> None:
    shapes = {img.shape for img in images}
    if len(shapes) != 1:
        raise ImageShapeError(f"fusion metrics need images of one size, got {sorted(shapes)}")


def _grey_triplet(ir: np.ndarray, visible: np.ndarray, fused: np.ndarray) -> tuple[np.ndarray, ...]:
    out = (as_grey(ir), as_grey(visible), as_grey(fused))
    _check_same_shape(*out)
    return out


class _Triplet:
    """One (IR, VIS, fused) triplet with the intermediate results several metrics share."""

    def __init__(self, ir: np.ndarray, visible: np.ndarray, fused: np.ndarray) -> None:
        self.ir, self.vis, self.fused = _grey_triplet(ir, visible, fused)

    @cached_property
    def levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _levels(self.ir), _levels(self.vis), _levels(self.fused)

    def mi(self) -> float:
        la, lb, lf = self.levels
        return _mutual_information(lf, la) + _mutual_information(lf, lb)

    def vif(self) -> float:
        return sum(_vif_sum([self.ir, self.vis], self.fused))

    def ssim(self) -> float:
        return _ssim(self.fused, self.ir) + _ssim(self.fused, self.vis)


_SUITE: dict[str, Callable[[_Triplet], float]] = {
    "EN": lambda t: _entropy(t.levels[2]),
    "SD": lambda t: float(np.std(t.fused)),
    "SF": lambda t: _spatial_frequency(t.fused),
    "AG": lambda t: _average_gradient(t.fused),
    "MI": _Triplet.mi,
    "SCD": lambda t: _scd(t.ir, t.vis, t.fused),
    "VIF": _Triplet.vif,
    "Qabf": lambda t: _qabf(t.ir, t.vis, t.fused),
    "SSIM": _Triplet.ssim,
}


def fusion_metrics(
    fused: np.ndarray, ir: np.ndarray, visible: np.ndarray, names: Sequence[str] = FUSION_METRICS
) -> dict[str, float]:
    """Compute the named fusion metrics of one fused frame against its two sources.

    Inputs: HxW grey (or HxWx3 BGR, converted to Y), uint8 0-255 or float already on 0-255 scale,
    all the same size. MI, VIF and SSIM are sums over the two sources (docs/METRICS.md).

    Returns:
        {name: value} in the order of ``names``.

    Raises:
        ValueError: an unknown metric name (the message lists the known ones).
        ImageShapeError: images of different sizes, or a bad dtype / value range.
    """
    unknown = [n for n in names if n not in _SUITE]
    if unknown:
        raise ValueError(f"unknown fusion metric(s) {unknown}; known: {list(FUSION_METRICS)}")
    triplet = _Triplet(ir, visible, fused)
    return {name: _SUITE[name](triplet) for name in names}
