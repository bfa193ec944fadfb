"""Shared test fixtures.

``ros_env`` (session, autouse): a random ROS_DOMAIN_ID and a private ROS_LOG_DIR, set before any
test imports rclpy, so parallel test runs on one machine never hear each other's nodes.
``model_path``: the bundled, trained default model.
``data_root``, ``dataset``, ``msrs_root``: the datasets, from the one place that knows where they
are (``$FUSION_PERCEPTION_DATA``, default ``<repository>/../shared/datasets``; see
fusion_perception/data_root.py); a test that needs a missing dataset skips, naming the variable.
``sample_pairs_msrs``: the six shipped sample pairs in the MSRS layout, present on every machine:
the choice for tests that need only a few real pairs.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CAMERA = REPO / "harness" / "camera.py"  # the camera stand-in process
BUNDLED_MODEL = REPO / "fusion_perception" / "assets" / "default.onnx"


@pytest.fixture(scope="session", autouse=True)
def ros_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Unique ROS_DOMAIN_ID (1..100) and ROS_LOG_DIR for this test session; restored afterwards.

    Also the package's Fast DDS profile (config/fastdds_large_data.xml, unless a transport was
    chosen in the environment), exactly as the node, the demo and the camera stand-in set it for
    themselves: the test process and every process it starts then share one transport setting,
    which is what the delivery tests measure (docs/ROBOT.md).
    """
    from fusion_perception.ros.transport import (
        BUILTIN_VAR,
        PROFILE_VARS,
        XML_QOS_VAR,
        configure_dds_transport,
    )

    keys = ("ROS_DOMAIN_ID", "ROS_LOG_DIR", BUILTIN_VAR, XML_QOS_VAR, *PROFILE_VARS)
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    os.environ["ROS_LOG_DIR"] = str(tmp_path_factory.mktemp("ros_log"))
    configure_dds_transport()
    yield {k: os.environ[k] for k in saved if k in os.environ}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The bundled, trained default model: every runtime test runs the real network."""
    if not BUNDLED_MODEL.is_file():
        pytest.fail(f"the bundled model {BUNDLED_MODEL} is missing; it ships with the package")
    return BUNDLED_MODEL


# --------------------------------------------------------------------------- datasets
@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root (``$FUSION_PERCEPTION_DATA``, else ``<repository>/../shared/datasets``); it may
    not exist. Tests take dataset folders from here (or from ``dataset``), never from a literal path:
    a machine's path written into a test breaks it everywhere else (test_repository_paths.py)."""
    from fusion_perception.data_root import data_root as configured

    return configured()


@pytest.fixture(scope="session")
def dataset(data_root: Path) -> Callable[[str], Path]:
    """``dataset("tno")``: that folder under the data root; the calling test skips when it is absent."""
    from fusion_perception.data_root import DATA_ENV

    def get(name: str) -> Path:
        path = data_root / name
        if not path.is_dir():
            pytest.skip(
                f"dataset {name!r} not found at {path}: set {DATA_ENV} to the folder holding the "
                "datasets (default <repository>/../shared/datasets)"
            )
        return path

    return get


@pytest.fixture(scope="session")
def msrs_root(dataset: Callable[[str], Path]) -> Path:
    """The full MSRS dataset (ir/, vi/, labels_det_*/, splits/, ...); skips with the reason when absent."""
    return dataset("msrs")


@pytest.fixture(scope="session")
def sample_pairs_msrs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six shipped sample pairs (fusion_perception/assets/samples, MSRS val pairs) laid out as
    MSRS: ``ir/``, ``vi/``, ``labels_det_fusion/`` (their boxes) and ``splits/val.txt`` (all six).

    Shipped with the package, so tests that need only a few real pairs run on any machine.
    """
    import shutil

    from fusion_perception.assets import sample_pairs

    root = tmp_path_factory.mktemp("sample_pairs_msrs")
    for sub in ("ir", "vi", "labels_det_fusion", "splits"):
        (root / sub).mkdir()
    pairs = sample_pairs()
    for pair in pairs:
        shutil.copyfile(pair.ir, root / "ir" / f"{pair.name}.png")
        shutil.copyfile(pair.visible, root / "vi" / f"{pair.name}.png")
        shutil.copyfile(pair.labels, root / "labels_det_fusion" / f"{pair.name}.txt")
    (root / "splits" / "val.txt").write_text("".join(f"{pair.name}\n" for pair in pairs))
    return root


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


def _param_args(params: dict[str, object]) -> list[str]:
    """``-p name:=value`` for each ROS parameter; booleans lower-case, as ROS parses them."""
    args: list[str] = []
    for key, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{key}:={text}"]
    return args


class _LoggedProcess:
    """A child process whose stdout and stderr go to ``log_path``; stopped as on Ctrl-C.

    The node and the camera stand-in are both started and stopped this way: one place decides
    how a test's process is ended (SIGINT, then a kill after 10 s) and when its log is closed.
    """

    def __init__(self, log_path: Path, argv: list[str]) -> None:
        import subprocess

        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGINT (a kill after 10 s), close the log; returns the exit status."""
        from fusion_perception.ros.process import stop_process

        stop_process(self.proc)
        self._log.close()
        return self.proc.returncode


