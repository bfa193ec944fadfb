"""Process-level start and stop of the node's console script (no node logic here).

Three things a robot user runs into before the node ever sees a frame:

* the DDS transport is fixed per process before ``rclpy.init`` (:mod:`.transport`);
* a params file with a YAML error made rcl print a parser trace and rclpy a Python traceback;
  :func:`params_file_error` reads every ``--params-file`` first and returns one line naming the
  file, line and column;
* the lifecycle ``shutdown`` transition left the process running; :func:`spin_until_finished`
  returns once the node says it is finished (after the transition's answer went out);
* each pair allocates and frees megabytes of image buffers on several threads. Left to glibc's
  adaptive thresholds, the per-thread heaps grew with bursts (+7 to +10 MB resident over minutes);
  giving every buffer its own mmap instead kept memory flat but cost a page fault per 4 KiB touched
  and an munmap per buffer (~5000 faults a pair, half the node's rate on a VM).
  :func:`reuse_image_buffers` keeps buffers below 8 MiB in at most two heaps that keep up to 32 MiB
  free, so they are reused without faults and resident memory is bounded by the largest set of
  buffers alive at once; :func:`release_free_heap_memory`, every ten seconds, gives back what a burst
  left free (measured in benchmarks/bench_node_rate.py and bench_soak.py; docs/ROBOT.md).

Stopping such a process from outside (the demo, the benchmarks, the tests) is :func:`stop_process`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import yaml
from rclpy.executors import Executor

__all__ = [
    "HEAP_RELEASE_PERIOD_S",
    "params_file_error",
    "params_files",
    "release_free_heap_memory",
    "reuse_image_buffers",
    "spin_until_finished",
    "stop_process",
]

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


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


#: seconds between :func:`release_free_heap_memory` calls of the node
HEAP_RELEASE_PERIOD_S = 10.0


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def release_free_heap_memory() -> bool:
    """Give the free pages of every heap back to the OS (``malloc_trim(0)``, glibc only).

    The heaps of :func:`reuse_image_buffers` keep what a burst freed (two frames queued while the
    worker holds a pair, say). Called every :data:`HEAP_RELEASE_PERIOD_S`, it returns the free pages
    below the blocks still in use; the next pair faults its buffers in once (a few thousand pages
    every ten seconds instead of every pair). Pages the heap keeps reusing stay resident, so after a
    backlog the resident size still steps once to a bounded high-water mark (~8 MB in a 30-minute
    soak, 28-32 MB under repeated 1 s stalls; docs/ROBOT.md section 6).
    Returns False where it does not apply (not glibc).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def reuse_image_buffers(mmap_threshold: int = 8 * 2**20, trim_threshold: int = 32 * 2**20,
                        arenas: int = 2) -> bool:
    """Serve image buffers from at most ``arenas`` heaps that keep their free memory (glibc only).

    Blocks below ``mmap_threshold`` come from a heap (8 MiB: every buffer of a 640x480 pair, the
    largest being a 3-channel float32 image of 3.7 MB), and a heap gives memory back only above
    ``trim_threshold`` of free space, so the next pair reuses the pages the last one freed instead
    of faulting in fresh ones. Larger blocks (a 4000x3000 frame about to be dropped as too large)
    keep their own mapping and leave nothing behind when freed. Fixing both thresholds turns glibc's
    adaptive ones off; with ``arenas`` heaps shared by all threads, the resident size stops at the
    largest set of buffers alive at once plus at most ``trim_threshold`` free per heap, rather than
    growing per thread and burst. Returns False where it does not apply (not glibc).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):  # not glibc
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold), (M_ARENA_MAX, arenas)))
