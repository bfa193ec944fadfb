"""Lifecycle, parameter validation and the plain start, on the real node process over DDS.

Each test starts its own node (the console script with ``--params-file config/...``) under its own
name, so the services and topics of one test never answer another.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def client(ros_context) -> Iterator[tuple[object, object]]:
    """A plain test node and its executor, for service calls and topic checks."""
    from conftest import client_node

    with client_node(ros_context, "lifecycle_test_client") as pair:
        yield pair


def _call(client, srv_type, name: str, request, timeout_s: float = 20.0):
    from conftest import call_service

    return call_service(*client, srv_type, name, request, timeout_s)


def _state(client, name: str) -> str:
    from conftest import lifecycle_state

    return lifecycle_state(*client, name)


def _transition(client, name: str, label: str) -> bool:
    from conftest import lifecycle_transition

    return lifecycle_transition(*client, name, label)


def _start(tmp_path: Path, name: str, **params) -> object:
    from conftest import NodeProcess

    return NodeProcess(tmp_path / f"{name}.log", params, name=name)


@pytest.mark.parametrize(("params", "reason"), [
    ({"model_file_path": "/nonexistent/model.onnx"}, "/nonexistent/model.onnx does not exist"),
    ({"input_qos": "sensor-data"}, "input_qos='sensor-data' is not one of sensor_data, reliable"),
    ({"sync_slop_s": 5.0}, "sync_slop_s"),
], ids=["missing_model", "qos_typo", "slop_out_of_range"])
def test_bad_configuration_fails_configure_and_process_stays_up(client, tmp_path, model_path, params, reason):
    from fusion_perception.ros.client import spin_until

    name = "bad_config"
    node = _start(tmp_path, name, **{"model_file_path": model_path, **params})
    try:
        assert _state(client, name) == "unconfigured"  # autostart tried and failed
        assert not _transition(client, name, "configure")  # a retry fails the same way
        assert node.alive()
        assert _state(client, name) == "unconfigured"
        log = node.log()
        assert "configure failed" in log and reason in log, log[-2000:]
        # the reason is also on /diagnostics, at ERROR
        from diagnostic_msgs.msg import DiagnosticArray

        seen = []
        sub = client[0].create_subscription(DiagnosticArray, "/diagnostics", seen.append, 10)
        done = lambda: any(s.level == b"\x02" and reason in s.message for m in seen for s in m.status)  # noqa: E731
        assert spin_until(client[1], done, 10.0), [s.message for m in seen for s in m.status]
        client[0].destroy_subscription(sub)
    finally:
        node.stop()


def test_plain_start_serves_sensor_data_and_cycles_lifecycle(client, tmp_path, model_path, ros_context):
    """--params-file alone (+ the model) activates the node; best-effort camera frames get through;
    deactivate frees the subscriptions, activate restores them; runtime parameters are validated."""
    from rcl_interfaces.msg import Parameter as ParamMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    from fusion_perception.assets import load_sample_pairs as sample_pairs
    from fusion_perception.ros.client import OutputCollector, PairPublisher, spin_until

    name = "fusion_perception"
    node = _start(tmp_path, name, model_file_path=model_path)
    _, executor = client
    pub, col = PairPublisher(context=ros_context), OutputCollector(context=ros_context)
    executor.add_node(pub)
    executor.add_node(col)
    try:
        assert spin_until(executor, lambda: pub.matched() and len(col.label_info) == 2, 30.0), node.log()
        assert _state(client, name) == "active"
        _, ir, vi = next(sample_pairs(1))
        stamps = []
        for _ in range(20):  # best effort may lose the first frames after discovery
            stamps.append(pub.publish_pair(ir, vi))
            if spin_until(executor, lambda: any(col.complete(s) for s in stamps), 1.0):
                break
        assert any(col.complete(s) for s in stamps), node.log()[-2000:]

        assert _transition(client, name, "deactivate")
        assert spin_until(executor, lambda: pub.ir.get_subscription_count() == 0, 10.0)
        assert _transition(client, name, "activate")
        assert spin_until(executor, pub.matched, 10.0)

        def set_param(pname: str, value: ParameterValue) -> tuple[bool, str]:
            req = SetParameters.Request(parameters=[ParamMsg(name=pname, value=value)])
            (res,) = _call(client, SetParameters, f"/{name}/set_parameters", req).results
            return res.successful, res.reason

        dbl = lambda v: ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)  # noqa: E731
        ok, why = set_param("score_threshold", dbl(1.5))
        assert not ok and "score_threshold" in why
        ok, why = set_param("homography", ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                                                         double_array_value=[1.0] * 8))
        assert not ok and "9 values" in why
        text = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="reliable")
        ok, why = set_param("input_qos", text)
        assert not ok and "read-only" in why.lower().replace(" ", "-")
        assert set_param("score_threshold", dbl(0.5))[0]
        # the latched class table follows the threshold in force
        assert spin_until(executor, lambda: abs(col.label_info["detections"].threshold - 0.5) < 1e-9, 10.0)

        assert _transition(client, name, "deactivate") and _transition(client, name, "cleanup")
        assert _state(client, name) == "unconfigured"
        assert node.alive()
    finally:
        executor.remove_node(pub)
        executor.remove_node(col)
        pub.destroy_node()
        col.destroy_node()
        assert node.stop() == 0, node.log()[-2000:]
