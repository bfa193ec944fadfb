"""Counters behind the node's /diagnostics status (pure Python, thread-safe, no rclpy).

The subscription callbacks, the inference worker and the diagnostics timer run on different
threads, so every update goes through one lock. A status is computed per period: rates are over
the period, counters are totals since start (so a monitor can diff them), and the level is the
worst thing that happened in the period (an old error does not keep the node red forever).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from ..pairing import PairingStats

__all__ = ["ERROR", "OK", "STALE", "WARN", "NodeStats", "Status"]

# diagnostic_msgs/DiagnosticStatus levels (bytes in the message; plain ints here).
OK, WARN, ERROR, STALE = 0, 1, 2, 3


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
    """What the node counts: inputs, outputs, drops per (stream, reason), latencies, errors.

    Args:
        window: number of recent latency samples the percentiles are taken over.
    """

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.drops: Counter[tuple[str, str]] = Counter()
        self.outputs = 0
        self.pipeline_ms: deque[float] = deque(maxlen=window)
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.last_error = ""
        self.backend_name = "none"
        self.backend_state = "unconfigured"
        self.model = ""
        self.notes: list[str] = []
        self._last_rx: dict[str, float] = {}
        self._period_level = OK
        self._period_reasons: list[str] = []
        self._period_start = time.monotonic()
        self._period_counts: Counter[str] = Counter()

    def input(self, stream: str) -> None:
        """One message arrived on ``stream`` (before any validation)."""
        with self._lock:
            self.received[stream] += 1
            self._period_counts[stream] += 1
            self._last_rx[stream] = time.monotonic()

    def drop(self, stream: str, reason: str, detail: str = "", level: int = WARN) -> None:
        """A frame or pair of ``stream`` was dropped for ``reason``; ``detail`` becomes the last error."""
        with self._lock:
            self.drops[(stream, reason)] += 1
            self._raise(level, f"{stream} {reason}" + (f": {detail}" if detail else ""))

    def drops_from_pairer(self, stats: PairingStats, seen: dict[tuple[str, str], int]) -> None:
        """Fold the pairer's counters in; ``seen`` holds the values folded last time (updated here)."""
        for stream in ("ir", "visible"):
            counts = (("unpaired", stats.unpaired[stream]), ("out_of_order", stats.out_of_order[stream]),
                      ("overflow", stats.overflow[stream]))
            for reason, count in counts:
                new = count - seen.get((stream, reason), 0)
                if new > 0:
                    seen[(stream, reason)] = count
                    with self._lock:
                        self.drops[(stream, reason)] += new
                        self._raise(WARN, f"{new} {stream} frame(s) dropped: {reason}")

    def output(self, pipeline_ms: float, latency_ms: float) -> None:
        """One pair was published: pipeline time and stamp -> publish age, milliseconds."""
        with self._lock:
            self.outputs += 1
            self._period_counts["output"] += 1
            self.pipeline_ms.append(pipeline_ms)
            self.latency_ms.append(latency_ms)

    def error(self, reason: str, level: int = ERROR) -> None:
        """Something failed that is not a dropped frame (backend load, a pipeline exception)."""
        with self._lock:
            self._raise(level, reason)

    def note(self, text: str) -> None:
        """A standing fact worth showing in every status (e.g. why ``auto`` skipped a backend)."""
        with self._lock:
            self.notes.append(text)

    def backend(self, name: str, state: str, model: str = "") -> None:
        with self._lock:
            self.backend_name, self.backend_state = name, state
            if model:
                self.model = model

    def silent_streams(self, stale_s: float, now: float | None = None) -> list[str]:
        """Streams silent for ``stale_s`` while another stream is live (one camera down)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._last_rx:
                return []
            ages = {s: now - self._last_rx.get(s, -float("inf")) for s in ("ir", "visible")}
        if min(ages.values()) > stale_s:  # both silent: nothing is publishing, not a camera fault
            return []
        return [s for s, age in ages.items() if age > stale_s]

    def _raise(self, level: int, reason: str) -> None:
        self._period_level = max(self._period_level, level)
        if reason not in self._period_reasons:
            self._period_reasons.append(reason)
        if level >= WARN:
            self.last_error = reason

    def status(self, skew: PairingStats | None) -> Status:
        """Close the current period and return its status."""
        now = time.monotonic()
        with self._lock:
            dt = max(now - self._period_start, 1e-9)
            level, reasons = self._period_level, list(self._period_reasons)
            if self.backend_state != "active" and level < WARN:
                level, reasons = WARN, [f"backend {self.backend_state}", *reasons]
            values: list[tuple[str, str]] = [
                ("backend", self.backend_name),
                ("backend_state", self.backend_state),
                ("model", self.model),
                ("rate_ir_hz", f"{self._period_counts['ir'] / dt:.2f}"),
                ("rate_visible_hz", f"{self._period_counts['visible'] / dt:.2f}"),
                ("rate_output_hz", f"{self._period_counts['output'] / dt:.2f}"),
                ("received_ir", str(self.received["ir"])),
                ("received_visible", str(self.received["visible"])),
                ("outputs", str(self.outputs)),
                ("pipeline_ms_p50", f"{_pct(self.pipeline_ms, 50):.2f}"),
                ("pipeline_ms_p95", f"{_pct(self.pipeline_ms, 95):.2f}"),
                ("latency_ms_p50", f"{_pct(self.latency_ms, 50):.2f}"),
                ("latency_ms_p95", f"{_pct(self.latency_ms, 95):.2f}"),
            ]
            if skew is not None:
                values += [
                    ("paired", str(skew.paired)),
                    ("skew_ms_mean", f"{skew.mean_abs_skew_ns / 1e6:.3f}"),
                    ("skew_ms_max", f"{skew.max_abs_skew_ns / 1e6:.3f}"),
                ]
            values += [(f"dropped_{stream}_{reason}", str(n))
                       for (stream, reason), n in sorted(self.drops.items())]
            values.append(("last_error", self.last_error))
            values.append(("notes", "; ".join(self.notes)))
            self._period_level, self._period_reasons = OK, []
            self._period_counts.clear()
            self._period_start = now
        message = "; ".join(reasons) if reasons else "ok"
        return Status(level, message[:500], tuple(values))
