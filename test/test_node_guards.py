"""Input guards and honest status (docs/ROBOT.md section 5), on the real node process over DDS.

Oversized frames are dropped with a reason; the diagnostics text gives the numbers the counters
moved by; the offset of unpaired frames is shown; a typo in the params file fails configure naming
the closest key; a YAML error is one line; the level follows the lifecycle state; the shutdown
transition ends the process.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
LIMIT = 400_000  # pixels: 640x480 (307 200) passes, 800x600 (480 000) does not


@pytest.fixture
def client(ros_context) -> Iterator[tuple[object, object]]:
    from conftest import client_node

    with client_node(ros_context, "guards_client") as pair:
        yield pair


def _statuses(client, name: str, seen: list) -> object:
    from diagnostic_msgs.msg import DiagnosticArray

    def keep(msg) -> None:
        seen.extend(s for s in msg.status if s.name.split(":")[0].endswith(f"/{name}"))

    return client[0].create_subscription(DiagnosticArray, "/diagnostics", keep, 50)


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _text_matches_counters(statuses: list) -> None:
    """Each "N <stream> frame(s)/pair(s) dropped: <reason>" equals what that counter moved by."""
    for before, after in itertools.pairwise(statuses):
        old, new = _values(before), _values(after)
        for count, unit, reason in re.findall(r"(\d+) (ir frame|visible frame|pair)\(s\) dropped: (\w+)",
                                              after.message):
            key = f"dropped_{unit.split()[0]}_{reason}"
            moved = int(new[key]) - int(old.get(key, 0))
            assert moved == int(count), (after.message, key, old.get(key), new[key])


def test_oversized_frames_unpaired_offsets_and_diagnostics_text(client, model_path: Path, tmp_path: Path,
                                                                ros_context) -> None:
    from conftest import NodeProcess

    from fusion_perception.assets import load_sample_pairs as sample_pairs
    from fusion_perception.ros.client import OutputCollector, PairPublisher, spin_until

    name = "guards_node"
    params = {"model_file_path": model_path, "max_input_pixels": LIMIT, "diagnostics_period_s": 0.2,
              "input_qos": "reliable"}
    node = NodeProcess(tmp_path / "node.log", params, name=name)
    pub = PairPublisher("guards_publisher", reliable=True, context=ros_context)
    col = OutputCollector("guards_collector", node_name=name, keys=("detections",), context=ros_context)
    executor = client[1]
    for n in (pub, col):
        executor.add_node(n)
    statuses: list = []
    sub = _statuses(client, name, statuses)
    try:
        assert spin_until(executor, lambda: pub.matched() and len(col.label_info) == 2, 60.0), node.log()
        spin_until(executor, lambda: False, 1.0)
        _, ir, vi = next(sample_pairs(1))
        big_ir = np.zeros((600, 800), np.uint8)
        big_vi = np.zeros((600, 800, 3), np.uint8)
        for _ in range(3):
            pub.publish_pair(big_ir, big_vi)
        too_large = lambda: int(col.latest_values().get("dropped_visible_too_large", 0)) == 3  # noqa: E731
        assert spin_until(executor, too_large, 15.0), col.latest_values()
        assert int(col.latest_values()["dropped_ir_too_large"]) == 3
        reason = "800x600 = 480000 pixels is more than max_input_pixels = 400000"
        told = lambda: any(reason in s.message for s in statuses)  # noqa: E731 (its own subscription)
        assert spin_until(executor, told, 5.0), [s.message for s in statuses[-5:]]
        stamp = pub.publish_pair(ir, vi)  # the node keeps serving
        assert spin_until(executor, lambda: col.complete(stamp, ("detections",)), 30.0), node.log()[-2000:]

        t0 = time.time_ns()  # IR 0.5 s after visible, pairs 1 s apart: nothing can pair
        for i in range(4):
            pub.publish_pair(ir, vi, stamp_ns=t0 + i * 1_000_000_000, ir_offset_ns=500_000_000)
            spin_until(executor, lambda: False, 0.1)
        # visible - IR of frames sent together: -500 ms, give or take the two frames' transport and
        # decode times (a frame's arrival is taken after decoding, on a possibly busy executor)
        offset = lambda: abs(float(col.latest_values().get("unpaired_offset_ms_last", "nan")) + 500.0) < 100.0  # noqa: E731
        assert spin_until(executor, offset, 15.0), col.latest_values()
        assert float(col.latest_values()["skew_ms_max"]) < 15.0  # paired frames only: no clue there
        _text_matches_counters(statuses)
    finally:
        client[0].destroy_subscription(sub)
        for n in (pub, col):
            executor.remove_node(n)
            n.destroy_node()
        node.stop()


def test_typo_in_params_file_fails_configure_naming_the_closest_key(client, model_path: Path,
                                                                    tmp_path: Path) -> None:
    from conftest import NodeProcess

    from fusion_perception.ros.client import spin_until

    params = tmp_path / "typo.yaml"
    params.write_text((REPO / "config" / "fusion_perception.yaml").read_text()
                      .replace("    sync_slop_s: 0.015", "    sync_slop: 0.010"))
    name = "typo_node"
    node = NodeProcess(tmp_path / "node.log", {"model_file_path": model_path, "diagnostics_period_s": 0.2},
                       params_file=params, name=name)
    statuses: list = []
    sub = _statuses(client, name, statuses)
    expected = "unknown parameter 'sync_slop' (did you mean 'sync_slop_s'?)"
    try:
        errors = lambda: [s for s in statuses if s.level[0] == 2 and expected in s.message]  # noqa: E731
        assert spin_until(client[1], lambda: len(errors()) >= 3, 30.0), [s.message for s in statuses[-3:]]
        assert errors()[-1].message.startswith("configure failed: ParameterValueError: ")
        assert expected in node.log() and node.alive()
    finally:
        client[0].destroy_subscription(sub)
        node.stop()


def test_yaml_error_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    from conftest import node_command

    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    sync_slop_s: [0.1\n    queue_size: 5\n")
    done = subprocess.run(node_command("--params-file", str(bad)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"fusion_perception_node: error: parameters file {bad}: line 4, column 15:")


def test_level_follows_the_lifecycle_state_and_shutdown_ends_the_process(client, model_path: Path,
                                                                         tmp_path: Path) -> None:
    from conftest import NodeProcess, lifecycle_transition

    from fusion_perception.ros.client import spin_until

    name = "state_node"
    node = NodeProcess(tmp_path / "node.log", {"model_file_path": model_path, "autostart": False,
                                               "diagnostics_period_s": 0.2}, name=name)
    statuses: list = []
    sub = _statuses(client, name, statuses)

    def latest(level: int, text: str) -> bool:
        return bool(statuses) and statuses[-1].level[0] == level and statuses[-1].message == text

    try:
        unconfigured = "unconfigured: autostart is false: waiting for a configure transition"
        last = lambda: [s.message for s in statuses[-3:]]  # noqa: E731
        assert spin_until(client[1], lambda: latest(2, unconfigured), 30.0), last()
        assert lifecycle_transition(*client, name, "configure")
        inactive = "inactive: configured; waiting for activate"
        assert spin_until(client[1], lambda: latest(1, inactive), 10.0), last()
        assert lifecycle_transition(*client, name, "shutdown")
        node.proc.wait(15)
        assert node.proc.returncode == 0, node.log()[-2000:]
        assert "shutdown transition: exiting" in node.log()
    finally:
        client[0].destroy_subscription(sub)
        node.stop()


def _private_mb(pid: int) -> float:
    """Resident private (anonymous) memory of ``pid`` in MB: what a retained buffer would add.

    Shared memory is left out: the sending camera's Fast DDS segment, mapped by the node to read a
    frame, is bounded by the profile's segment size and shared with the camera (docs/ROBOT.md)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no RssAnon in /proc/{pid}/status")


