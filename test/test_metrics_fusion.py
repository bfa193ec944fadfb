"""Fusion metrics on inputs with known answers, against sewar/scikit-image, and on a real MSRS pair
(a shipped sample pair)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from sewar.full_ref import vifp
from skimage.metrics import structural_similarity

from fusion_perception.assets import sample_pairs
from fusion_perception.errors import ImageShapeError
from fusion_perception.metrics.fusion import (
    FUSION_METRICS,
    as_grey,
    average_gradient,
    entropy,
    fusion_metrics,
    mutual_information,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    vif,
)

H, W = 48, 64  # the smallest size worth testing: VIF's four scales need sides >= 41

# Qabf of a perfect transfer with the Xydeas-Petrovic constants: Qg(1) * Qa(1).
QABF_PERFECT = 0.9994 / (1 + math.exp(-15 * (1 - 0.5))) * 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))


def textured(seed: int) -> np.ndarray:
    """A smooth random uint8 texture (blurred noise), so every metric has edges and variance."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)), (0, 0), 2.0)
    return cv2.normalize(img, None, 10, 245, cv2.NORM_MINMAX).astype(np.uint8)


def half_half(low: int = 50, high: int = 200) -> np.ndarray:
    img = np.full((H, W), low, np.uint8)
    img[:, W // 2 :] = high
    return img


@pytest.fixture(scope="module")
def msrs_pair() -> tuple[np.ndarray, np.ndarray]:
    """A real MSRS val pair (the first shipped sample): IR (grey uint8) and visible (BGR uint8), 640x480."""
    pair = sample_pairs()[0]
    ir = cv2.imread(str(pair.ir), cv2.IMREAD_UNCHANGED)
    vis = cv2.imread(str(pair.visible), cv2.IMREAD_COLOR)
    assert ir is not None and vis is not None, f"cannot read sample pair {pair.name}"
    return ir, vis


# ------------------------------------------------------------------ single-image metrics


def test_entropy_known_values() -> None:
    assert entropy(half_half()) == pytest.approx(1.0, abs=1e-12)
    assert entropy(np.full((H, W), 77, np.uint8)) == 0.0
    every_level = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert entropy(every_level) == pytest.approx(8.0, abs=1e-12)
    # Float input is binned by rounding to the uint8 level it stands for.
    assert entropy(half_half().astype(np.float64) + 0.3) == pytest.approx(1.0, abs=1e-12)


def test_standard_deviation_known_values() -> None:
    assert standard_deviation(np.full((H, W), 123, np.uint8)) == 0.0
    assert standard_deviation(half_half(0, 255)) == pytest.approx(127.5)  # population SD


@pytest.mark.parametrize(("sx", "sy"), [(2.0, 0.0), (0.0, 3.0), (1.5, 2.5)])
def test_sf_and_ag_of_a_ramp(sx: float, sy: float) -> None:
    rows, cols = np.mgrid[0:H, 0:W]
    ramp = 5.0 + sx * cols + sy * rows  # stays within 0-255 for these slopes
    assert spatial_frequency(ramp) == pytest.approx(math.hypot(sx, sy), rel=1e-12)
    assert average_gradient(ramp) == pytest.approx(math.sqrt((sx * sx + sy * sy) / 2.0), rel=1e-12)


def test_sf_and_ag_of_a_constant_are_zero() -> None:
    flat = np.full((H, W), 90, np.uint8)
    assert spatial_frequency(flat) == 0.0
    assert average_gradient(flat) == 0.0


# ------------------------------------------------------------------ two-image metrics


def test_mutual_information_in_bits() -> None:
    img = textured(1)
    assert mutual_information(img, img) == pytest.approx(entropy(img), abs=1e-12)
    # Two equal two-level images share exactly 1 bit (sklearn would say ln 2 = 0.693 nats).
    assert mutual_information(half_half(), half_half(10, 90)) == pytest.approx(1.0, abs=1e-12)
    # Independent halves (left/right vs top/bottom split): the joint histogram factorises.
    top_bottom = np.full((H, W), 50, np.uint8)
    top_bottom[H // 2 :] = 200
    assert mutual_information(half_half(), top_bottom) == pytest.approx(0.0, abs=1e-12)


def test_scd_known_values() -> None:
    a = textured(2).astype(np.float64) * 0.5
    b = textured(3).astype(np.float64) * 0.5
    assert scd(a, b, a + b) == pytest.approx(2.0, abs=1e-12)  # each difference IS the other source
    # F equal to IR: the F - IR difference is constant and contributes 0; corr(IR - VIS, IR) remains.
    expected = np.corrcoef((a - b).ravel(), a.ravel())[0, 1]
    assert scd(a, b, a) == pytest.approx(expected, abs=1e-12)


def test_vif_of_identical_images_is_one() -> None:
    img = textured(4)
    assert vif(img, img) == pytest.approx(1.0, abs=1e-9)


def test_vif_matches_sewar_vifp(msrs_pair: tuple[np.ndarray, np.ndarray]) -> None:
    ir, vis = msrs_pair
    ir_f, vis_f = as_grey(ir), as_grey(vis)
    fused = np.maximum(ir_f, vis_f)
    # sewar.vifp(reference, distorted) with its default sigma_nsq = 2, on the same float grey images.
    assert vif(ir, fused) == pytest.approx(vifp(ir_f, fused), rel=1e-9)
    assert vif(vis, fused) == pytest.approx(vifp(vis_f, fused), rel=1e-9)
    # Degenerate windows (flat regions, inverted contrast) follow the reference too.
    flat_patch = textured(5).astype(np.float64)
    flat_patch[:20, :30] = 128.0
    inverted = 255.0 - textured(5).astype(np.float64)
    assert vif(flat_patch, inverted) == pytest.approx(vifp(flat_patch, inverted), rel=1e-9, abs=1e-12)
    assert vif(inverted, flat_patch) == pytest.approx(vifp(inverted, flat_patch), rel=1e-9, abs=1e-12)


def test_vif_rejects_images_too_small_for_four_scales() -> None:
    small = np.zeros((40, 64), np.uint8)
    with pytest.raises(ImageShapeError, match="at least 41"):
        vif(small, small)


def test_qabf_known_values() -> None:
    img = textured(6)
    assert qabf(img, img, img) == pytest.approx(QABF_PERFECT, abs=1e-12)
    assert pytest.approx(0.97480, abs=1e-5) == QABF_PERFECT
    # A black fused image keeps no edge at all: only the sigmoids' floor remains.
    assert qabf(img, textured(7), np.zeros_like(img)) < 1e-3
    # Fused equal to one source keeps that source's edges fully and only part of the other's.
    partial = qabf(img, textured(7), img)
    assert 0.3 < partial < QABF_PERFECT
    assert math.isnan(qabf(np.zeros_like(img), np.zeros_like(img), img))  # no source edges: undefined


def test_ssim_uses_skimage_with_stated_settings(msrs_pair: tuple[np.ndarray, np.ndarray]) -> None:
    img = textured(8)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    ir, vis = msrs_pair
    ir_f, vis_f = as_grey(ir), as_grey(vis)
    reference = structural_similarity(
        ir_f, vis_f, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )  # float64: ours runs in float32 for speed
    assert ssim(ir, vis) == pytest.approx(reference, abs=1e-5)


# ------------------------------------------------------------------ the suite


def test_suite_when_fused_equals_both_sources() -> None:
    img = textured(9)
    m = fusion_metrics(img, img, img)
    assert list(m) == list(FUSION_METRICS)
    assert m["EN"] == pytest.approx(entropy(img))
    assert m["MI"] == pytest.approx(2.0 * entropy(img), abs=1e-12)  # sum over the two sources
    assert m["VIF"] == pytest.approx(2.0, abs=1e-9)
    assert m["SSIM"] == pytest.approx(2.0, abs=1e-6)
    assert m["Qabf"] == pytest.approx(QABF_PERFECT, abs=1e-12)
    assert m["SCD"] == 0.0  # both differences are zero images: no complementary information


def test_suite_subset_and_unknown_names() -> None:
    img = textured(10)
    assert list(fusion_metrics(img, img, img, names=("SD", "EN"))) == ["SD", "EN"]
    with pytest.raises(ValueError, match="unknown fusion metric"):
        fusion_metrics(img, img, img, names=("EN", "PSNR"))


def test_colour_input_is_reduced_to_luma(msrs_pair: tuple[np.ndarray, np.ndarray]) -> None:
    ir, vis = msrs_pair
    y = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)[:, :, 0]
    assert np.array_equal(as_grey(vis), y.astype(np.float64))
    assert np.array_equal(as_grey(cv2.merge((ir, ir, ir))), ir)  # IR stored as 3 equal channels
    as_float = as_grey(vis.astype(np.float64))  # float colour: same weights, no rounding
    assert np.abs(as_float - y).max() <= 0.5 + 1e-9


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((H, W), np.uint16), "uint8 or float"),
        (np.full((H, W), 0.5), r"\[0, 1\] scale"),
        (np.full((H, W), 300.0), r"must lie in \[0, 255\]"),
        (np.full((H, W), np.nan), "NaN"),
        (np.zeros((H, W, 4), np.uint8), "HxW or HxWx3"),
    ],
)
def test_bad_images_raise_clear_errors(image: np.ndarray, match: str) -> None:
    with pytest.raises(ImageShapeError, match=match):
        fusion_metrics(image, textured(0), textured(0))


