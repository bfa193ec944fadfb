"""``fusion_perception.evaluation``: scoring what a Pipeline publishes (bag evaluate, bench_precision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusion_perception.evaluation import evaluate_pipeline, ir_as_seen
from fusion_perception.metrics.fusion import FUSION_METRICS
from fusion_perception.preprocessing import GainControl, PreprocessConfig
from fusion_perception.runtime.backend import OnnxRuntimeBackend
from fusion_perception.runtime.pipeline import Pipeline, PipelineConfig


def test_ir_as_seen_applies_gain_and_registration() -> None:
    counts = np.tile(np.linspace(1000, 2000, 64, dtype=np.uint16), (32, 1))
    fixed = PreprocessConfig(gain=GainControl(mode="fixed", low=1000, high=2000))
    ir8 = ir_as_seen(counts, (64, 32), fixed)
    assert ir8.dtype == np.uint8 and ir8[0, 0] == 0 and ir8[0, -1] == 255
    shift = PreprocessConfig(homography=((1, 0, 5), (0, 1, 0), (0, 0, 1)))
    grey = np.arange(64, dtype=np.uint8)[None].repeat(32, 0)
    assert ir_as_seen(grey, (64, 32), shift)[0, 10] == grey[0, 5]  # moved right by 5 px
    assert ir_as_seen(grey, (64, 32), PreprocessConfig()) is grey  # 8-bit, co-aligned: as is


def test_scores_every_pair_with_all_metrics_and_map(model_path: Path, sample_pairs_msrs: Path) -> None:
    """Two shipped sample pairs (MSRS val pairs with their fusion labels, in the MSRS layout)."""
    root = sample_pairs_msrs
    pipeline = Pipeline(OnnxRuntimeBackend(model_path, threads=1), PipelineConfig(score_threshold=0.05))
    seen: list[str] = []
    names = (root / "splits" / "val.txt").read_text().split()[:2]
    report = evaluate_pipeline(pipeline, root, names, on_result=lambda stem, _: seen.append(stem))
    assert seen == names and report["num_pairs"] == 2
    assert list(report["fusion"]) == list(FUSION_METRICS)
    assert all(np.isfinite(list(report["fusion"].values())))
    assert report["detection"]["num_images"] == 2 and "mAP50" in report["detection"]
    assert {"inference", "total"} <= set(report["timings_ms"])
    with pytest.raises(ValueError, match="restore_colour"):
        evaluate_pipeline(Pipeline(pipeline.backend, PipelineConfig(restore_colour=False)), root, names)
