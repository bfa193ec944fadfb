"""Stopping the node as a supervisor does: clean signals mid-stream, and a failed configure that ends
the process when ``exit_on_configure_failure`` asks for it.

The node runs from the shipped params file; the camera stand-in publishes 30 Hz pairs from its own
process (sensor-data QoS), so a pair is in inference when the signal arrives.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_stream_ends_the_node_cleanly(signum: int, ros_context: object, tmp_path: Path,
                                                   model_path: Path) -> None:
    from conftest import CameraProcess, NodeProcess, spinning

    from fusion_perception.ros.client import OutputCollector, spin_until

    node = NodeProcess(tmp_path / "node.log", {"model_file_path": model_path})
    camera = CameraProcess(tmp_path / "camera.log", {"rate_hz": 30.0, "duration_s": 60.0})
    col = OutputCollector(context=ros_context, keys=("detections",))
    try:
        with spinning(ros_context, col) as executor:
            assert spin_until(executor, lambda: len(col.by_stamp) >= 10, 60.0), node.log()[-3000:]
        node.proc.send_signal(signum)
        assert node.proc.wait(15) == 0, node.log()[-3000:]
    finally:
        node.stop()
        camera.stop()
    log = node.log()
    assert "[ERROR]" not in log and "Traceback" not in log, log[-3000:]


def test_failed_configure_ends_the_process_when_asked(ros_context: object, tmp_path: Path) -> None:
    from conftest import NodeProcess, client_node
    from diagnostic_msgs.msg import DiagnosticArray

    from fusion_perception.ros.client import spin_until

    missing = tmp_path / "missing.onnx"
    stays = NodeProcess(tmp_path / "stays.log", {"model_file_path": missing, "diagnostics_period_s": 0.2},
                        name="stays_up")
    ends = NodeProcess(tmp_path / "ends.log", {"model_file_path": missing, "exit_on_configure_failure": True},
                       name="ends")
    statuses: list = []
    try:
        assert ends.proc.wait(60) == 1, ends.log()[-3000:]
        assert "exit_on_configure_failure is true: ending the process with status 1" in ends.log()
        with client_node(ros_context, "stop_test_client") as (node, executor):
            node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(
                s for s in m.status if s.name.split(":")[0].endswith("/stays_up")), 50)
            assert spin_until(executor, lambda: len(statuses) >= 3, 30.0), stays.log()[-3000:]
        assert stays.alive(), stays.log()[-3000:]
        message = statuses[-1].message
        assert message.startswith("configure failed: ModelFormatError") and str(missing) in message
        assert message.count(str(missing)) == 1, message  # each reason once
        assert stays.stop() == 0  # no supervisor asked for an exit status: a stop is a clean stop
    finally:
        stays.stop()
        ends.stop()


def test_an_out_of_range_parameter_says_configure_fails(tmp_path: Path, model_path: Path) -> None:
    from conftest import NodeProcess

    node = NodeProcess(tmp_path / "node.log", {"model_file_path": model_path, "score_threshold": 1.5,
                                               "exit_on_configure_failure": True})
    assert node.proc.wait(60) == 1, node.log()[-3000:]
    log = node.log()
    assert "score_threshold" in log and "configure fails until it is fixed" in log
    assert "using the default" not in log
