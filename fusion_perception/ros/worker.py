"""A one-slot inference worker: keep the newest pair, drop the one it replaces ('busy').

Why: at 30 Hz a ~30 ms inference leaves no slack. Running it in the subscription callback would
stall the executor (frames pile up in DDS and get paired late); an unbounded queue would add
latency without bound. One slot holding the newest *paired* frames keeps the output as fresh as
the cameras allow and turns overload into counted drops. Pairing itself stays on the executor
thread, so a pair is always two frames matched by stamp, never "whatever arrived last".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["HandoffStage", "LatestWorker"]

T = TypeVar("T")


class LatestWorker(Generic[T]):
    """Runs ``process(item)`` on a background thread for the newest submitted item.

    Args:
        process: called with each item taken from the slot; exceptions are passed to ``on_error``.
        on_error: called with the exception when ``process`` raises; the worker keeps running.
        name: thread name (shows up in stack dumps).
    """

    def __init__(
        self,
        process: Callable[[T], None],
        on_error: Callable[[BaseException], None],
        name: str = "inference",
    ) -> None:
        self._process = process
        self._on_error = on_error
        self._cond = threading.Condition()
        self._slot: list[T] = []
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Put ``item`` in the slot; returns True when it replaced an item not yet started (a drop)."""
        with self._cond:
            replaced = bool(self._slot)
            self._slot[:] = [item]
            self._cond.notify()
        return replaced

    def idle(self) -> bool:
        """True when nothing is queued or running."""
        with self._cond:
            return not self._slot and not self._busy

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the running item, discard a queued one, and join the thread."""
        with self._cond:
            self._stop = True
            self._slot.clear()
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._slot and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item = self._slot.pop()
                self._busy = True
            try:
                self._process(item)
            except Exception as err:  # the node must keep serving; the error is reported, not swallowed
                self._on_error(err)
            finally:
                with self._cond:
                    self._busy = False


class HandoffStage(Generic[T]):
    """Runs ``process(item)`` on its own thread, one item at a time, in the order handed over.

    Why: a worker that publishes its own outputs spends the time converting and sending ~2 MB of
    images (8-10 ms p50 inside the node on the loaded 2-core machine) before its next pair. Handing
    them to this stage lets the next inference (ONNX Runtime releases the GIL) overlap the
    publishing; the node does so with ``publish_thread: true``. Off by default: on two cores shared
    with the cameras and consumers, the measured outputs/s did not improve and latency rose (the
    publish thread competes with ORT's own threads); benchmarks/README.md has the numbers and the
    command to measure it again. :meth:`put` waits while the previous item has not been taken yet,
    so at most one item waits and one runs: never a queue, and nothing is dropped here (a slow
    publisher slows the worker, whose one-slot policy then drops pairs as ``busy``).

    Args:
        process: called with each item; exceptions are passed to ``on_error``.
        on_error: called with the exception when ``process`` raises; the stage keeps running.
        name: thread name.
    """

    def __init__(
        self,
        process: Callable[[T], None],
        on_error: Callable[[BaseException], None],
        name: str = "publish",
    ) -> None:
        self._process = process
        self._on_error = on_error
        self._cond = threading.Condition()
        self._slot: list[T] = []
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Hand ``item`` over, waiting while the previous one has not been taken; False if stopped
        (or ``timeout`` seconds passed) before it could be."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._slot or self._stop, timeout):
                return False
            if self._stop:
                return False
            self._slot.append(item)
            self._cond.notify_all()
            return True

    def idle(self) -> bool:
        """True when nothing waits or runs."""
        with self._cond:
            return not self._slot and not self._busy

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what was handed over (waiting and running), then join the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._slot or self._stop)
                if not self._slot:
                    return
                item = self._slot.pop()
                self._busy = True
                self._cond.notify_all()
            try:
                self._process(item)
            except Exception as err:  # the node must keep serving; the error is reported, not swallowed
                self._on_error(err)
            finally:
                with self._cond:
                    self._busy = False