def test_dropped_oversized_frames_leave_no_private_memory_behind(ros_context, model_path: Path,
                                                                  tmp_path: Path) -> None:
    """Two 4000x3000 pairs (48 MB a pair) dropped as too_large: private memory stays put.

    With rmw_fastrtps's default reader memory policy (preallocated, grown by realloc) each reader
    kept a buffer the size of the largest frame it ever received: +45 MB for good."""
    from conftest import NodeProcess, spinning

    from fusion_perception.assets import load_sample_pairs as sample_pairs
    from fusion_perception.ros.client import OutputCollector, PairPublisher, spin_until

    node = NodeProcess(tmp_path / "node.log", {"model_file_path": model_path, "input_qos": "reliable",
                                               "diagnostics_period_s": 0.2}, name="memory_node")
    pub = PairPublisher("memory_publisher", reliable=True, context=ros_context)
    col = OutputCollector("memory_collector", node_name="memory_node", keys=("detections",),
                          context=ros_context)
    _, ir, vi = next(sample_pairs(1))

    def serve(n: int) -> None:
        for _ in range(n):
            stamp = pub.publish_pair(ir, vi)
            assert spin_until(executor, lambda s=stamp: col.complete(s, ("detections",)), 30.0), \
                node.log()[-2000:]

    try:
        with spinning(ros_context, pub, col) as executor:
            assert spin_until(executor, lambda: pub.matched() and len(col.label_info) == 2, 60.0), \
                node.log()[-3000:]
            serve(20)  # warm-up: ONNX Runtime's arena, the image buffers of a normal pair
            spin_until(executor, lambda: False, 1.0)
            before = _private_mb(node.proc.pid)
            big_ir, big_vi = np.zeros((3000, 4000), np.uint8), np.zeros((3000, 4000, 3), np.uint8)
            for _ in range(2):
                pub.publish_pair(big_ir, big_vi)
            dropped = lambda: int(col.latest_values().get("dropped_visible_too_large", 0)) == 2  # noqa: E731
            assert spin_until(executor, dropped, 30.0), col.latest_values()
            serve(20)
            spin_until(executor, lambda: False, 1.0)
            growth = _private_mb(node.proc.pid) - before
    finally:
        node.stop()
    assert growth < 20.0, f"private memory grew by {growth:.1f} MB after two dropped 4000x3000 pairs"
