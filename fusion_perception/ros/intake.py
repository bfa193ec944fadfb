"""What happens to each decoded frame: paired, processed alone (degraded), or dropped with a reason.

Pure Python (no rclpy), so the policy is tested without DDS; the node calls :meth:`FrameIntake.push`
from its subscription callbacks (one executor thread) and submits the returned jobs to the worker.

* Both cameras live: frames go through :class:`~fusion_perception.pairing.StampPairer` (stamp
  pairing, jump-back reset).
* One camera silent longer than ``stale_s`` while the other streams (:mod:`.liveness`): with
  policy ``degrade`` each frame of the live camera becomes a job on its own (the worker feeds it
  as both sources, see :func:`single_camera_inputs`); with ``drop`` it is dropped as
  ``no_partner``. Either way the frame is counted, never left to overflow a queue. The first
  usable frame of the silent camera ends it: pairing resumes with the next frames.
* Before a frame of the live camera goes on alone it is held for the pairing window (the
  pairer's slop, as wall-clock seconds): a returning camera's first frame arrives while that
  camera still counts as stale, a few milliseconds after its partner (the driver of the first
  camera published first), and without the wait the partner was published alone and the
  returning frame left over, dropped as ``unpaired``. Held, the two are paired as usual. A held
  frame goes on alone when the node's timer calls :meth:`FrameIntake.expire` after the window,
  when its own camera's next frame comes first, or when the other camera's frame is not within
  the window; until then it counts as pending.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from ..pairing import Pair, StampPairer, Stream
from ..preprocessing import GainControl, thermal_to_unit, to_gray, unit_to_uint8
from .diagnostics import pairing_values
from .liveness import POLICIES, STREAMS, CameraWatch

__all__ = ["FrameIntake", "Job", "single_camera_inputs"]

T = TypeVar("T")


@dataclass(frozen=True)
class Job(Generic[T]):
    """Work for the inference worker: a stamp-matched pair, or one camera's frame (the other is None)."""

    ir: T | None
    visible: T | None

    @property
    def sources(self) -> str:
        """"ir+visible", "ir" or "visible": what the outputs were computed from."""
        return "+".join(s for s, f in (("ir", self.ir), ("visible", self.visible)) if f is not None)

    @property
    def degraded(self) -> bool:
        return self.ir is None or self.visible is None

    @classmethod
    def of(cls, pair: Pair[T]) -> Job[T]:
        return cls(pair.ir, pair.visible)


