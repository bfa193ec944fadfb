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
from typing import ClassVar, Generic, TypeVar

__all__ = ["HandoffStage", "LatestWorker"]

T = TypeVar("T")


class _SlotThread(Generic[T]):
    """One background thread taking items from a one-item slot and running ``process`` on each.

    Why a shared base: :class:`LatestWorker` and :class:`HandoffStage` differ only in how an item
    enters the slot (replace vs. wait) and what stopping does to a waiting item (``discard_on_stop``:
    discard vs. finish); the thread, the lock, the busy flag, stopping and the error reporting are
    the same, so they live here once.

    Args:
        process: called with each item taken from the slot; exceptions are passed to ``on_error``.
        on_error: called with the exception when ``process`` raises; the thread keeps running.
        name: thread name (shows up in stack dumps); default the subclass's ``thread_name``.
    """

    thread_name: ClassVar[str]
    discard_on_stop: ClassVar[bool]

    def __init__(
        self,
        process: Callable[[T], None],
        on_error: Callable[[BaseException], None],
        name: str | None = None,
    ) -> None:
        self._process = process
        self._on_error = on_error
        self._cond = threading.Condition()
        self._slot: list[T] = []
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name or self.thread_name, daemon=True)
        self._thread.start()

    def idle(self) -> bool:
        """True when nothing waits in the slot or runs."""
        with self._cond:
            return not self._slot and not self._busy

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the running item, discard or finish a waiting one (``discard_on_stop``), join the thread."""
        with self._cond:
            self._stop = True
            if self.discard_on_stop:
                self._slot.clear()
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._slot or self._stop)
                # after a stop: end at once (discard_on_stop) or once the waiting item has run
                if (self._stop and self.discard_on_stop) or not self._slot:
                    return
                item = self._slot.pop()
                self._busy = True
                self._cond.notify_all()  # the slot is free: wakes a producer waiting in HandoffStage.put
            try:
                self._process(item)
            except Exception as err:  # the node must keep serving; the error is reported, not swallowed
                self._on_error(err)
            finally:
                with self._cond:
                    self._busy = False


class LatestWorker(_SlotThread[T]):
    """Runs ``process(item)`` on a background thread for the newest submitted item.

    Arguments as :class:`_SlotThread`; the thread is named ``inference`` unless ``name`` says otherwise.
    """

    thread_name = "inference"
    discard_on_stop = True  # only the newest pair matters: a stale one is not worth running at shutdown

    def submit(self, item: T) -> bool:
        """Put ``item`` in the slot; returns True when it replaced an item not yet started (a drop)."""
        with self._cond:
            replaced = bool(self._slot)
            self._slot[:] = [item]
            self._cond.notify()
        return replaced


class HandoffStage(_SlotThread[T]):
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

    Arguments as :class:`_SlotThread`; the thread is named ``publish`` unless ``name`` says otherwise.
    """

    thread_name = "publish"
    discard_on_stop = False  # what was handed over is always published

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
