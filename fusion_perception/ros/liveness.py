"""Which cameras are alive, and how bad it is when one is not (pure Python, no rclpy).

A camera that stops (driver crash, cable, power) must not leave the node silently useless: the
intake needs to know when to stop waiting for a partner frame (:mod:`.intake`), and /diagnostics
must escalate: one camera silent longer than ``stale_s`` is WARN, longer than ``error_s`` ERROR;
both silent longer than ``stale_s`` is ERROR at once (nothing can come out). Silence is counted from
the last usable frame, or from activation for a camera never heard.

A camera counts as *alone* only once it has streamed for ``stale_s`` while the other stayed
silent: when both cameras start (or resume after a pause) together, the first frame of one must
wait for its partner as usual, not be processed alone because the other was silent a moment ago.
"""

from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import ERROR, OK, WARN

__all__ = ["POLICIES", "STREAMS", "CameraWatch", "Liveness"]

STREAMS = ("ir", "visible")
POLICIES = ("degrade", "drop")  # what the node does while exactly one camera is stale


@dataclass(frozen=True)
class Liveness:
    """One assessment: level (diagnostic_msgs levels), a message ("" when OK), silence per stream.

    ``degraded`` is True while outputs come from one camera alone (one stale, policy ``degrade``).
    """

    level: int
    message: str
    silent_s: dict[str, float]
    live: tuple[str, ...]
    degraded: bool

    def values(self) -> list[tuple[str, str]]:
        """Key/values for /diagnostics."""
        return [("degraded", str(self.degraded).lower()), ("live_cameras", "+".join(self.live) or "none"),
                *((f"silent_{s}_s", f"{t:.2f}") for s, t in self.silent_s.items())]


class CameraWatch:
    """Times since the last usable frame of each camera (monotonic seconds, passed in by the caller).

    Args:
        now: when watching starts (activation).
        stale_s: a camera silent longer than this is stale; a pause that long also restarts
            the other camera's "streaming since".
    """

    def __init__(self, now: float, stale_s: float) -> None:
        self.stale_s = stale_s
        self._start = now
        self._last: dict[str, float] = {}
        self._since: dict[str, float] = {}

    def heard(self, stream: str, now: float) -> None:
        """A usable frame of ``stream`` arrived at ``now``."""
        if self.silence(stream, now) > self.stale_s or stream not in self._since:
            self._since[stream] = now
        self._last[stream] = now

    def silence(self, stream: str, now: float) -> float:
        """Seconds since ``stream``'s last usable frame (since the watch started if none came)."""
        return now - self._last.get(stream, self._start)

    def alone(self, stream: str, now: float) -> bool:
        """True when ``stream`` has streamed for ``stale_s`` while its partner stayed stale."""
        partner = "visible" if stream == "ir" else "ir"
        streaming = now - self._since.get(stream, now) >= self.stale_s
        return streaming and self.silence(partner, now) > self.stale_s

    def assess(self, now: float, error_s: float, policy: str) -> Liveness:
        """Level and message for the current silences.

        Args:
            now: monotonic seconds.
            error_s: a camera silent longer than this is an ERROR (>= ``stale_s``).
            policy: what the node does meanwhile (one of :data:`POLICIES`), for the message.
        """
        stale_s = self.stale_s
        silent = {s: self.silence(s, now) for s in STREAMS}
        live = tuple(s for s in STREAMS if silent[s] <= stale_s)
        if not live:
            quiet = min(silent.values())
            return Liveness(ERROR, f"no frames from either camera for {quiet:.1f} s", silent, live, False)
        if len(live) == len(STREAMS):
            return Liveness(OK, "", silent, live, False)
        (dead,) = (s for s in STREAMS if s not in live)
        level = ERROR if silent[dead] > error_s else WARN
        meanwhile = (f"publishing {live[0]} only (degraded)" if policy == "degrade"
                     else "publishing nothing (camera_loss_policy: drop)")
        message = f"no usable {dead} frames for {silent[dead]:.1f} s: {meanwhile}"
        return Liveness(level, message, silent, live, policy == "degrade")
