"""Time going backwards (docs/ROBOT.md section 3): a node fed by ``bag play --loop`` outputs in every pass.

A looped bag republishes its recorded stamps, so at each loop the stamps jump back by the bag's
length. A jump back larger than ``time_jump_reset_s`` starts a new pairing epoch, logs INFO and
counts ``stamp_resets`` once per wrap (also when one camera's last frame of a pass arrives after the
other camera's first frame of the next); every pair of every pass is paired.
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

PAIRS, RATE_HZ, PASSES = 8, 10.0, 5  # one pass spans 0.7 s: the jump back at each of 4 wraps
NODE = "timejump_node"


def _backward_steps(stamps: list[int]) -> int:
    return sum(b < a for a, b in itertools.pairwise(stamps))


def test_looped_bag_wraps_once_per_pass_and_pairs_every_frame(
    ros_context, model_path: Path, msrs_root: Path, tmp_path: Path
) -> None:
    from conftest import NodeProcess, spinning
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from vision_msgs.msg import Detection2DArray

    from fusion_perception.ros.client import OutputCollector, spin_until
    from fusion_perception.ros.messages import stamp_to_ns

    bag = tmp_path / "bag"
    make_bag(msrs_root, bag, MakeOptions(limit=PAIRS, rate_hz=RATE_HZ, labels_dir=""))
    # reliable input: a frame lost in transport would leave its partner unpaired, and this test
    # counts every pair (best-effort delivery is test_node_delivery.py's subject)
    params = {"model_file_path": model_path, "time_jump_reset_s": 0.3, "diagnostics_period_s": 0.2,
              "input_qos": "reliable"}
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
                     "--loops", str(PASSES), "--wait-for-subscribers", "60", "--settle", "1.0"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                assert spin_until(executor, lambda: player.poll() is not None, 120.0), "bag play hangs"
                assert player.returncode == 0, player.stdout.read().decode(errors="replace")[-2000:]
                paired = lambda: int(col.latest_values().get("paired", 0)) == PASSES * PAIRS  # noqa: E731
                assert spin_until(executor, paired, 20.0), (col.latest_values(), node.log()[-2000:])
                spin_until(executor, lambda: False, 0.5)  # one more status after the last pair
                values = col.latest_values()
                # one reset per wrap, whichever camera's frames came first, and no frame lost to it
                assert int(values["stamp_resets"]) == PASSES - 1, values
                for stream in ("ir", "visible"):
                    for reason in ("reset", "unpaired", "out_of_order"):
                        assert int(values.get(f"dropped_{stream}_{reason}", 0)) == 0, (reason, values)
                assert _backward_steps(stamps) >= 1, f"outputs {len(stamps)}"
                assert node.log().count("pairing restarts") == PASSES - 1
            finally:
                if player is not None:
                    player.send_signal(signal.SIGINT)
                    player.wait(15)
    finally:
        node.stop()