def single_camera_inputs(
    ir: np.ndarray | None, visible: np.ndarray | None, gain: GainControl | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(IR, visible) arrays for the pipeline when one camera is missing: the live one stands for both.

    Visible only: IR = the visible frame's luma (HxW uint8). IR only: visible = the IR frame as an
    8-bit grey image (a grey visible frame carries neutral chroma, so the fused image stays grey;
    mono16 goes through the node's ``gain`` first). The network then sees two identical sources,
    which is what "fused = that camera" means; segmentation and detection run on it as usual.

    Raises:
        ValueError: both or neither are given.
    """
    if (ir is None) == (visible is None):
        raise ValueError("exactly one of ir and visible must be given")
    if visible is not None:
        return np.ascontiguousarray(to_gray(visible)), visible
    grey = to_gray(ir)
    if grey.dtype != np.uint8:
        grey = unit_to_uint8(thermal_to_unit(grey, gain))
    return ir, np.ascontiguousarray(grey)


@dataclass(frozen=True)
class _Held(Generic[T]):
    """A frame of a camera whose partner is stale, waiting the pairing window before it goes on alone."""

    stream: Stream
    stamp_ns: int
    frame: T
    since: float  # monotonic seconds at receipt


class FrameIntake(Generic[T]):
    """Pairing plus the single-camera policy for one activation of the node.

    Args:
        pairer: the stamp pairer (configured with the node's slop, queue size and jump threshold).
        stale_s: a camera silent longer than this no longer holds its partner's frames back.
        policy: ``degrade`` (process the live camera alone) or ``drop`` (publish nothing).
        now: monotonic seconds at activation (silence of a camera never heard counts from here).
    """

    def __init__(self, pairer: StampPairer[T], stale_s: float, policy: str, now: float) -> None:
        self.pairer = pairer
        self.set_policy(policy)
        self.watch = CameraWatch(now, stale_s)
        self.wait_s = pairer.slop_ns / 1e9  # how long a lone frame waits for its partner
        self.single: Counter[str] = Counter()  # frames processed alone, per stream
        self.unpaired_offset_ns: int | None = None  # see :meth:`_note_offset`
        self._stamp_lead: dict[str, int] = {}  # stream -> stamp - arrival of its newest frame
        self._no_partner: Counter[str] = Counter()
        self._held: _Held[T] | None = None

    def set_policy(self, policy: str) -> None:
        """Switch the single-camera policy (a runtime parameter change takes effect from the next frame)."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.policy = policy

    @property
    def holding(self) -> bool:
        """True while a frame waits for its partner before going on alone (see :meth:`expire`)."""
        return self._held is not None

    def push(self, stream: Stream, stamp_ns: int, frame: T, now: float) -> list[Job[T]]:
        """One usable frame of ``stream``; returns the jobs it completes (zero, one, rarely more)."""
        self._stamp_lead[stream] = stamp_ns - round(now * 1e9)
        unpaired = sum(self.pairer.stats.unpaired.values())
        jobs = self._settle_held(stream, stamp_ns)
        self.watch.heard(stream, now)
        if not self.watch.alone(stream, now):
            jobs += [Job.of(pair) for pair in self.pairer.push(stream, stamp_ns, frame)]
        else:
            self._held = _Held(stream, stamp_ns, frame, now)
        if sum(self.pairer.stats.unpaired.values()) > unpaired:
            self._note_offset()
        return jobs

    def _note_offset(self) -> None:
        """Record the cameras' stamp offset when a frame went unpaired.

        The offset is visible - IR between frames that *arrived* together: each stream's newest
        stamp minus its arrival time (monotonic clock), then their difference. Comparing stamps
        alone cannot tell it: with periodic cameras the nearest frame of the other camera is never
        more than half a period away, so cameras 500 ms apart at 5 Hz would read about 100 ms. The
        figure includes any difference in transport delay between the two cameras (a few ms on one
        host), and it is None until both cameras were heard.
        """
        if len(self._stamp_lead) == len(STREAMS):
            self.unpaired_offset_ns = self._stamp_lead["visible"] - self._stamp_lead["ir"]

    def expire(self, now: float) -> list[Job[T]]:
        """Send the held frame on alone once it has waited ``wait_s`` (monotonic ``now``) in vain."""
        held = self._held
        if held is None or now - held.since < self.wait_s:
            return []
        self._held = None
        return self._alone(held)

    def _settle_held(self, stream: Stream, stamp_ns: int) -> list[Job[T]]:
        """Decide the held frame's fate on a new frame of ``stream`` stamped ``stamp_ns``.

        Its partner (the other camera, within the pairing window): both go through the pairer, so
        the returning pair is fused and counted as usual. Anything else means the partner did not
        come in time: the held frame goes on alone.
        """
        held, self._held = self._held, None
        if held is None:
            return []
        if held.stream != stream and abs(stamp_ns - held.stamp_ns) <= self.pairer.slop_ns:
            return [Job.of(pair) for pair in self.pairer.push(held.stream, held.stamp_ns, held.frame)]
        return self._alone(held)

    def _alone(self, held: _Held[T]) -> list[Job[T]]:
        """The policy for a frame without a partner: a single-camera job, or a ``no_partner`` drop."""
        if self.policy == "drop":
            self._no_partner[held.stream] += 1
            return []
        self.single[held.stream] += 1
        return [Job(held.frame, None) if held.stream == "ir" else Job(None, held.frame)]

    def values(self) -> list[tuple[str, str]]:
        """Key/values for /diagnostics: pairing (see ``pairing_values``), queued and lone frames."""
        held = self._held.stream if self._held is not None else None
        pending = {s: self.pairer.pending(s) + int(s == held) for s in STREAMS}
        alone = [(f"alone_{s}", str(self.single[s])) for s in STREAMS]
        return [*pairing_values(self.pairer.stats, pending, self.unpaired_offset_ns), *alone]

    def drops(self) -> dict[tuple[str, str], int]:
        """(stream, reason) -> total of every frame dropped here or in the pairer."""
        return {**self.pairer.stats.drops(), **{(s, "no_partner"): self._no_partner[s] for s in STREAMS}}
