"""Counters behind the node's /diagnostics status (pure Python, thread-safe, no rclpy).

The subscription callbacks, the inference worker and the diagnostics timer run on different
threads, so every update goes through one lock. A status is computed per period: rates are over
the period, counters are totals since start (so a monitor can diff them), and the level is the
worst of three things:

* the lifecycle state, which holds while it lasts: unconfigured or a failed configure is ERROR
  (the node cannot produce anything), inactive is WARN, both with the reason;
* camera liveness while active (:mod:`.liveness`): one camera silent is WARN, then ERROR;
* what happened in the period: drops are WARN, failures ERROR. An old error does not keep the
  node red forever, and the text gives the period's count for each (stream, reason), the same
  numbers the ``dropped_*`` counters moved by.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..pairing import PairingStats

__all__ = ["ERROR", "OK", "STALE", "WARN", "NodeStats", "Status", "pairing_values"]

# diagnostic_msgs/DiagnosticStatus levels (bytes in the message; plain ints here).
OK, WARN, ERROR, STALE = 0, 1, 2, 3
_STATE_LEVELS = {"active": OK, "inactive": WARN}  # any other state (unconfigured, configure failed): ERROR


@dataclass(frozen=True)
class Status:
    """One diagnostics status: level, a one-line message, and key/value pairs (all strings)."""

    level: int
    message: str
    values: tuple[tuple[str, str], ...]

    def value(self, key: str) -> str:
        """Value of ``key``; raises KeyError naming the missing key."""
        for k, v in self.values:
            if k == key:
                return v
        raise KeyError(key)


def _pct(samples: deque[float], q: float) -> float:
    return float(np.percentile(np.fromiter(samples, float), q)) if samples else float("nan")


class NodeStats:
    """What the node counts: inputs, outputs, drops per (stream, reason), latencies, errors, state.

    Args:
        window: number of recent latency samples the percentiles are taken over.
    """

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.drops: Counter[tuple[str, str]] = Counter()
        self.outputs = 0
        self.outputs_degraded = 0
        self.pipeline_ms: deque[float] = deque(maxlen=window)
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.last_error = ""
        self.backend_name = "none"
        self.backend_state = "unconfigured"
        self.state_reason = "not configured yet"
        self.model = ""
        self.notes: list[str] = []
        self._period_level = OK
        self._period_reasons: list[str] = []
        self._period_drops: Counter[tuple[str, str]] = Counter()
        self._drop_detail: dict[tuple[str, str], str] = {}
        self._period_start = time.monotonic()
        self._period_counts: Counter[str] = Counter()

    def input(self, stream: str) -> None:
        """One message arrived on ``stream`` (before any validation)."""
        with self._lock:
            self.received[stream] += 1
            self._period_counts[stream] += 1

    def drop(self, stream: str, reason: str, detail: str = "", level: int = WARN) -> None:
        """A frame or pair of ``stream`` was dropped for ``reason``; ``detail`` says why, for people."""
        with self._lock:
            self._count_drop((stream, reason), 1, detail, level)

    def fold(self, totals: Mapping[tuple[str, str], int], seen: dict[tuple[str, str], int],
             level: int = WARN) -> None:
        """Add drops counted elsewhere (pairer, intake, transport) from that counter's running totals.

        ``seen`` holds the totals folded last time and is updated here; the caller keeps one per
        counting object and starts it empty when that object is replaced (a new activation).
        """
        with self._lock:
            for key, total in totals.items():
                if total > seen.get(key, 0):
                    self._count_drop(key, total - seen.get(key, 0), "", level)
                    seen[key] = total

    def _count_drop(self, key: tuple[str, str], n: int, detail: str, level: int) -> None:
        self.drops[key] += n
        self._period_drops[key] += n
        self._period_level = max(self._period_level, level)
        if detail:
            self._drop_detail[key] = detail
        self.last_error = f"{key[0]} {key[1]}" + (f": {detail}" if detail else "")

    def output(self, pipeline_ms: float, latency_ms: float, degraded: bool = False) -> None:
        """One job was published: pipeline time and stamp -> publish age, milliseconds."""
        with self._lock:
            self.outputs += 1
            self.outputs_degraded += degraded
            self._period_counts["output"] += 1
            self.pipeline_ms.append(pipeline_ms)
            self.latency_ms.append(latency_ms)

    def error(self, reason: str, level: int = ERROR) -> None:
        """Something failed that is not a dropped frame (backend load, a pipeline exception)."""
        with self._lock:
            self._period_level = max(self._period_level, level)
            if reason not in self._period_reasons:
                self._period_reasons.append(reason)
            if level >= WARN:
                self.last_error = reason

    def note(self, text: str) -> None:
        """A standing fact worth showing in every status (e.g. why ``auto`` skipped a backend)."""
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)

    def backend(self, name: str, state: str, model: str = "", reason: str = "") -> None:
        """Lifecycle/backend state and why (shown while the state lasts; see the module docstring)."""
        with self._lock:
            self.backend_name, self.backend_state, self.state_reason = name, state, reason
            if model:
                self.model = model

    def _period_messages(self) -> list[str]:
        parts = []
        for (stream, reason), n in sorted(self._period_drops.items()):
            unit = "pair" if stream == "pair" else f"{stream} frame"
            detail = self._drop_detail.get((stream, reason))
            parts.append(f"{n} {unit}(s) dropped: {reason}" + (f" ({detail})" if detail else ""))
        return parts + self._period_reasons

    def status(self, extra: Sequence[tuple[str, str]] = (), health: tuple[int, str] | None = None) -> Status:
        """Close the current period and return its status.

        Args:
            extra: more key/values (pairing, delivery, liveness), appended after the counters.
            health: (level, message) of camera liveness; only counted while the node is active.
        """
        now = time.monotonic()
        with self._lock:
            dt = max(now - self._period_start, 1e-9)
            state_level = _STATE_LEVELS.get(self.backend_state, ERROR)
            head: list[str] = []
            level = max(state_level, self._period_level)
            if state_level > OK:
                head.append(f"{self.backend_state}: {self.state_reason}" if self.state_reason
                            else self.backend_state)
            elif health is not None and health[0] > OK:
                level = max(level, health[0])
                head.append(health[1])
            reasons = head + [m for m in self._period_messages() if m not in head]  # each reason once
            values: list[tuple[str, str]] = [
                ("backend", self.backend_name),
                ("backend_state", self.backend_state),
                ("state_reason", self.state_reason),
                ("model", self.model),
                ("rate_ir_hz", f"{self._period_counts['ir'] / dt:.2f}"),
                ("rate_visible_hz", f"{self._period_counts['visible'] / dt:.2f}"),
                ("rate_output_hz", f"{self._period_counts['output'] / dt:.2f}"),
                ("received_ir", str(self.received["ir"])),
                ("received_visible", str(self.received["visible"])),
                ("outputs", str(self.outputs)),
                ("outputs_degraded", str(self.outputs_degraded)),
                ("pipeline_ms_p50", f"{_pct(self.pipeline_ms, 50):.2f}"),
                ("pipeline_ms_p95", f"{_pct(self.pipeline_ms, 95):.2f}"),
                ("latency_ms_p50", f"{_pct(self.latency_ms, 50):.2f}"),
                ("latency_ms_p95", f"{_pct(self.latency_ms, 95):.2f}"),
                *extra,
                *((f"dropped_{stream}_{why}", str(n)) for (stream, why), n in sorted(self.drops.items())),
                ("last_error", self.last_error),
                ("notes", "; ".join(self.notes)),
            ]
            self._period_level, self._period_reasons = OK, []
            self._period_drops.clear()
            self._period_counts.clear()
            self._period_start = now
        message = "; ".join(reasons) if reasons else "ok"
        return Status(level, message[:500], tuple(values))


def pairing_values(stats: PairingStats, pending: Mapping[str, int],
                   unpaired_offset_ns: int | None = None) -> list[tuple[str, str]]:
    """Key/values of the pairer: pairs, skew of paired frames, offset of unpaired ones, resets, queue.

    ``unpaired_offset_ms_last`` (visible - IR stamp offset of frames that arrived together, taken
    when the latest frame went unpaired; see ``FrameIntake._note_offset``) shows cameras drifting
    apart even when nothing pairs any more (then the skew of paired frames stays put); "nan" until
    a frame went unpaired.
    """
    off = unpaired_offset_ns
    unpaired = "nan" if off is None else f"{off / 1e6:.3f}"
    return [
        ("paired", str(stats.paired)),
        ("skew_ms_mean", f"{stats.mean_abs_skew_ns / 1e6:.3f}"),
        ("skew_ms_max", f"{stats.max_abs_skew_ns / 1e6:.3f}"),
        ("unpaired_offset_ms_last", unpaired),
        ("stamp_resets", str(stats.resets)),
        *((f"pending_{stream}", str(n)) for stream, n in pending.items()),
    ]
