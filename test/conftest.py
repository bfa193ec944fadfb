"""Shared test fixtures.

``ros_env`` (session, autouse): a random ROS_DOMAIN_ID and a private ROS_LOG_DIR, set before any
test imports rclpy, so parallel test runs on one machine never hear each other's nodes.
``model_path``: the bundled default model; while it is not trained yet, a tiny ONNX graph that
honours the deployed-model contract (runtime/model_info.py), built with the ``onnx`` helpers.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = REPO / "fusion_perception" / "assets" / "default.onnx"


@pytest.fixture(scope="session", autouse=True)
def ros_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Unique ROS_DOMAIN_ID (1..100) and ROS_LOG_DIR for this test session; restored afterwards.

    Also FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (unless set): by default Fast DDS sends messages over
    its 512 KiB shared-memory segment as UDP fragments, and under load a 921 kB best-effort frame
    is then often lost whole (a reliable one stalls until the next heartbeat, seconds). LARGE_DATA
    (shared memory with large segments + TCP) is the documented Fast DDS setting for camera data.
    """
    keys = ("ROS_DOMAIN_ID", "ROS_LOG_DIR", "FASTDDS_BUILTIN_TRANSPORTS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    os.environ["ROS_LOG_DIR"] = str(tmp_path_factory.mktemp("ros_log"))
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    yield {k: os.environ[k] for k in saved}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def build_contract_model(path: Path, width: int = 640, height: int = 480) -> Path:
    """Write a tiny ONNX graph with the deployed contract (fixture only, until default.onnx exists).

    fused = max(IR, visible Y); segmentation logits from 4x4-pooled inputs (class 2 'person' where IR
    is warm); detections at strides (8, 16): a fixed 24 px box around each cell, person logit from IR.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fusion_perception.runtime.model_info import METADATA_KEY, ModelInfo

    info = ModelInfo(input_width=width, input_height=height, training={"fixture": "test/conftest.py"})
    n_seg, n_det = len(info.seg_classes), len(info.det_classes)
    inits = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    nodes = [
        helper.make_node("Slice", ["visible", "s0", "s1", "ax1"], ["y"]),
        helper.make_node("Max", ["ir", "y"], ["fused"]),
        helper.make_node("Concat", ["ir", "y"], ["iry"], axis=1),
        helper.make_node("AveragePool", ["iry"], ["p4"], kernel_shape=[4, 4], strides=[4, 4]),
    ]
    for name, value in (("s0", [0]), ("s1", [1]), ("ax1", [1])):
        inits.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
    w_seg = np.zeros((n_seg, 2, 1, 1), np.float32)
    w_seg[2, 0] = 8.0  # person <- IR
    b_seg = np.zeros(n_seg, np.float32)
    b_seg[0] = 3.0  # unlabelled unless IR > ~0.4
    seg_inputs = ["p4", const("w_seg", w_seg), const("b_seg", b_seg)]
    nodes.append(helper.make_node("Conv", seg_inputs, ["segmentation"]))
    w_det = np.zeros((5 + n_det, 2, 1, 1), np.float32)
    b_det = np.full(5 + n_det, -6.0, np.float32)
    b_det[:4] = 12.0  # l, t, r, b distances in pixels
    b_det[4] = 2.0  # centerness logit
    w_det[5, 0] = 20.0  # person logit rises with IR
    b_det[5] = -16.0
    levels = []
    for s in info.det_strides:
        nodes += [
            helper.make_node("AveragePool", ["iry"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Conv", [f"p{s}", const(f"w{s}", w_det), const(f"b{s}", b_det)], [f"d{s}"]),
            helper.make_node("Reshape", [f"d{s}", f"shape{s}"], [f"r{s}"]),
            helper.make_node("Transpose", [f"r{s}"], [f"t{s}"], perm=[0, 2, 1]),
        ]
        inits.append(numpy_helper.from_array(np.asarray([1, 5 + n_det, -1], np.int64), f"shape{s}"))
        levels.append(f"t{s}")
    nodes.append(helper.make_node("Concat", levels, ["detections"], axis=1))
    graph = helper.make_graph(
        nodes, "fixture",
        [helper.make_tensor_value_info("ir", TensorProto.FLOAT, [1, 1, height, width]),
         helper.make_tensor_value_info("visible", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, None, None, None][:rank])
         for n, rank in (("fused", 4), ("segmentation", 4), ("detections", 3))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: info.to_json()})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled default model, or the contract fixture while it does not exist yet."""
    if BUNDLED_MODEL.is_file():
        return BUNDLED_MODEL
    return build_contract_model(tmp_path_factory.mktemp("model") / "fixture.onnx")


# --------------------------------------------------------------------------- ROS node harness
CONFIG = REPO / "config" / "fusion_perception.yaml"


def node_command(*ros_args: str) -> list[str]:
    """argv that runs the ``fusion_perception_node`` console script exactly as installed.

    The script is resolved through the package's entry-point metadata (what the generated wrapper
    does), so the test needs no particular bin directory.
    """
    import sys

    launcher = (
        "import sys; from importlib.metadata import entry_points; "
        "(script,) = entry_points(group='console_scripts', name='fusion_perception_node'); "
        "sys.exit(script.load()())"
    )
    return [sys.executable, "-c", launcher, "--ros-args", *ros_args]


class NodeProcess:
    """The real node in a subprocess (its own GIL, like on a robot); log captured to a file."""

    def __init__(self, log_path: Path, params: dict[str, object], params_file: Path | None = CONFIG,
                 name: str = "fusion_perception") -> None:
        import subprocess

        args: list[str] = ["--params-file", str(params_file)] if params_file else []
        args += ["-r", f"__node:={name}"]
        for key, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(node_command(*args), stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        import signal

        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def ros_context(ros_env: dict[str, str]) -> Iterator[object]:
    """An initialised rclpy context for the test's own nodes (one per module)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()
