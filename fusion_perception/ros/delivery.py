"""Counting frames that never reached the node's callback (pure Python, no rclpy).

A frame can vanish before any node code runs: lost in transport (Fast DDS notices the gap and
raises the ``message_lost`` event), or overwritten in the subscription's history queue when the
executor fell behind the camera (no event at all). Before this accounting (commit b2ed41c,
2026-12-01) a run lost 457 of 9000 frames that way, uncounted. Each message carries its
publisher's sequence number (``publication_sequence_number`` in rclpy's message info), so the node
counts every gap between consecutive frames; the ``message_lost`` total says how many of those the
transport lost, and the rest were overwritten in the queue (see :class:`LossLedger`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LossLedger", "SequenceGaps"]


@dataclass
class SequenceGaps:
    """Gaps in one publisher's sequence numbers, as seen by one subscription.

    Sequence numbers count up by one per message of a publisher, starting at 1. A number not above
    the last one means a new publisher (a restarted camera driver, a bag replayed again): tracking
    restarts there without counting anything. ``0`` or negative numbers (an RMW that does not report
    them) are ignored.
    """

    last: int | None = None
    missing: int = 0
    restarts: int = 0

    def update(self, seq: int) -> int:
        """Account for the message with sequence number ``seq``; returns how many went missing before it."""
        if seq <= 0:
            return 0
        if self.last is None or seq <= self.last:
            self.restarts += self.last is not None
            self.last = seq
            return 0
        new = seq - self.last - 1
        self.last = seq
        self.missing += new
        return new

    def forget(self) -> None:
        """Stop tracking the current publisher (several publishers interleave their numbers)."""
        self.last = None


class LossLedger:
    """Losses of one stream, split into lost in transport and overwritten in the queue, never both.

    The transport total comes from the ``message_lost`` event, the gaps from sequence numbers; the
    event and the frame that reveals a gap are delivered separately, in either order. So a gap is
    attributed to the queue only one :meth:`settle` later (the node settles once per diagnostics
    period), once the event for it has had time to arrive; counting it at once would count a
    transport loss twice.
    """

    def __init__(self) -> None:
        self.gaps = SequenceGaps()
        self.transport = 0
        self.queue = 0
        self._settled_gaps = 0

    def message(self, seq: int, single_publisher: bool = True) -> None:
        """A message with publication sequence number ``seq`` reached the callback.

        With several publishers on the topic their numbers interleave, so gaps cannot be told
        apart from the other publisher's messages: tracking pauses until one publisher is left.
        """
        if single_publisher:
            self.gaps.update(seq)
        else:
            self.gaps.forget()

    def transport_lost(self, total: int) -> None:
        """The subscription's ``message_lost`` total (Fast DDS counts it since the subscription began)."""
        self.transport = max(self.transport, int(total))

    def settle(self) -> None:
        """Attribute the gaps seen up to the previous settle, less the transport losses, to the queue."""
        self.queue = max(self.queue, self._settled_gaps - self.transport)
        self._settled_gaps = self.gaps.missing
