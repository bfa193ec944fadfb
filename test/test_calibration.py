"""``calibration``: the estimator recovers known homographies from real pairs, and says so when it cannot.

Known answers come from the six shipped MSRS sample pairs (registered, 640x480): their IR frames are
re-sampled through a chosen homography into an IR canvas of another size (``calibration.synthetic``).
MSRS's own registration is off by ~3 px at the corners (benchmarks/results/calibration_cpu.json,
mutual-information check), so tolerances here are 8 px at 640x480, against start errors of ~90 px;
the benchmark measures the accuracy itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_perception.assets import sample_pairs
from fusion_perception.calibration import CalibrationOptions, alignment_score, estimate_homography
from fusion_perception.calibration.estimate import _check_sane
from fusion_perception.calibration.geometry import corner_error, overlap, rescale, size_guess
from fusion_perception.calibration.synthetic import make_ir, random_homography
from fusion_perception.errors import CalibrationError, ImageShapeError
from fusion_perception.preprocessing import to_gray, warp_to_visible

PACKAGE = Path(__file__).resolve().parents[1] / "fusion_perception"


def _samples(size: tuple[int, int] = (640, 480)) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for pair in sample_pairs():
        ir = to_gray(cv2.imread(str(pair.ir), cv2.IMREAD_UNCHANGED))
        vis = cv2.imread(str(pair.visible), cv2.IMREAD_COLOR)
        if size != (640, 480):
            ir = cv2.resize(ir, size, interpolation=cv2.INTER_AREA)
            vis = cv2.resize(vis, size, interpolation=cv2.INTER_AREA)
        out.append((ir, vis))
    return out


def _rig(h: np.ndarray, ir_size: tuple[int, int], size: tuple[int, int] = (640, 480)):
    return [(make_ir(ir, h, ir_size), vis) for ir, vis in _samples(size)]


def test_recovers_a_known_homography_on_real_pairs() -> None:
    ir_size = (320, 256)
    h = random_homography(np.random.default_rng(3), ir_size, (640, 480))
    start_error = corner_error(size_guess(ir_size, (640, 480)), h, ir_size)
    result = estimate_homography(_rig(h, ir_size))
    assert start_error > 50
    assert corner_error(result.homography, h, ir_size) < 8.0
    assert result.score_after > result.score_before + 0.05
    assert len(result.used) >= 5
    assert result.as_parameter()[8] == 1.0 and len(result.as_parameter()) == 9
    assert 0.3 < result.overlap < 1.0 and len(result.overlap_polygon) >= 4


def test_mono16_ir_against_a_larger_visible_frame() -> None:
    """Radiometric 16-bit IR (counts around 20000, not 8-bit x 257) at 640x512 against 960x720."""
    ir_size, vis_size = (640, 512), (960, 720)
    h = random_homography(np.random.default_rng(5), ir_size, vis_size)
    pairs = []
    for ir8, vis in _rig(h, ir_size, vis_size):
        noise = np.random.default_rng(0).integers(0, 6, ir8.shape, np.uint16)
        counts = 21000 + ir8.astype(np.uint16) * 12 + noise
        pairs.append((counts.astype(np.uint16), vis))
    result = estimate_homography(pairs)
    assert result.ir_size == ir_size and result.visible_size == vis_size
    assert corner_error(result.homography, h, ir_size) < 8.0 * 960 / 640


def test_too_few_pairs() -> None:
    pairs = _samples()[:2]
    with pytest.raises(CalibrationError, match="2 pair") as err:
        estimate_homography(pairs)
    assert err.value.reason == "too_few_pairs"


def test_flat_images_have_no_structure() -> None:
    rng = np.random.default_rng(0)
    flat = [(np.clip(100 + rng.normal(0, 2, (480, 640)), 0, 255).astype(np.uint8),
             np.full((480, 640, 3), 128, np.uint8)) for _ in range(4)]
    with pytest.raises(CalibrationError, match="flat") as err:
        estimate_homography(flat + _samples()[:2])
    assert err.value.reason == "no_structure"


def test_pairs_from_different_homographies_are_inconsistent() -> None:
    """Half the pairs seen through one homography, half through another 25 px (at 320) away: parallax."""
    ir_size, size = (160, 128), (320, 240)
    h1 = np.array([[1.6, 0, 30], [0, 1.6, 15], [0, 0, 1.0]])
    h2 = np.array([[1.6, 0, 55], [0, 1.6, 10], [0, 0, 1.0]])
    pairs = _samples(size)
    mixed = [(make_ir(ir, h1 if k % 2 else h2, ir_size), vis) for k, (ir, vis) in enumerate(pairs)]
    with pytest.raises(CalibrationError, match="disagree") as err:
        estimate_homography(mixed)
    assert err.value.reason == "inconsistent"


def test_degenerate_results_are_refused() -> None:
    opts = CalibrationOptions()
    ir, vis = (320, 256), (640, 480)
    mirror = np.array([[-2.0, 0, 640], [0, 2.0, 0], [0, 0, 1]])
    squeeze = np.array([[4.0, 0, 0], [0, 0.5, 100], [0, 0, 1]])
    tiny = np.array([[0.2, 0, 10], [0, 0.2, 10], [0, 0, 1]])
    for h, words in ((mirror, "mirrors"), (squeeze, "near-singular"), (tiny, "covers")):
        with pytest.raises(CalibrationError, match=words) as err:
            _check_sane(h, ir, vis, opts)
        assert err.value.reason == "degenerate"


def test_frames_of_one_camera_must_share_a_size() -> None:
    pairs = _samples()[:3]
    pairs[1] = (cv2.resize(pairs[1][0], (320, 240)), pairs[1][1])
    with pytest.raises(ImageShapeError, match="IR frames"):
        estimate_homography(pairs)


def test_geometry_conventions() -> None:
    """The size guess is identity for equal sizes and maps pixel edges onto pixel edges."""
    assert np.allclose(size_guess((640, 480), (640, 480)), np.eye(3))
    h = size_guess((320, 240), (640, 480))
    assert np.allclose(h @ [-0.5, -0.5, 1], [-0.5, -0.5, 1])
    assert np.allclose(h @ [319.5, 239.5, 1], [639.5, 479.5, 1])
    g = rescale(0.5, 0.25, np.eye(3))
    assert np.allclose(rescale(2.0, 4.0, g), np.eye(3))
    frac, poly = overlap(np.eye(3), (320, 240), (640, 480))
    assert frac == pytest.approx(0.25, abs=1e-3) and len(poly) == 4


def test_alignment_score_prefers_aligned_pairs_and_is_fast() -> None:
    aligned, shifted = [], []
    shift = np.array([[1.0, 0, 10], [0, 1, 0], [0, 0, 1]])
    for ir, vis in _samples():
        gray = to_gray(vis)
        aligned.append(alignment_score(ir, gray))
        shifted.append(alignment_score(warp_to_visible(ir, shift, (640, 480)), gray))
    assert all(0.0 <= s <= 1.0 for s in aligned + shifted)
    assert np.median(aligned) > np.median(shifted) + 0.05
    assert sum(a > s for a, s in zip(aligned, shifted, strict=True)) >= 5
    ir, vis = _samples()[0]
    gray = to_gray(vis)
    t = time.perf_counter()
    for _ in range(20):
        alignment_score(ir, gray)
    assert (time.perf_counter() - t) / 20 < 0.02  # ~1 ms measured; generous on a loaded machine
    assert alignment_score(np.zeros_like(ir), gray) == 0.0
    with pytest.raises(ValueError, match="pixel grid"):
        alignment_score(ir[:100], gray)


def test_estimator_layer_imports_no_torch_rclpy_or_bags() -> None:
    """The estimator and score are for the node too: NumPy + OpenCV only (docs/DESIGN.md "Layers")."""
    from test_layers import _violations

    above = ("runtime", "ros", "bag", "cli", "demo", "backend_factory",
             "models", "training", "export", "teacher")
    banned = ("torch", "rclpy", "rosbags", *(f"fusion_perception.{m}" for m in above))
    found = []
    for path in sorted((PACKAGE / "calibration").glob("*.py")):
        if path.name not in ("cli.py", "sources.py"):
            found += _violations(f"calibration/{path.name}", banned)
    assert found == []
