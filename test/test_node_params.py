"""Pure helpers of the ROS layer: parameter validation, the one-slot worker, diagnostics counters."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fusion_perception.pairing import StampPairer
from fusion_perception.ros.diagnostics import ERROR, OK, WARN, NodeStats
from fusion_perception.ros.params import PARAMS, ParameterValueError, default_model_path, settings_from_values
from fusion_perception.ros.worker import LatestWorker


def test_defaults_are_valid_and_documented() -> None:
    s = settings_from_values({})
    assert s.input_qos == "sensor_data" and s.slop_ns == 15_000_000 and s.autostart
    assert s.ir_topic == "ir/image" and s.visible_topic == "visible/image"  # relative: remappable
    assert s.slop_ns < 33_333_333 / 2  # below half a 30 Hz frame period
    assert all(p.description for p in PARAMS)


def test_default_model_is_found_through_the_package_not_the_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = settings_from_values({}).model_path
    assert path == default_model_path() and path.is_absolute()
    assert path.parent.name == "assets" and (path.parent.parent / "__init__.py").is_file()


@pytest.mark.parametrize(("values", "message"), [
    ({"input_qos": "sensor-data"}, "input_qos='sensor-data' is not one of sensor_data, reliable"),
    ({"backend": "onnx"}, "backend='onnx'"),
    ({"homography": [1.0] * 8}, "needs 9 values"),
    ({"homography": [1.0] * 8 + [0.0]}, "h33 = 0"),
    ({"gain_low": 50.0, "gain_high": 10.0}, "high > low"),
    ({"gain_mode": "percentile", "gain_high": 400.0}, "percentiles"),
    ({"sync_slop_s": 2.0}, r"sync_slop_s=2.0 is outside \[0.0, 1.0\]"),
    ({"queue_size": 0}, "queue_size"),
    ({"fused_topic": ""}, "fused_topic must name a topic"),
    ({"no_such_param": 1}, "unknown parameters"),
])
def test_bad_values_fail_with_a_reason_naming_them(values: dict, message: str) -> None:
    with pytest.raises(ParameterValueError, match=message):
        settings_from_values(values)


def test_homography_and_fixed_gain_are_converted() -> None:
    h = [1.0, 0.0, 5.0, 0.0, 1.0, -3.0, 0.0, 0.0, 1.0]
    s = settings_from_values({"homography": h, "gain_mode": "fixed", "gain_low": 1000.0, "gain_high": 9000.0})
    assert s.homography == ((1.0, 0.0, 5.0), (0.0, 1.0, -3.0), (0.0, 0.0, 1.0))
    assert (s.gain.mode, s.gain.low, s.gain.high) == ("fixed", 1000.0, 9000.0)
    assert settings_from_values({"homography": []}).homography is None


def test_worker_keeps_the_newest_item_and_reports_replacements() -> None:
    gate, started, done, errors = threading.Event(), threading.Event(), [], []

    def process(item: int) -> None:
        started.set()
        gate.wait(5)
        if item == 99:
            raise RuntimeError("boom")
        done.append(item)

    worker = LatestWorker(process, errors.append)
    try:
        assert worker.submit(1) is False
        assert started.wait(5)  # item 1 is running
        deadline = time.monotonic() + 5
        assert worker.submit(2) is False  # slot was empty (1 is running)
        assert worker.submit(3) is True  # 2 had not started: dropped as 'busy'
        gate.set()
        while not worker.idle() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert done == [1, 3]
        worker.submit(99)
        while not errors and time.monotonic() < deadline:
            time.sleep(0.001)
        assert [str(e) for e in errors] == ["boom"]
        worker.submit(5)
        while 5 not in done and time.monotonic() < deadline:
            time.sleep(0.001)
        assert done == [1, 3, 5]  # still serving after an exception
    finally:
        gate.set()
        worker.stop()


def test_stats_levels_are_per_period_and_counters_are_totals() -> None:
    stats = NodeStats()
    stats.backend("onnxruntime", "active", "m.onnx")
    stats.input("ir")
    stats.drop("visible", "bad_layout", "step 10 is shorter")
    first = stats.status(None)
    assert first.level == WARN and "visible bad_layout" in first.message
    assert first.value("dropped_visible_bad_layout") == "1" and first.value("received_ir") == "1"
    second = stats.status(None)
    assert second.level == OK and second.value("dropped_visible_bad_layout") == "1"
    stats.error("pipeline failed: boom")
    assert stats.status(None).level == ERROR
    assert stats.status(None).value("last_error") == "pipeline failed: boom"


def test_backend_not_active_is_a_warning() -> None:
    stats = NodeStats()
    stats.backend("onnxruntime", "configure failed")
    status = stats.status(None)
    assert status.level == WARN and "backend configure failed" in status.message


def test_pairer_drops_are_folded_once() -> None:
    stats, pairer, seen = NodeStats(), StampPairer(10, queue_size=2), {}
    for t in (100, 200, 300):
        pairer.push("visible", t, None)
    pairer.push("visible", 50, None)
    stats.drops_from_pairer(pairer.stats, seen)
    stats.drops_from_pairer(pairer.stats, seen)
    status = stats.status(pairer.stats)
    assert status.value("dropped_visible_overflow") == "1"
    assert status.value("dropped_visible_out_of_order") == "1"


def test_one_silent_camera_is_detected_but_two_are_not() -> None:
    stats = NodeStats()
    assert stats.silent_streams(1.0) == []
    stats.input("visible")
    now = time.monotonic()
    assert stats.silent_streams(1.0, now) == ["ir"]
    assert stats.silent_streams(1.0, now + 5.0) == []  # both silent: nobody is publishing
