"""``fusion-perception demo`` end to end: the real node, real DDS, files written, exit status honest."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from fusion_perception.cli import main

pytestmark = pytest.mark.ros


def test_demo_writes_images_and_summary(tmp_path: Path, model_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--output", str(out), "--model", str(model_path), "--pairs", "3", "--rate", "10"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs_sent"] == summary["pairs_complete"] == 3
    assert summary["backend"] == "onnxruntime" and summary["model"]["sha256"]
    assert "fastdds_large_data.xml" in summary["dds_transport"]  # the shipped profile (docs/ROBOT.md)
    assert set(summary["outputs_received"].values()) == {3}
    for frame in summary["frames"]:
        assert frame["missing"] == [] and frame["node_pipeline_ms"]["total"] > 0
        assert all(ms > 0 for ms in frame["latency_ms"].values())
        for sub in ("fused", "overlay", "detections"):
            image = cv2.imread(str(out / sub / f"{frame['name']}.png"))
            assert image is not None and image.shape == (480, 640, 3)


def test_demo_without_a_model_fails_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--output", str(tmp_path), "--model", str(tmp_path / "none.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
