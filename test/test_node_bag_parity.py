"""The node and ``bag evaluate`` give the same messages for the same pair and parameters.

Both build their backend, pipeline settings and vision_msgs through one code path
(``ros/pipeline_setup.py``, ``vision_messages.py``); this test holds them to it end to end. Three
bundled sample pairs go into a bag; ``bag evaluate`` writes its outputs bag, and the real node
process (same params file, same overrides) gets the same frames, with the same stamps and frame
ids, from a publisher over DDS. Every output message must agree: image bytes, detections field by
field, and both latched class tables. Both run ONNX Runtime on one thread, which is deterministic.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from rosbags.rosbag2 import Reader

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "fusion_perception.yaml"
# Not the shipped defaults, so a value one side ignored would show.
OVERRIDES: dict[str, object] = {"score_threshold": 0.3, "iou_threshold": 0.6, "max_detections": 7,
                                "threads": 1, "input_qos": "reliable", "stale_input_s": 5.0}
N_PAIRS = 3


def _bag_outputs(path: Path) -> dict[str, dict[int, Any]]:
    """Topic -> {stamp ns: message} of an outputs bag (label tables keyed by their one stamp)."""
    from fusion_perception.bag.messages import stamp_ns, typestore

    out: dict[str, dict[int, Any]] = {}
    with Reader(path) as reader:
        for conn, _, raw in reader.messages():
            msg = typestore().deserialize_cdr(raw, conn.msgtype)
            out.setdefault(conn.topic.lstrip("/"), {})[stamp_ns(msg.header)] = msg
    return out


def _detections(msg: Any) -> list[tuple]:
    return [(d.id, d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y,
             d.bbox.center.theta, d.header.frame_id,
             [(r.hypothesis.class_id, r.hypothesis.score, list(r.pose.covariance)) for r in d.results])
            for d in msg.detections]


def _table(msg: Any) -> tuple:
    return [(c.class_id, c.class_name) for c in msg.class_map], msg.threshold


@pytest.fixture(scope="module")
def bag_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from fusion_perception.assets import sample_pairs
    from fusion_perception.bag.cli import main
    from fusion_perception.bag.make import MakeOptions, make_bag

    root = tmp_path_factory.mktemp("parity")
    for pair in sample_pairs()[:N_PAIRS]:
        for folder, src in (("ir", pair.ir), ("vi", pair.visible)):
            (root / "data" / folder).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, root / "data" / folder / f"{pair.name}.png")
    make_bag(root / "data", root / "in", MakeOptions(rate_hz=2.0, labels_dir=""))
    params_file = root / "params.yaml"
    params = {k: v for k, v in OVERRIDES.items() if k != "input_qos"}
    doc = {"/**": {"ros__parameters": {**_shipped_params(), **params}}}
    params_file.write_text(json.dumps(doc))  # JSON is YAML
    assert main(["evaluate", str(root / "in"), "--json", str(root / "eval.json"), "--output-bag",
                 str(root / "out"), "--params-file", str(params_file), "--metrics-every", "0",
                 "--no-progress"]) == 0
    return {"root": root, "outputs": _bag_outputs(root / "out"), "inputs": _bag_inputs(root / "in")}


def _shipped_params() -> dict[str, Any]:
    from fusion_perception.bag.evaluate import load_params_file

    return load_params_file(CONFIG)


def _bag_inputs(path: Path) -> list[tuple[int, Any, Any]]:
    """(visible stamp, IR message, visible message) of each pair in the input bag."""
    from fusion_perception.bag.messages import stamp_ns, typestore

    frames: dict[str, list[Any]] = {"ir": [], "visible": []}
    with Reader(path) as reader:
        for conn, _, raw in reader.messages():
            if conn.msgtype == "sensor_msgs/msg/Image":
                stream = "ir" if "ir" in conn.topic.split("/") else "visible"
                frames[stream].append(typestore().deserialize_cdr(raw, conn.msgtype))
    return [(stamp_ns(v.header), i, v) for i, v in zip(frames["ir"], frames["visible"], strict=True)]


def test_node_and_bag_evaluate_publish_identical_messages(
    bag_run: dict[str, Any], ros_context: object, tmp_path: Path, model_path: Path
) -> None:
    from conftest import NodeProcess, spinning

    from fusion_perception.bag.messages import image_from_msg
    from fusion_perception.ros.client import OutputCollector, PairPublisher, spin_until
    from fusion_perception.ros.messages import stamp_to_ns

    inputs, outputs = bag_run["inputs"], bag_run["outputs"]
    assert len(inputs) == N_PAIRS
    node = NodeProcess(tmp_path / "node.log", {"model_file_path": model_path, **OVERRIDES})
    pub, col = PairPublisher(reliable=True, context=ros_context), OutputCollector(context=ros_context)
    try:
        with spinning(ros_context, pub, col) as executor:
            assert spin_until(executor, lambda: pub.matched() and len(col.label_info) == 2, 60.0), \
                node.log()[-3000:]
            for stamp, ir, vis in inputs:
                sent = pub.publish_pair(image_from_msg(ir), image_from_msg(vis), stamp_ns=stamp,
                                        ir_offset_ns=stamp_to_ns(ir.header.stamp) - stamp,
                                        frame_ids=(ir.header.frame_id, vis.header.frame_id))
                assert spin_until(executor, lambda s=sent: col.complete(s, col.KEYS), 30.0), (
                    f"no outputs for {sent}: {col.latest_values()}\n{node.log()[-2000:]}")
            got = {stamp: col.by_stamp[stamp].messages for stamp, _, _ in inputs}
            tables = dict(col.label_info)
    finally:
        node.stop()

    from fusion_perception.ros.params import SPECS

    topic = {key: SPECS[f"{key}_topic"].default for key in ("fused", "labels", "overlay", "detections")}
    for stamp, _, vis in inputs:
        for key in ("fused", "labels", "overlay"):
            mine, theirs = got[stamp][key][0], outputs[topic[key]][stamp]
            assert (mine.encoding, mine.width, mine.height, mine.step, mine.header.frame_id) == (
                theirs.encoding, theirs.width, theirs.height, theirs.step, theirs.header.frame_id)
            assert bytes(mine.data) == theirs.data.tobytes(), f"{key} of pair {stamp} differs"
        mine, theirs = got[stamp]["detections"][0], outputs[topic["detections"]][stamp]
        assert mine.header.frame_id == theirs.header.frame_id == vis.header.frame_id
        assert _detections(mine) == _detections(theirs), f"detections of pair {stamp} differ"
        assert len(mine.detections) <= OVERRIDES["max_detections"]
    tables_topics = (("detections", "detection_labels_topic"), ("segmentation", "segmentation_labels_topic"))
    for key, param in tables_topics:
        (bag_table,) = outputs[SPECS[param].default].values()
        assert _table(tables[key]) == _table(bag_table), f"{key} class tables differ"
    assert tables["detections"].threshold == pytest.approx(OVERRIDES["score_threshold"])
