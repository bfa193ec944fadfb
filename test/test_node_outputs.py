"""The real node over real DDS: real MSRS pairs in, every output back with the input's stamp.

One node subprocess (the console script with the package's params file) serves the whole module;
the test process publishes pairs and collects outputs with the harness nodes in
``fusion_perception.ros.client``. Pairs are sent in lockstep (next pair after the previous outputs
arrived), so these tests check correctness, not throughput (benchmarks/bench_runtime.py does that).
Inputs are sent reliably (``input_qos: reliable``): best-effort 900 kB frames between processes can
be lost, which would make a lockstep test flaky; test_node_lifecycle.py covers the sensor-data default.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

N_PAIRS = 4
SLOP_S = 0.015
STALE_S = 1.5  # above the gaps between the lockstep pairs of these tests, so none runs degraded
QUEUE = 5


@dataclass
class Graph:
    node: object  # conftest.NodeProcess
    executor: object
    pub: object  # PairPublisher
    col: object  # OutputCollector
    pairs: list

    def spin_until(self, done, timeout_s: float = 15.0) -> bool:
        from fusion_perception.ros.client import spin_until

        ok = spin_until(self.executor, done, timeout_s)
        assert self.node.alive(), f"node process died:\n{self.node.log()[-3000:]}"
        return ok

    def send_and_wait(self, ir, visible, **kw) -> int:
        stamp = self.pub.publish_pair(ir, visible, **kw)
        got = lambda: sorted(self.col.by_stamp[stamp].messages) if stamp in self.col.by_stamp else []  # noqa: E731
        assert self.spin_until(lambda: self.col.complete(stamp, self.col.KEYS)), (
            f"outputs for stamp {stamp} missing: got {got()}\n"
            f"diagnostics: {self.col.latest_values()}\nnode log:\n{self.node.log()[-2000:]}"
        )
        return stamp

    def counter(self, key: str) -> int:
        return int(self.col.latest_values().get(key, 0))

    def wait_counter_above(self, key: str, before: int, timeout_s: float = 10.0) -> int:
        self.spin_until(lambda: self.counter(key) > before, timeout_s)
        assert self.counter(key) > before, f"{key} stayed at {before}: {self.col.latest_values()}"
        return self.counter(key)


@pytest.fixture(scope="module")
def graph(ros_context, model_path: Path, tmp_path_factory) -> Iterator[Graph]:
    from conftest import NodeProcess
    from rclpy.executors import SingleThreadedExecutor

    from fusion_perception.assets import load_sample_pairs as sample_pairs
    from fusion_perception.ros.client import OutputCollector, PairPublisher

    node = NodeProcess(tmp_path_factory.mktemp("node") / "node.log", {
        "model_file_path": model_path, "sync_slop_s": SLOP_S, "stale_input_s": STALE_S,
        "diagnostics_period_s": 0.2, "queue_size": QUEUE, "threads": 1, "input_qos": "reliable",
    })
    executor = SingleThreadedExecutor(context=ros_context)
    pub, col = PairPublisher(reliable=True, context=ros_context), OutputCollector(context=ros_context)
    executor.add_node(pub)
    executor.add_node(col)
    g = Graph(node, executor, pub, col, list(sample_pairs(N_PAIRS)))
    try:
        # Handshake: the node is active once its latched LabelInfo arrives and it subscribes to us.
        assert g.spin_until(lambda: pub.matched() and len(col.label_info) == 2, 30.0), node.log()[-3000:]
        # DDS can lose the first messages after discovery (docs/DESIGN.md "Conventions")
        g.spin_until(lambda: False, 1.0)
        yield g
    finally:
        executor.shutdown()
        pub.destroy_node()
        col.destroy_node()
        node.stop()


def _check_outputs(g: Graph, stamp: int, size: tuple[int, int]) -> None:
    from fusion_perception.ros.messages import image_to_array, stamp_to_ns

    got = g.col.by_stamp[stamp].messages
    width, height = size
    n_seg = len(g.col.label_info["segmentation"].class_map)
    n_det = len(g.col.label_info["detections"].class_map)
    for key in ("fused", "labels", "overlay", "detections"):
        msg = got[key][0]
        assert stamp_to_ns(msg.header.stamp) == stamp
        assert msg.header.frame_id == "visible_camera", f"{key} does not carry the visible header"
    for key, enc in (("fused", "bgr8"), ("labels", "mono8"), ("overlay", "bgr8")):
        img = got[key][0]
        assert (img.encoding, img.width, img.height) == (enc, width, height)
    labels = image_to_array(got["labels"][0])
    assert labels.max() < n_seg
    for det in got["detections"][0].detections:
        b = det.bbox
        x1, x2 = b.center.position.x - b.size_x / 2, b.center.position.x + b.size_x / 2
        y1, y2 = b.center.position.y - b.size_y / 2, b.center.position.y + b.size_y / 2
        assert -1e-3 <= x1 <= x2 <= width + 1e-3 and -1e-3 <= y1 <= y2 <= height + 1e-3
        (hyp,) = det.results
        assert 0 <= int(hyp.hypothesis.class_id) < n_det
        assert 0.0 <= hyp.hypothesis.score <= 1.0


def test_real_pairs_give_every_output_with_input_stamps(graph: Graph) -> None:
    stamps = [graph.send_and_wait(ir, vi) for _, ir, vi in graph.pairs]
    assert len(stamps) == N_PAIRS
    for stamp in stamps:
        _check_outputs(graph, stamp, (640, 480))
    assert sum(len(graph.col.by_stamp[s].messages["detections"][0].detections) for s in stamps) > 0
    assert graph.spin_until(lambda: graph.counter("outputs") >= N_PAIRS)
    values = graph.col.latest_values()
    assert values["backend"] == "onnxruntime" and values["backend_state"] == "active"
    assert float(values["pipeline_ms_p95"]) > 0
    names = [c.class_name for c in graph.col.label_info["detections"].class_map]
    assert names[:1] == ["person"]


def test_mono16_thermal(graph: Graph) -> None:
    _, ir, vi = graph.pairs[0]
    rng = np.random.default_rng(0)
    ir16 = (ir.astype(np.uint16) * 40 + 20000 + rng.integers(0, 30, ir.shape)).astype(np.uint16)
    stamp = graph.send_and_wait(ir16, vi)
    _check_outputs(graph, stamp, (640, 480))


def test_ir_offset_within_slop_pairs_every_frame(graph: Graph) -> None:
    for _, ir, vi in graph.pairs:
        stamp = graph.send_and_wait(ir, vi, ir_offset_ns=int(SLOP_S * 0.6e9))
        _check_outputs(graph, stamp, (640, 480))


def test_ir_offset_beyond_slop_pairs_nothing_and_reports_drops(graph: Graph) -> None:
    graph.spin_until(lambda: False, 0.5)  # let a fresh status carry the current counters
    before = graph.counter("dropped_ir_unpaired") + graph.counter("dropped_visible_unpaired")
    paired_before = graph.counter("paired")
    t0 = time.time_ns()
    offset = int(3 * SLOP_S * 1e9)
    stamps = [graph.pub.publish_pair(ir, vi, stamp_ns=t0 + i * 100_000_000, ir_offset_ns=offset)
              for i, (_, ir, vi) in enumerate(graph.pairs)]
    key_sum = lambda: graph.counter("dropped_ir_unpaired") + graph.counter("dropped_visible_unpaired")  # noqa: E731
    assert graph.spin_until(lambda: key_sum() >= before + len(stamps) - 1, 10.0), graph.col.latest_values()
    graph.spin_until(lambda: False, 0.5)
    assert not any(s in graph.col.by_stamp for s in stamps)
    assert graph.counter("paired") == paired_before
    # ... and the node keeps serving
    _, ir, vi = graph.pairs[0]
    graph.send_and_wait(ir, vi)


def _bad_unsupported_encoding(graph: Graph, ir, vi) -> str:
    from fusion_perception.ros.messages import array_to_image

    msg = array_to_image(vi, _header())
    msg.encoding = "yuv422"
    graph.pub.publish_pair(ir, msg)
    return "dropped_visible_unsupported_encoding"


def _bad_step_mismatch(graph: Graph, ir, vi) -> str:
    from fusion_perception.ros.messages import array_to_image

    msg = array_to_image(vi, _header())
    msg.step += 16  # data no longer holds height * step bytes
    graph.pub.publish_pair(ir, msg)
    return "dropped_visible_bad_layout"


def _bad_size_mismatch(graph: Graph, ir, vi) -> str:
    graph.pub.publish_pair(np.ascontiguousarray(ir[::2, ::2]), vi)
    return "dropped_pair_size_mismatch"


def _bad_out_of_order(graph: Graph, ir, vi) -> str:
    stamp = graph.pub.publish_pair(ir, vi)
    graph.pub.ir.publish(_image_at(ir, stamp - 50_000_000))
    return "dropped_ir_out_of_order"


def _bad_one_camera_silent(graph: Graph, ir, vi) -> str:
    """Visible alone for 2.5 x stale_input_s: WARN, and degraded outputs (camera_loss_policy: degrade)."""
    from fusion_perception.ros.messages import array_to_image

    t_end = time.monotonic() + 2.5 * STALE_S
    while time.monotonic() < t_end:
        graph.pub.visible.publish(array_to_image(vi, _header()))
        graph.spin_until(lambda: False, 0.05)
    warned = lambda: any("no usable ir frames" in s.message for s in graph.col.diagnostics[-8:])  # noqa: E731
    assert graph.spin_until(warned, STALE_S * 6), [s.message for s in graph.col.diagnostics[-8:]]
    return "outputs_degraded"


def _header():
    from std_msgs.msg import Header

    h = Header(frame_id="visible_camera")
    h.stamp.sec, h.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
    return h


def _image_at(image, stamp_ns: int):
    from fusion_perception.ros.messages import array_to_image

    h = _header()
    h.frame_id = "ir_camera"
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return array_to_image(image, h)


@pytest.mark.parametrize("make_bad", [_bad_unsupported_encoding, _bad_step_mismatch, _bad_size_mismatch,
                                      _bad_out_of_order, _bad_one_camera_silent],
                         ids=lambda f: f.__name__.removeprefix("_bad_"))
def test_bad_input_is_reported_and_node_keeps_serving(graph: Graph, make_bad) -> None:
    _, ir, vi = graph.pairs[1]
    graph.spin_until(lambda: False, 0.3)
    values_before = dict(graph.col.latest_values())
    key = make_bad(graph, ir, vi)
    before = int(values_before.get(key, 0))
    graph.wait_counter_above(key, before)
    assert any(s.level >= b"\x01" for s in graph.col.diagnostics[-10:]), "no WARN/ERROR status for bad input"
    assert graph.col.latest_values()["last_error"]
    stamp = graph.send_and_wait(ir, vi)
    _check_outputs(graph, stamp, (640, 480))
