"""The node's speed levers, tested without DDS: the publish hand-off, optional outputs, fewer copies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fusion_perception.assets import load_sample_pairs as sample_pairs
from fusion_perception.image_encoding import encode_image
from fusion_perception.ros.params import SPECS, settings_from_values
from fusion_perception.ros.worker import HandoffStage
from fusion_perception.runtime.backend import OnnxRuntimeBackend
from fusion_perception.runtime.pipeline import Pipeline, PipelineConfig


def test_handoff_keeps_order_overlaps_the_producer_and_never_holds_more_than_one() -> None:
    done: list[int] = []
    gate = threading.Event()

    def process(item: int) -> None:
        gate.wait(5.0)
        done.append(item)

    stage: HandoffStage[int] = HandoffStage(process, lambda err: None)
    assert stage.put(1)  # taken at once: the producer goes on while 1 is processed
    deadline = time.monotonic() + 5.0
    while stage.idle() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert stage.put(2, timeout=1.0)  # waits in the slot
    assert not stage.put(3, timeout=0.05)  # slot full: the producer is held back, nothing queues
    gate.set()
    assert stage.put(3, timeout=5.0)
    stage.stop()
    assert done == [1, 2, 3] and stage.idle()
    assert not stage.put(4)  # stopped


def test_handoff_reports_errors_and_keeps_running() -> None:
    errors: list[BaseException] = []
    done: list[int] = []

    def process(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        done.append(item)

    stage: HandoffStage[int] = HandoffStage(process, errors.append)
    stage.put(1)
    stage.put(2)
    stage.stop()
    assert done == [2] and [str(e) for e in errors] == ["boom"]


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    (_, ir, visible), = sample_pairs(1)
    return ir, visible


def test_colour_restoration_off_skips_only_the_fused_image(model_path: Path, pair: tuple) -> None:
    backend = OnnxRuntimeBackend(model_path, threads=1)
    full = Pipeline(backend)(*pair)
    lean_pipeline = Pipeline(backend, PipelineConfig(restore_colour=False))
    lean = lean_pipeline(*pair)
    assert full.fused_bgr is not None and lean.fused_bgr is None
    np.testing.assert_array_equal(lean.labels, full.labels)
    np.testing.assert_array_equal(lean.detections.boxes, full.detections.boxes)
    with pytest.raises(ValueError, match="restore_colour"):
        lean_pipeline.segmentation_overlay(lean)


def test_settings_turn_colour_restoration_off_only_when_no_image_output_needs_it() -> None:
    from fusion_perception.ros.pipeline_setup import pipeline_config as config

    for fused, overlay in ((True, True), (True, False), (False, True), (False, False)):
        s = settings_from_values({"publish_fused": fused, "publish_overlay": overlay})
        assert config(s).restore_colour == (fused or overlay)
    defaults = settings_from_values({})
    assert defaults.publish_fused and defaults.publish_overlay and not defaults.publish_thread
    assert not SPECS["publish_fused"].read_only and SPECS["publish_thread"].read_only


def test_encode_image_shares_a_ready_array_and_copies_only_when_it_must() -> None:
    bgr = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    *_, data = encode_image(bgr)
    assert data.readonly and np.shares_memory(np.frombuffer(data, np.uint8), bgr)  # no copy
    *_, rgb = encode_image(bgr, "rgb8")
    assert not np.shares_memory(np.frombuffer(rgb, np.uint8), bgr)  # channel swap: a copy
    np.testing.assert_array_equal(np.frombuffer(rgb, np.uint8).reshape(4, 6, 3), bgr[:, :, ::-1])
