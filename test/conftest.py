"""Shared test fixtures.

``ros_env`` (session, autouse): a random ROS_DOMAIN_ID and a private ROS_LOG_DIR, set before any
test imports rclpy, so parallel test runs on one machine never hear each other's nodes.
``model_path``: the bundled, trained default model.
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


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The bundled, trained default model: every runtime test runs the real network."""
    if not BUNDLED_MODEL.is_file():
        pytest.fail(f"the bundled model {BUNDLED_MODEL} is missing; it ships with the package")
    return BUNDLED_MODEL


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