def test_sizes_must_agree() -> None:
    with pytest.raises(ImageShapeError, match="one size"):
        fusion_metrics(textured(0), textured(1), textured(2)[:, :-1])


def test_real_msrs_pair_average_fusion(msrs_pair: tuple[np.ndarray, np.ndarray]) -> None:
    ir, vis = msrs_pair
    avg = (as_grey(ir) + as_grey(vis)) / 2.0
    noise = np.random.default_rng(0).integers(0, 256, avg.shape).astype(np.uint8)
    m_avg = fusion_metrics(avg, ir, vis)
    m_noise = fusion_metrics(noise, ir, vis)
    assert all(math.isfinite(v) for v in m_avg.values()), m_avg
    assert 3.0 < m_avg["EN"] < 8.0
    assert 5.0 < m_avg["SD"] < 128.0
    assert 0.5 < m_avg["SF"] < 50.0 and 0.2 < m_avg["AG"] < 30.0
    assert 0.5 < m_avg["MI"] < 16.0
    assert 0.0 < m_avg["SCD"] < 2.0
    assert 0.2 < m_avg["VIF"] < 2.0
    assert 0.1 < m_avg["Qabf"] < QABF_PERFECT
    assert 0.5 < m_avg["SSIM"] < 2.0
    # Average fusion carries the sources; noise does not (it only wins on the sharpness metrics).
    for name in ("MI", "VIF", "Qabf", "SSIM", "SCD"):
        assert m_avg[name] > m_noise[name], name
    assert m_noise["EN"] > 7.9 and m_noise["SF"] > m_avg["SF"]
