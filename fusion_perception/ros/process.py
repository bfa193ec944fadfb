"""Process-level start and stop of the node's console script (no node logic here).

Three things a robot user runs into before the node ever sees a frame:

* the DDS transport is fixed per process before ``rclpy.init`` (:mod:`.transport`);
* a params file with a YAML error made rcl print a parser trace and rclpy a Python traceback;
  :func:`params_file_error` reads every ``--params-file`` first and returns one line naming the
  file, line and column;
* the lifecycle ``shutdown`` transition left the process running; :func:`spin_until_finished`
  returns once the node says it is finished (after the transition's answer went out);
* resident memory crept up for minutes (+7 to +10 MB after warm-up): each pair allocates and frees
  megabytes of image buffers on several threads, and glibc, after the first such free, serves them
  from its per-thread heaps, which grow with every burst and are not given back.
  :func:`return_large_buffers_to_the_os` pins the mmap threshold so those buffers are mapped and
  unmapped on their own (measured in benchmarks/bench_soak.py; docs/ROBOT.md).

Stopping such a process from outside (the demo, the benchmarks, the tests) is :func:`stop_process`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from rclpy.executors import Executor

__all__ = [
    "params_file_error",
    "params_files",
    "return_large_buffers_to_the_os",
    "spin_until_finished",
    "stop_process",
]

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)


def params_files(argv: Sequence[str]) -> list[Path]:
    """The files after each ``--params-file`` among the ROS arguments of ``argv``."""
    files, ros = [], False
    for i, arg in enumerate(argv):
        if arg == "--ros-args":
            ros = True
        elif arg == "--":
            ros = False
        elif ros and arg == "--params-file" and i + 1 < len(argv):
            files.append(Path(argv[i + 1]))
    return files


def params_file_error(argv: Sequence[str]) -> str:
    """One line describing the first unreadable or malformed params file in ``argv`` ("" when all load).

    >>> params_file_error(["node", "--ros-args", "--params-file", "/nonexistent.yaml"])
    'parameters file /nonexistent.yaml: cannot read it (No such file or directory)'
    """
    for path in params_files(argv):
        try:
            text = path.read_text()
        except OSError as err:
            return f"parameters file {path}: cannot read it ({err.strerror or err})"
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            return f"parameters file {path}:{where} YAML error: {problem}"
        if not isinstance(doc, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict) for v in doc.values()):
            return (f"parameters file {path}: expected '<node name or /**>: ros__parameters: "
                    f"{{name: value}}' at the top level")
    return ""


def spin_until_finished(executor: Executor, finished: Callable[[], bool], grace_s: float = 0.5) -> None:
    """Spin until ``finished()``, then ``grace_s`` more (so the reply to the last service call leaves)."""
    while not finished():
        executor.spin_once(timeout_sec=0.1)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Ctrl-C ``proc`` (SIGINT) and wait up to ``timeout_s``; kill it if it is still running then.

    SIGINT, not SIGTERM: the node and the camera stand-in shut rclpy down on it as on a terminal's
    Ctrl-C, so their logs and files (camera stamps) are complete. The kill is the last resort for a
    process stuck in shutdown; it is reaped at once so no zombie outlives the caller.
    """
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def return_large_buffers_to_the_os(threshold: int = 128 * 1024) -> bool:
    """Serve every allocation of ``threshold`` bytes or more with its own mmap (glibc only).

    glibc starts with this threshold but raises it to the size of each large block freed (up to
    32 MiB), after which image-sized buffers come from the thread heaps and stay resident. Setting
    it explicitly turns that adjustment off. Returns False where it does not apply (not glibc).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc: no mallopt
        return False
