"""Pure helpers of the ROS layer: parameters, params files, the DDS profile choice, the one-slot worker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fusion_perception.ros.params import (
    PARAMS,
    ParameterValueError,
    default_model_path,
    settings_from_values,
    unknown_parameters,
)
from fusion_perception.ros.process import params_file_error, params_files
from fusion_perception.ros.transport import (
    PROFILE_VARS,
    XML_QOS_VAR,
    configure_dds_transport,
    shipped_profile,
    use_profile_reader_memory,
)
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
    ({"no_such_param": 1}, "unknown parameter 'no_such_param'"),
    ({"sync_slop": 0.01}, r"unknown parameter 'sync_slop' \(did you mean 'sync_slop_s'\?\)"),
    ({"stale_input_s": 2.0, "stale_error_s": 1.0}, "stale_error_s=1.0 must be >= stale_input_s=2.0"),
    ({"camera_loss_policy": "ignore"}, "camera_loss_policy='ignore' is not one of degrade, drop"),
    ({"max_input_pixels": 0}, "max_input_pixels"),
    ({"network_size": "384"}, "network_size='384': size '384' is not WIDTHxHEIGHT"),
    ({"network_size": "400x300"}, "network_size='400x300': size 400x300 must be positive multiples of 32"),
])
def test_bad_values_fail_with_a_reason_naming_them(values: dict, message: str) -> None:
    with pytest.raises(ParameterValueError, match=message):
        settings_from_values(values)


def test_network_size_selects_the_sized_sibling_of_the_model(tmp_path: Path) -> None:
    """The bundled 384x288 sibling loads and runs at that size; a missing sibling is an error that
    says how to make it, and a file of another size is refused rather than run at the wrong size."""
    from fusion_perception.errors import ModelFormatError
    from fusion_perception.ros.pipeline_setup import load_backend

    s = settings_from_values({"network_size": "384x288"})
    assert s.network_size == (384, 288)
    assert s.model_path == default_model_path().with_name("default_384x288.onnx")
    backend = load_backend(s)
    assert backend.info.input_size == (384, 288)
    backend.close()
    model = tmp_path / "mine.onnx"
    with pytest.raises(ModelFormatError, match=r"needs .*mine_512x384.onnx; make it with `fusion-perception "
                                               r"export CHECKPOINT --size 512x384 --name mine_512x384`"):
        load_backend(settings_from_values({"model_file_path": str(model), "network_size": "512x384"}))
    (tmp_path / "mine_512x384.onnx").write_bytes(default_model_path().read_bytes())  # a 640x480 graph
    with pytest.raises(ModelFormatError, match=r"runs at \(640, 480\), not the network_size 512x384"):
        load_backend(settings_from_values({"model_file_path": str(model), "network_size": "512x384"}))


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


def test_new_guards_have_documented_defaults() -> None:
    s = settings_from_values({})
    assert s.max_input_pixels == 2048 * 2048 and 1920 * 1080 <= s.max_input_pixels < 4000 * 3000
    assert s.jump_reset_ns == 1_000_000_000
    assert settings_from_values({"time_jump_reset_s": 0.0}).jump_reset_ns is None
    assert (s.stale_input_s, s.stale_error_s, s.camera_loss_policy) == (1.0, 5.0, "degrade")


def test_unknown_parameter_names_get_the_closest_valid_name() -> None:
    valid = ["sync_slop_s", "use_sim_time", "qos_overrides./ir/image.subscription.depth"]
    assert unknown_parameters(valid) == ""
    message = unknown_parameters(["stale_input", "zzz"])
    assert message == "unknown parameters 'stale_input' (did you mean 'stale_input_s'?), 'zzz'"


def test_params_file_problems_are_one_line_naming_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    sync_slop_s: [0.1\n    queue_size: 5\n")
    argv = ["node", "--ros-args", "-r", "__node:=x", "--params-file", str(bad)]
    assert params_files(argv) == [bad]
    assert params_files(["node", "--params-file", str(bad)]) == []  # not a ROS argument
    message = params_file_error(argv)
    assert message.startswith(f"parameters file {bad}: line 4, column 15: YAML error: expected")
    assert "\n" not in message
    flat = tmp_path / "flat.yaml"
    flat.write_text("sync_slop_s: 0.01\n")
    assert "ros__parameters" in params_file_error(["n", "--ros-args", "--params-file", str(flat)])
    assert "cannot read it" in params_file_error(["n", "--ros-args", "--params-file", str(tmp_path / "none")])
    good = Path(__file__).resolve().parents[1] / "config" / "fusion_perception.yaml"
    assert params_file_error(["n", "--ros-args", "--params-file", str(good)]) == ""


def test_dds_profile_is_used_unless_the_user_chose_a_transport() -> None:
    import xml.etree.ElementTree as ET

    env: dict[str, str] = {}
    used = configure_dds_transport(env)
    assert env[PROFILE_VARS[0]] == env[PROFILE_VARS[1]] == str(shipped_profile()) and "shipped" in used
    root = ET.parse(shipped_profile()).getroot()
    ns = {"p": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    (participant,) = root.findall("p:participant", ns)
    assert participant.get("is_default_profile") == "true"
    # readers free each sample's buffer; writers keep rmw_fastrtps's own defaults; rmw reads both
    # only with XML_QOS_VAR, which the node's process alone sets (use_profile_reader_memory)
    assert XML_QOS_VAR not in env
    (reader,) = root.findall("p:data_reader", ns)
    assert reader.get("is_default_profile") == "true"
    assert reader.findtext("p:historyMemoryPolicy", None, ns) == "DYNAMIC"
    (writer,) = root.findall("p:data_writer", ns)
    assert writer.findtext("p:qos/p:publishMode/p:kind", None, ns) == "ASYNCHRONOUS"
    assert writer.findtext("p:historyMemoryPolicy", None, ns) == "PREALLOCATED_WITH_REALLOC"
    for user in ({PROFILE_VARS[1]: "/robot/dds.xml"}, {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}):
        env = dict(user)
        assert "from the environment" in configure_dds_transport(env) and env == user
        assert not use_profile_reader_memory(env) and env == user  # a user's profile: leave rmw alone


def test_only_the_shipped_profile_turns_the_reader_memory_policy_on() -> None:
    env: dict[str, str] = {}
    configure_dds_transport(env)
    assert use_profile_reader_memory(env) and env[XML_QOS_VAR] == "1"
    assert not use_profile_reader_memory(env)  # already set: kept as it is
    chosen = {PROFILE_VARS[0]: str(shipped_profile()), XML_QOS_VAR: "0"}
    assert not use_profile_reader_memory(chosen) and chosen[XML_QOS_VAR] == "0"


_FAULTS_PER_BUFFER = """
import resource, sys, threading
import numpy as np
from fusion_perception.ros.process import reuse_image_buffers
if sys.argv[1] == "reuse":
    assert reuse_image_buffers()
