"""``bag evaluate`` end to end on a small bag of the shipped (real MSRS) sample pairs: summary,
output bag, report, pairing rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from fusion_perception.bag.cli import main
from fusion_perception.bag.make import MakeOptions, make_bag
from fusion_perception.bag.messages import image_from_msg, stamp_ns, typestore
from fusion_perception.metrics.fusion import FUSION_METRICS
from fusion_perception.pairing import StampPairer
from fusion_perception.ros.params import settings_from_values
from fusion_perception.ros.pipeline_setup import pipeline_config
from fusion_perception.runtime.backend import OnnxRuntimeBackend
from fusion_perception.runtime.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]
NAMES = ("00032N", "00404D", "00931N", "01102N")  # shipped sample pairs (conftest.sample_pairs_msrs)


def read_bag(path: Path) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    with Reader(path) as reader:
        for conn, _, raw in reader.messages():
            out.setdefault(conn.topic, []).append(typestore().deserialize_cdr(raw, conn.msgtype))
    return out


@pytest.fixture(scope="module")
def evaluated(
    tmp_path_factory: pytest.TempPathFactory, model_path: Path, sample_pairs_msrs: Path
) -> dict[str, Any]:
    """One CLI run over 4 labelled pairs with 5 ms jitter (inside the node's 15 ms slop)."""
    root = tmp_path_factory.mktemp("evaluate")
    make_bag(sample_pairs_msrs, root / "in", MakeOptions(names=NAMES, rate_hz=10.0, jitter_ms=5.0))
    args = [
        "evaluate",
        str(root / "in"),
        "--json",
        str(root / "eval.json"),
        "--report",
        str(root / "report"),
        "--model",
        str(model_path),
        "--params-file",
        str(REPO / "config" / "fusion_perception.yaml"),
        "--no-progress",
    ]
    assert main(args) == 0
    return {"root": root, "summary": json.loads((root / "eval.json").read_text()), "model": model_path}


def test_summary_counts_latency_metrics_and_map(evaluated: dict[str, Any]) -> None:
    s = evaluated["summary"]
    assert s["throughput"]["pairs"] == 4 and s["throughput"]["pairs_per_s"] > 0
    assert s["pairing"]["paired"] == 4 and s["pairing"]["dropped"] == {"ir": 0, "visible": 0}
    assert 0 < s["pairing"]["max_abs_skew_ms"] <= 5.0
    lat = s["latency_ms"]["total"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert list(s["fusion_metrics"]["mean"]) == list(FUSION_METRICS) and s["fusion_metrics"]["frames"] == 4
    assert all(np.isfinite(v) for v in s["fusion_metrics"]["mean"].values())
    assert all(set(r["metrics"]) == set(FUSION_METRICS) for r in s["frames"])
    det = s["detection"]
    assert det["num_images"] == 4 and det["labelled_pairs"] == 4
    assert 0.0 <= det["mAP50_95"] <= det["mAP50"] <= 1.0
    assert s["output_bag"] == str(evaluated["root"] / "eval_outputs")


def test_output_bag_is_stamped_like_inputs_and_matches_the_pipeline(evaluated: dict[str, Any]) -> None:
    root = evaluated["root"]
    inputs, outputs = read_bag(root / "in"), read_bag(root / "eval_outputs")
    assert {
        "/fused/image",
        "/segmentation/labels",
        "/segmentation/overlay",
        "/detections",
        "/detections/label_info",
    } <= set(outputs)
    vis_headers = [(stamp_ns(m.header), m.header.frame_id) for m in inputs["/visible/image"]]
    for topic in ("/fused/image", "/segmentation/labels", "/segmentation/overlay", "/detections"):
        assert [(stamp_ns(m.header), m.header.frame_id) for m in outputs[topic]] == vis_headers, topic
    counts = [len(m.detections) for m in outputs["/detections"]]
    assert counts == [r["detections"] for r in evaluated["summary"]["frames"]]
    names = [c.class_name for c in outputs["/detections/label_info"][0].class_map]
    assert names == ["person", "bicycle", "car"]
    pipeline = Pipeline(OnnxRuntimeBackend(evaluated["model"]), pipeline_config(settings_from_values({})))
    result = pipeline(image_from_msg(inputs["/ir/image"][0]), image_from_msg(inputs["/visible/image"][0]))
    np.testing.assert_array_equal(image_from_msg(outputs["/fused/image"][0]), result.fused_bgr)
    np.testing.assert_array_equal(image_from_msg(outputs["/segmentation/labels"][0]), result.labels)
    for det, box in zip(outputs["/detections"][0].detections, result.detections.boxes, strict=True):
        assert det.bbox.center.position.x == pytest.approx((box[0] + box[2]) / 2, abs=1e-3)


def test_report_index_links_existing_plots_and_samples(evaluated: dict[str, Any]) -> None:
    report = evaluated["root"] / "report"
    index = (report / "index.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in index.splitlines() if line.startswith("![")]
    assert "latency.png" in links and "metrics.png" in links
    assert sum(link.startswith("samples/") for link in links) == 4
    for link in links:
        image = cv2.imread(str(report / link))
        assert image is not None and image.size > 0, link
    assert "mAP@0.5" in index


def test_pairing_follows_the_node_slop_from_its_params_file(
    tmp_path: Path, model_path: Path, sample_pairs_msrs: Path
) -> None:
    """40 ms jitter at 10 Hz: the node's 15 ms slop drops some pairs; a params file with 60 ms keeps all."""
    make_bag(
        sample_pairs_msrs,
        tmp_path / "in",
        MakeOptions(names=NAMES, rate_hz=10.0, jitter_ms=40.0, seed=1, labels_dir=""),
    )
    default_slop = settings_from_values({}).slop_ns
    config = yaml.safe_load((REPO / "config" / "fusion_perception.yaml").read_text())
    assert default_slop == round(config["/**"]["ros__parameters"]["sync_slop_s"] * 1e9)
    frames = read_bag(tmp_path / "in")
    expected = StampPairer(default_slop, settings_from_values({}).queue_size)
    stream_of = {"/ir/image": "ir", "/visible/image": "visible"}
    with Reader(tmp_path / "in") as reader:
        for conn, _, raw in reader.messages():
            if conn.topic in stream_of:
                msg = typestore().deserialize_cdr(raw, conn.msgtype)
                expected.push(stream_of[conn.topic], stamp_ns(msg.header), None)
    assert 0 < expected.stats.paired < 4, "jitter must push some pairs outside the default slop"
    args = [
        "evaluate",
        str(tmp_path / "in"),
        "--model",
        str(model_path),
        "--no-output-bag",
        "--metrics-every",
        "0",
        "--no-progress",
    ]
    assert main([*args, "--json", str(tmp_path / "a.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())["pairing"]
    assert a["slop_ms"] == default_slop / 1e6
    assert a["paired"] == expected.stats.paired and a["unpaired"] == expected.stats.unpaired
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"sync_slop_s": 0.06}}}))
    assert main([*args, "--json", str(tmp_path / "b.json"), "--params-file", str(params)]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["pairing"]["paired"] == 4 and b["fusion_metrics"]["frames"] == 0 and b["detection"] is None
    assert len(frames["/visible/image"]) == 4
