"""Time going backwards (issue 9, item 4): ``bag play --loop`` into the node gives outputs in every pass.

A looped bag republishes its recorded stamps, so at each loop the stamps jump back by the bag's
length. Before the fix every frame of the second pass was an out-of-order drop until the stamps
passed the old maximum (with a bag, never). Now a jump back larger than ``time_jump_reset_s``
restarts pairing, logs INFO and counts ``stamp_resets``.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fusion_perception.bag.make import MakeOptions, make_bag

pytestmark = pytest.mark.ros

MSRS = Path("/work/shared/datasets/msrs")
PAIRS, RATE_HZ = 8, 10.0  # one pass spans 0.7 s: the jump back at each loop
NODE = "timejump_node"


def _backward_steps(stamps: list[int]) -> int:
    return sum(b < a for a, b in itertools.pairwise(stamps))


def test_looped_bag_keeps_giving_outputs(ros_context, model_path: Path, tmp_path: Path) -> None:
    from conftest import NodeProcess, spinning
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from vision_msgs.msg import Detection2DArray

    from fusion_perception.ros.messages import stamp_to_ns
    from fusion_perception.ros.probe import OutputCollector, spin_until

    bag = tmp_path / "bag"
    make_bag(MSRS, bag, MakeOptions(limit=PAIRS, rate_hz=RATE_HZ, labels_dir=""))
    params = {"model_file_path": model_path, "time_jump_reset_s": 0.3, "diagnostics_period_s": 0.2}
    node = NodeProcess(tmp_path / "node.log", params, name=NODE)
    col = OutputCollector("timejump_collector", node_name=NODE, keys=(), context=ros_context)
    listener = Node("timejump_listener", context=ros_context)
    stamps: list[int] = []  # detection stamps in arrival order
    listener.create_subscription(Detection2DArray, "detections",
                                 lambda m: stamps.append(stamp_to_ns(m.header.stamp)),
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    player = None
    try:
        with spinning(ros_context, col, listener) as executor:
            try:
                assert spin_until(executor, lambda: len(col.label_info) == 2, 60.0), node.log()[-3000:]
                player = subprocess.Popen(
                    [sys.executable, "-m", "fusion_perception.cli", "bag", "play", str(bag), "--loop",
                     "--wait-for-subscribers", "60", "--settle", "1.0"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                three_passes = lambda: _backward_steps(stamps) >= 2 and stamps[-1] != max(stamps)  # noqa: E731
                done = spin_until(executor, three_passes, 90.0)
                assert done, (f"outputs {len(stamps)}, backward steps {_backward_steps(stamps)}\n"
                              f"{node.log()[-2000:]}")
                resets = lambda: int(col.latest_values().get("stamp_resets", 0)) >= 2  # noqa: E731
                assert spin_until(executor, resets, 10.0), col.latest_values()
                assert "pairing restarts" in node.log()
                assert int(col.latest_values().get("dropped_visible_out_of_order", 0)) == 0
            finally:
                if player is not None:
                    player.send_signal(signal.SIGINT)
                    player.wait(15)
    finally:
        node.stop()