else:  # a buffer per mmap: the policy reuse_image_buffers replaced
    import ctypes
    assert ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024) == 1
def cycle(n):
    for _ in range(n):
        a = np.empty((480, 640, 3), np.float32)  # 3.7 MB, an image-sized temporary
        a.fill(1.0)  # touch every page
        del a
def worker():
    cycle(5)  # warm-up: the heap grows once
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    cycle(40)
    print((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 40)
t = threading.Thread(target=worker)  # a worker thread, as the node's inference runs on
t.start()
t.join()
"""


@pytest.mark.skipif(not hasattr(__import__("resource"), "RUSAGE_THREAD"), reason="needs Linux RUSAGE_THREAD")
def test_image_buffers_are_reused_without_page_faults() -> None:
    """Under the node's allocation policy a freed image buffer's pages serve the next one; with a
    buffer per mmap (the policy it replaced) each of the 900 pages faults again on every pair."""
    import subprocess
    import sys

    def faults(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_BUFFER, mode], capture_output=True, text=True,
                             check=True, timeout=60)
        return float(out.stdout.strip())

    assert faults("reuse") < 10, "buffers of the same size fault in fresh pages"
    assert faults("mmap") > 500  # the measurement sees faults where they happen (3.7 MB = 900 pages)


_RELEASE = """
import numpy as np
from fusion_perception.ros.process import release_free_heap_memory, reuse_image_buffers
def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
assert reuse_image_buffers()
burst = [np.ones((480, 640, 3), np.float32) for _ in range(12)]  # 44 MB alive at once
keep = np.ones((480, 640, 3), np.float32)  # allocated last: the heap's top stays in use
del burst
held = anon_mb()
assert release_free_heap_memory()
print(held - anon_mb())
"""


def test_free_heap_memory_left_by_a_burst_is_given_back() -> None:
    """The heaps that keep freed buffers for the next pair also keep a burst's; the node's periodic
    release returns them (here 44 MB freed under a buffer still in use, so no trim could)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True, check=True,
                         timeout=60)
    assert float(out.stdout.strip()) > 30.0, "malloc_trim gave back less than the burst left free"
