"""Approximate-time pairing of two stamped streams (IR and visible), without ROS.

message_filters is not on PyPI, and the node and bag evaluation must pair frames identically, so
both use this pure class. Rules:

* stamps are integers in nanoseconds; each stream must be increasing. A frame whose stamp is not
  newer than the last one seen on its stream is rejected and counted as out of order (pairing a
  stale frame would publish outputs stamped in the past);
* the two heads pair when their stamps differ by at most ``slop_ns``; if the older head's successor
  is closer to the other head, the older head is dropped instead (so a late frame never steals its
  neighbour's partner);
* a head that is more than ``slop_ns`` older than the other stream's head can never pair (stamps
  only grow) and is dropped as unpaired;
* a stream whose partner stays silent holds at most ``queue_size`` frames; older ones are dropped;
* with ``jump_reset_ns`` set, a stamp earlier than its stream's newest by more than that is not a
  late frame but time restarting (a bag played in a loop, a simulator reset): pairing starts over
  from that frame, and the frames still queued are dropped as ``reset``. Without it (or for smaller
  steps back) such frames stay out-of-order drops, so a loop would stall pairing until the stamps
  passed the old maximum.

With ``slop_ns`` below half the frame period (the default rule in DESIGN.md) each frame has at most
one partner within the slop, and the greedy rule above is exact.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

__all__ = ["Pair", "PairingStats", "StampPairer", "Stream"]

T = TypeVar("T")
Stream = Literal["ir", "visible"]
_STREAMS: tuple[Stream, Stream] = ("ir", "visible")


@dataclass(frozen=True)
class Pair(Generic[T]):
    """A matched pair; ``skew_ns`` = visible stamp - IR stamp."""

    ir_stamp_ns: int
    ir: T
    visible_stamp_ns: int
    visible: T

    @property
    def skew_ns(self) -> int:
        return self.visible_stamp_ns - self.ir_stamp_ns


@dataclass
class PairingStats:
    """Counters for diagnostics; ``unpaired``/``out_of_order``/``overflow``/``reset`` are per stream.

    ``last_unpaired_offset_ns`` is visible - IR between the latest frame dropped as unpaired and the
    nearest frame of the other stream: the skew of paired frames alone cannot show cameras that
    drifted apart, because then nothing pairs (None until a frame was unpaired that way).
    """

    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    unpaired: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    out_of_order: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    overflow: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    reset: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    paired: int = 0
    max_abs_skew_ns: int = 0
    sum_abs_skew_ns: int = 0
    resets: int = 0
    last_unpaired_offset_ns: int | None = None

    @property
    def mean_abs_skew_ns(self) -> float:
        return self.sum_abs_skew_ns / self.paired if self.paired else 0.0

    def dropped(self, stream: str) -> int:
        """Frames of ``stream`` that never reached the pipeline, for whatever reason."""
        return self.unpaired[stream] + self.out_of_order[stream] + self.overflow[stream] + self.reset[stream]

    def drops(self) -> dict[tuple[str, str], int]:
        """Every drop counter as (stream, reason) -> total, for diagnostics."""
        return {(stream, reason): counts[stream]
                for reason, counts in (("unpaired", self.unpaired), ("out_of_order", self.out_of_order),
                                       ("overflow", self.overflow), ("reset", self.reset))
                for stream in _STREAMS}


class StampPairer(Generic[T]):
    """Pairs IR and visible items by stamp. Not thread-safe (the node calls it from one executor).

    Args:
        slop_ns: largest accepted |visible - IR| stamp difference, nanoseconds (>= 0).
        queue_size: most frames held per stream while waiting for a partner (>= 1).
        jump_reset_ns: a step back in time larger than this restarts pairing (> 0); None never does.
    """

    def __init__(self, slop_ns: int, queue_size: int = 10, *, jump_reset_ns: int | None = None) -> None:
        if slop_ns < 0:
            raise ValueError(f"slop_ns must be >= 0, got {slop_ns}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if jump_reset_ns is not None and jump_reset_ns <= 0:
            raise ValueError(f"jump_reset_ns must be > 0 or None, got {jump_reset_ns}")
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self.jump_reset_ns = jump_reset_ns
        self.stats = PairingStats()
        self._queues: dict[str, deque[tuple[int, T]]] = {s: deque() for s in _STREAMS}
        self._last: dict[str, int | None] = dict.fromkeys(_STREAMS)
        self._removed: dict[str, int | None] = dict.fromkeys(_STREAMS)  # stamp last taken off each queue

    def push(self, stream: Stream, stamp_ns: int, item: T) -> list[Pair[T]]:
        """Add one frame; return the pairs it completed (usually zero or one).

        Returns an empty list, and counts the frame as out of order, when ``stamp_ns`` is not newer
        than the previous frame of the same stream (unless it jumped back far enough to reset).
        """
        if stream not in self._queues:
            raise ValueError(f"stream must be 'ir' or 'visible', got {stream!r}")
        self.stats.received[stream] += 1
        last = self._last[stream]
        if last is not None and self.jump_reset_ns is not None and last - stamp_ns > self.jump_reset_ns:
            self._restart()
            last = None
        if last is not None and stamp_ns <= last:
            self.stats.out_of_order[stream] += 1
            return []
        self._last[stream] = stamp_ns
        queue = self._queues[stream]
        queue.append((stamp_ns, item))
        if len(queue) > self.queue_size:
            queue.popleft()
            self.stats.overflow[stream] += 1
        return self._match()

    def pending(self, stream: Stream) -> int:
        """Frames of ``stream`` waiting for a partner."""
        return len(self._queues[stream])

    def reset(self) -> None:
        """Forget queued frames and the last stamps (e.g. after a time jump in replay); keep stats."""
        for q in self._queues.values():
            q.clear()
        self._last = dict.fromkeys(_STREAMS)
        self._removed = dict.fromkeys(_STREAMS)

    def _restart(self) -> None:
        """Time went backwards: drop what is queued (counted as ``reset``) and forget the last stamps."""
        for stream, queue in self._queues.items():
            self.stats.reset[stream] += len(queue)
        self.stats.resets += 1
        self.reset()

    def _drop_head(self, stream: str) -> None:
        self._removed[stream] = self._queues[stream].popleft()[0]
        self.stats.unpaired[stream] += 1

    def _note_unpaired_offset(self, stream: str, stamp_ns: int, other_head_ns: int) -> None:
        """Offset of an unpaired frame to the nearest frame of the other stream (head or last removed)."""
        other = "visible" if stream == "ir" else "ir"
        near = [other_head_ns] + ([self._removed[other]] if self._removed[other] is not None else [])
        nearest = min(near, key=lambda t: abs(t - stamp_ns))
        self.stats.last_unpaired_offset_ns = nearest - stamp_ns if stream == "ir" else stamp_ns - nearest

    def _match(self) -> list[Pair[T]]:
        ir_q, vis_q = self._queues["ir"], self._queues["visible"]
        pairs: list[Pair[T]] = []
        while ir_q and vis_q:
            (t_ir, ir), (t_vis, vis) = ir_q[0], vis_q[0]
            older, older_q, newer_t = ("ir", ir_q, t_vis) if t_ir <= t_vis else ("visible", vis_q, t_ir)
            skew = abs(t_vis - t_ir)
            if skew > self.slop_ns:
                self._note_unpaired_offset(older, older_q[0][0], newer_t)
                self._drop_head(older)
                continue
            if len(older_q) > 1 and abs(older_q[1][0] - newer_t) < skew:
                self._drop_head(older)
                continue
            self._removed["ir"], self._removed["visible"] = ir_q.popleft()[0], vis_q.popleft()[0]
            self.stats.paired += 1
            self.stats.sum_abs_skew_ns += skew
            self.stats.max_abs_skew_ns = max(self.stats.max_abs_skew_ns, skew)
            pairs.append(Pair(t_ir, ir, t_vis, vis))
        return pairs
