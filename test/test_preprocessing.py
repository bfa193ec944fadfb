"""Thermal gain control and the network <-> source box mapping in preprocessing.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_perception.errors import ImageShapeError
from fusion_perception.preprocessing import (
    GainControl,
    PreprocessConfig,
    ResizeMapping,
    prepare_pair,
    thermal_to_unit,
)


def test_fixed_gain_maps_the_window_linearly_and_clips() -> None:
    counts = np.array([[1000, 2000, 3000, 500, 4000]], np.uint16)
    out = thermal_to_unit(counts, GainControl(mode="fixed", low=1000, high=3000))
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0, 0.0, 1.0]], atol=1e-6)
    assert out.dtype == np.float32


def test_percentile_gain_ignores_hot_spots() -> None:
    rng = np.random.default_rng(0)
    counts = rng.normal(20000, 300, (480, 640)).astype(np.uint16)
    counts[:4, :4] = 65000  # a few saturated pixels must not squash the scene
    out = thermal_to_unit(counts, GainControl(low=1.0, high=99.0, subsample=1))
    lo, hi = np.percentile(counts, (1, 99))
    expected = np.clip((counts.astype(np.float32) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert 0.4 < float(np.median(out)) < 0.6


def test_subsampled_percentiles_match_full_ones_on_a_real_frame(msrs_root: Path) -> None:
    ir8 = cv2.imread(str(msrs_root / "ir" / "00001D.png"), cv2.IMREAD_GRAYSCALE)
    counts = (ir8.astype(np.uint16) * 100 + 15000).astype(np.uint16)
    full = GainControl(subsample=1).window(counts)
    sub = GainControl(subsample=4).window(counts)
    width = full[1] - full[0]  # counts are 8-bit steps x 100, so a step is ~1% of this window
    assert abs(full[0] - sub[0]) <= 0.03 * width and abs(full[1] - sub[1]) <= 0.03 * width


def test_flat_frame_gives_a_non_empty_window() -> None:
    lo, hi = GainControl().window(np.full((8, 8), 1234, np.uint16))
    assert hi > lo
    assert np.isfinite(thermal_to_unit(np.full((8, 8), 1234, np.uint16))).all()


def test_eight_bit_ir_is_scaled_not_windowed() -> None:
    np.testing.assert_allclose(thermal_to_unit(np.array([[0, 51, 255]], np.uint8)), [[0, 0.2, 1]], atol=1e-6)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "auto"}, "gain mode"), ({"low": 50, "high": 10}, "high > low"),
    ({"low": -1.0}, "percentiles"), ({"subsample": 0}, "subsample"),
])
def test_bad_gain_settings_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GainControl(**kwargs)


@pytest.mark.parametrize(("source", "network"), [((640, 480), (640, 480)), ((1280, 1024), (640, 512)),
                                                 ((500, 300), (320, 192))])
def test_boxes_round_trip_between_network_and_source(source, network) -> None:
    mapping = ResizeMapping(source, network)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 1, (50, 2)) * network
    wh = rng.uniform(0.01, 0.5, (50, 2)) * network
    boxes = np.concatenate((xy, np.minimum(xy + wh, network)), axis=1).astype(np.float32)
    back = mapping.boxes_to_network(mapping.boxes_to_source(boxes))
    np.testing.assert_allclose(back, boxes, rtol=1e-5, atol=1e-3)


def test_full_network_box_maps_to_full_source_image_and_clips() -> None:
    mapping = ResizeMapping((1280, 1024), (640, 512))
    out = mapping.boxes_to_source(np.array([[0, 0, 640, 512], [-10, 500, 700, 600]], np.float32))
    np.testing.assert_allclose(out, [[0, 0, 1280, 1024], [0, 1000, 1280, 1024]])


def test_box_drawn_on_the_network_input_covers_the_same_object_in_the_source() -> None:
    source = np.zeros((300, 500), np.uint8)
    source[60:150, 100:250] = 255  # object at x 100..250, y 60..150
    mapping = ResizeMapping((500, 300), (320, 192))
    small = cv2.resize(source, mapping.network_size, interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small > 127)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(mapping.boxes_to_source(box), [[100, 60, 250, 150]], atol=2.0)


def test_prepare_pair_rejects_unregistered_size_mismatch() -> None:
    with pytest.raises(ImageShapeError, match="set a homography"):
        prepare_pair(np.zeros((240, 320), np.uint8), np.zeros((480, 640, 3), np.uint8), PreprocessConfig())


def test_small_mono16_ir_is_gain_controlled_as_sent_then_warped_into_the_network_grid() -> None:
    """A 320x256 radiometric IR frame registered onto half of a 1280x720 visible frame: the window
    comes from the IR frame itself (the empty border of the warped frame would have dragged the
    low percentile to 0), and the one warp lands the IR where the homography says, in network pixels."""
    rng = np.random.default_rng(0)
    ir = rng.integers(1000, 2001, (256, 320)).astype(np.uint16)
    ir[100:156, 140:180] = 3000  # a warm block, to find after the warp
    # IR -> visible: scale 2 and shift right by 640, so IR covers x in [640, 1280), y in [0, 512)
    homography = ((2.0, 0.0, 640.0), (0.0, 2.0, 0.0), (0.0, 0.0, 1.0))
    config = PreprocessConfig(network_size=(640, 480), homography=homography)
    prepared = prepare_pair(ir, np.zeros((720, 1280, 3), np.uint8), config)
    net_ir = prepared.ir[0, 0]
    assert net_ir.shape == (480, 640)
    covered = net_ir[: int(512 * 480 / 720) - 2, 322:]  # the IR field of view in network pixels
    lo, hi = GainControl().window(ir)
    expected = np.clip((ir.astype(np.float32) - lo) / (hi - lo), 0, 1)
    assert covered.min() < 0.05 and np.median(covered) == pytest.approx(np.median(expected), abs=0.05)
    assert net_ir[:, :318].max() == 0.0 and net_ir[int(512 * 480 / 720) + 2:].max() == 0.0  # no IR there
    # the warm block: IR rows 100..156, cols 140..180 -> visible x 920..1000, y 200..312 -> network /2, /1.5
    block = net_ir[int(200 / 1.5) + 2:int(312 / 1.5) - 2, 460 + 2:500 - 2]
    assert block.min() == pytest.approx(1.0)