class NodeProcess(_LoggedProcess):
    """The real node in a subprocess (its own GIL, like on a robot); log captured to a file."""

    def __init__(self, log_path: Path, params: dict[str, object], params_file: Path | None = CONFIG,
                 name: str = "fusion_perception") -> None:
        args: list[str] = ["--params-file", str(params_file)] if params_file else []
        args += ["-r", f"__node:={name}", *_param_args(params)]
        super().__init__(log_path, node_command(*args))


@pytest.fixture(scope="module")
def ros_context(ros_env: dict[str, str]) -> Iterator[object]:
    """An initialised rclpy context for the test's own nodes (one per module)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@contextlib.contextmanager
def spinning(context: object, *nodes: object) -> Iterator[object]:
    """A single-threaded executor of ``context`` spinning ``nodes``; on exit it shuts down, then each
    node is destroyed.

    Every test that talks to the node process keeps its own nodes on such an executor; one place
    owns their set-up and teardown so that no test can leave a node or an executor behind.
    """
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    try:
        yield executor
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()


@contextlib.contextmanager
def client_node(context: object, name: str) -> Iterator[tuple[object, object]]:
    """A plain node named ``name`` and its executor: the client side of service calls and topic checks."""
    from rclpy.node import Node

    node = Node(name, context=context)
    with spinning(context, node) as executor:
        yield node, executor


class CameraProcess(_LoggedProcess):
    """The camera stand-in (``python harness/camera.py``) in its own process.

    ``params`` are its ROS parameters (rate_hz, count, qos, ir_enabled, ...); ``stamps`` is the JSON
    file it writes at the end with the stamps it sent per stream.
    """

    def __init__(self, log_path: Path, params: dict[str, object], name: str = "camera_pair") -> None:
        import sys

        self.stamps = log_path.with_suffix(".stamps.json")
        self.name = name
        args = ["--ros-args", "-r", f"__node:={name}", "-p", f"stamps_file:={self.stamps}",
                *_param_args(params)]
        super().__init__(log_path, [sys.executable, str(CAMERA), *args])

    def wait(self, timeout_s: float) -> int:
        rc = self.proc.wait(timeout_s)
        self._log.close()
        return rc

    def sent(self) -> dict[str, list[int]]:
        import json

        return json.loads(self.stamps.read_text())


def set_remote_params(node: object, executor: object, target: str, timeout_s: float = 20.0,
                      **values: object) -> list[str]:
    """Set parameters of the node named ``target`` through its service; returns the failure reasons."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from fusion_perception.ros.client import spin_until

    cli = node.create_client(SetParameters, f"/{target}/set_parameters")
    try:
        assert spin_until(executor, cli.service_is_ready, timeout_s), f"no /{target}/set_parameters"
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        future = cli.call_async(request)
        assert spin_until(executor, future.done, timeout_s), f"/{target}/set_parameters did not answer"
        return [r.reason for r in future.result().results if not r.successful]
    finally:
        node.destroy_client(cli)


def call_service(node: object, executor: object, srv_type: type, name: str, request: object,
                 timeout_s: float = 20.0) -> object:
    """Call service ``name`` from ``node`` (spun by ``executor``) and return the response."""
    from fusion_perception.ros.client import spin_until

    cli = node.create_client(srv_type, name)
    try:
        assert spin_until(executor, cli.service_is_ready, timeout_s), f"service {name} never appeared"
        future = cli.call_async(request)
        assert spin_until(executor, future.done, timeout_s), f"service {name} did not answer"
        return future.result()
    finally:
        node.destroy_client(cli)


def lifecycle_state(node: object, executor: object, target: str) -> str:
    """Label of the lifecycle state of the node named ``target``."""
    from lifecycle_msgs.srv import GetState

    response = call_service(node, executor, GetState, f"/{target}/get_state", GetState.Request())
    return response.current_state.label


def lifecycle_transition(node: object, executor: object, target: str, label: str) -> bool:
    """Ask the node named ``target`` for the transition ``label``; True when it succeeded."""
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request()
    request.transition.label = label
    return call_service(node, executor, ChangeState, f"/{target}/change_state", request).success
