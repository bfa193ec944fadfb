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
  late frame but time restarting (a bag played in a loop, a simulator reset): a new *epoch* begins
  and is counted once in ``resets``. The other camera's first frame within ``jump_reset_ns`` of the
  new timeline joins that epoch (one wrap is one reset, whichever camera wraps first; a camera that
  never jumped, because the first one's jump was a glitch, joins the same way), and frames pair only
  within their epoch. Frames of the old epoch stay queued while their partner can still come (the other camera
  has not wrapped yet: its last frames of the pass may arrive after the first camera's first frame
  of the next); once both cameras are past an epoch, what is left of it is dropped as ``reset``.
  Without ``jump_reset_ns`` (or for smaller steps back) such frames stay out-of-order drops, so a
  loop would stall pairing until the stamps passed the old maximum.

With ``slop_ns`` below half the frame period (the default rule; docs/DESIGN.md "Data flow in the
node") each frame has at most one partner within the slop, and the greedy rule above is exact.
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
    """Counters for diagnostics; ``unpaired``/``out_of_order``/``overflow``/``reset`` are per stream."""

    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    unpaired: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    out_of_order: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    overflow: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    reset: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STREAMS, 0))
    paired: int = 0
    max_abs_skew_ns: int = 0
    sum_abs_skew_ns: int = 0
    resets: int = 0

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
        # per stream: (epoch, stamp, item), ordered by epoch, then stamp
        self._queues: dict[str, deque[tuple[int, int, T]]] = {s: deque() for s in _STREAMS}
        self.reset()

    def push(self, stream: Stream, stamp_ns: int, item: T) -> list[Pair[T]]:
        """Add one frame; return the pairs it completed (usually zero or one).

        Returns an empty list, and counts the frame as out of order, when ``stamp_ns`` is not newer
        than the previous frame of the same stream (unless it jumped back far enough to reset).
        """
        if stream not in self._queues:
            raise ValueError(f"stream must be 'ir' or 'visible', got {stream!r}")
        self.stats.received[stream] += 1
        last = self._last[stream]
        if self._epoch_of[stream] < self._epoch and self._on_newest_timeline(stamp_ns):
            self._epoch_of[stream], last = self._epoch, None  # the other camera's wrap: same epoch
        elif last is not None and self.jump_reset_ns is not None and last - stamp_ns > self.jump_reset_ns:
            self._epoch += 1  # time went back: a new epoch, one reset
            self.stats.resets += 1
            self._span = (stamp_ns, stamp_ns)
            self._epoch_of[stream], last = self._epoch, None
        elif last is None:
            self._epoch_of[stream] = self._epoch  # a camera's first frame belongs to the current timeline
        if last is not None and stamp_ns <= last:
            self.stats.out_of_order[stream] += 1
            return []
        self._last[stream] = stamp_ns
        if self._epoch_of[stream] == self._epoch:
            self._span = (min(self._span[0], stamp_ns), max(self._span[1], stamp_ns))
        queue = self._queues[stream]
        queue.append((self._epoch_of[stream], stamp_ns, item))
        if len(queue) > self.queue_size:
            queue.popleft()
            self.stats.overflow[stream] += 1
        return self._match()

    def pending(self, stream: Stream) -> int:
        """Frames of ``stream`` waiting for a partner."""
        return len(self._queues[stream])

    def reset(self) -> None:
        """Forget queued frames, the last stamps and the epochs; keep stats."""
        for q in self._queues.values():
            q.clear()
        self._last: dict[str, int | None] = dict.fromkeys(_STREAMS)
        self._epoch = 0  # the newest timeline
        self._epoch_of: dict[str, int] = dict.fromkeys(_STREAMS, 0)  # each stream's timeline
        self._span = (2**63, -(2**63))  # lowest and highest stamp seen on the newest timeline

    def _on_newest_timeline(self, stamp_ns: int) -> bool:
        """True when ``stamp_ns`` lies within ``jump_reset_ns`` of the newest epoch's stamps: a stream
        still on an older epoch that sends such a stamp has moved to the newest timeline too."""
        lo, hi = self._span
        return lo - self.jump_reset_ns <= stamp_ns <= hi + self.jump_reset_ns

    def _drop_stale_heads(self) -> None:
        """Drop heads of an epoch that both streams have left (no partner can come any more)."""
        current = min(self._epoch_of.values())
        for stream, queue in self._queues.items():
            while queue and queue[0][0] < current:
                queue.popleft()
                self.stats.reset[stream] += 1

    def _drop_head(self, stream: str) -> None:
        self._queues[stream].popleft()
        self.stats.unpaired[stream] += 1

    def _match(self) -> list[Pair[T]]:
        self._drop_stale_heads()
        ir_q, vis_q = self._queues["ir"], self._queues["visible"]
        pairs: list[Pair[T]] = []
        while ir_q and vis_q:
            (e_ir, t_ir, ir), (e_vis, t_vis, vis) = ir_q[0], vis_q[0]
            if e_ir != e_vis:  # the other stream is past this head's epoch: its partner never comes
                stale = "ir" if e_ir < e_vis else "visible"
                self._queues[stale].popleft()
                self.stats.reset[stale] += 1
                continue
            older, older_q, newer_t = ("ir", ir_q, t_vis) if t_ir <= t_vis else ("visible", vis_q, t_ir)
            skew = abs(t_vis - t_ir)
            if skew > self.slop_ns:
                self._drop_head(older)
                continue
            if len(older_q) > 1 and older_q[1][0] == older_q[0][0] and abs(older_q[1][1] - newer_t) < skew:
                self._drop_head(older)
                continue
            ir_q.popleft()
            vis_q.popleft()
            self.stats.paired += 1
            self.stats.sum_abs_skew_ns += skew
            self.stats.max_abs_skew_ns = max(self.stats.max_abs_skew_ns, skew)
            pairs.append(Pair(t_ir, ir, t_vis, vis))
        return pairs
