"""``bag play``: publish a bag's messages live, with their recorded timing, so a real node can be fed.

rosbag2's player is not on PyPI; rosbags reads the CDR bytes and rclpy publishes them unchanged
(``Publisher.publish(bytes)``), so no message is deserialized on the way. Message i goes out at
``start + (log_time_i - log_time_0) / rate`` on a monotonic clock; with ``clock`` each message is
preceded by ``/clock`` = its log time, which drives nodes started with ``use_sim_time``.

DDS may lose the first messages after discovery even once a subscriber is matched
(docs/DESIGN.md "Conventions"): ``wait_for_subscribers_s`` waits for a subscriber on every image topic and
``settle_s`` then pauses before the first message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Reader

from ..errors import BagError
from ..ros.msg_types import rclpy_type
from .messages import CLOCK, IMAGE

__all__ = ["PlayOptions", "message_class", "play_bag"]


@dataclass(frozen=True)
class PlayOptions:
    """Settings of ``bag play``.

    Args:
        rate: time factor (> 0); 2 plays twice as fast.
        loop: start again at the end until interrupted.
        loops: with ``loop``, stop after this many passes (0 = until interrupted).
        clock: publish ``/clock`` before each message.
        topics: only these topics (None = all).
        remap: topic in the bag -> topic to publish on.
        wait_for_subscribers_s: wait up to this long for a subscriber on every image topic (0 = no wait).
        settle_s: pause after the wait, before the first message.
    """

    rate: float = 1.0
    loop: bool = False
    loops: int = 0
    clock: bool = False
    topics: tuple[str, ...] | None = None
    remap: dict[str, str] = field(default_factory=dict)
    wait_for_subscribers_s: float = 0.0
    settle_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.loops < 0:
            raise ValueError(f"loops must be >= 0, got {self.loops}")
        if self.wait_for_subscribers_s < 0 or self.settle_s < 0:
            raise ValueError("wait_for_subscribers_s and settle_s must be >= 0")


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name``; BagError when it is not installed here."""
    try:
        return rclpy_type(msgtype)
    except (ImportError, AttributeError) as err:
        raise BagError(
            f"cannot publish {msgtype}: its Python message package is not installed ({err})"
        ) from err


def _open(path: Path) -> Reader:
    if not Path(path).exists():
        raise BagError(f"bag {path} does not exist")
    reader = Reader(path)
    try:
        reader.open()
    except Exception as err:  # rosbags raises ReaderError, but also yaml/sqlite/OS errors
        raise BagError(f"cannot open bag {path}: {err}") from err
    return reader


def _messages(reader: Reader, connections: list[Any]) -> Iterator[tuple[Any, int, bytes]]:
    messages = reader.messages(connections=connections)
    while True:
        try:
            item = next(messages, None)
        except Exception as err:
            raise BagError(f"bag {reader.path} is truncated or corrupt: {err}") from err
        if item is None:
            return
        yield item


def play_bag(path: Path | str, options: PlayOptions | None = None) -> int:
    """Publish the bag at ``path``; returns how many messages were published (over all loops)."""
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from ..ros.transport import configure_dds_transport

    opts = options or PlayOptions()
    reader = _open(Path(path))
    configure_dds_transport()  # camera-sized frames cross processes whole (docs/ROBOT.md)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    try:
        connections = [c for c in reader.connections if opts.topics is None or c.topic in opts.topics]
        missing = sorted(set(opts.topics or ()) - {c.topic for c in connections})
        if missing or not connections:
            raise BagError(
                f"bag {path} has no topic(s) {missing or '(none at all)'}; "
                f"its topics: {sorted({c.topic for c in reader.connections})}"
            )
        node = rclpy.create_node("fusion_perception_bag_player", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {
            c.id: node.create_publisher(message_class(c.msgtype), opts.remap.get(c.topic, c.topic), qos)
            for c in connections
        }
        clock_pub = node.create_publisher(message_class(CLOCK), "/clock", qos) if opts.clock else None
        _wait_for_subscribers(node, [pubs[c.id] for c in connections if c.msgtype == IMAGE], opts)
        count, passes = 0, 0
        while True:
            count += _play_once(reader, connections, pubs, clock_pub, opts)
            passes += 1
            if not opts.loop or passes == opts.loops:
                break
        # Reliable large messages are still in flight when the last publish() returns.
        for pub in pubs.values():
            pub.wait_for_all_acked(Duration(seconds=5))
        return count
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.shutdown(context=context)
        reader.close()


def _wait_for_subscribers(node: Any, pubs: list[Any], opts: PlayOptions) -> None:
    deadline = time.monotonic() + opts.wait_for_subscribers_s
    while opts.wait_for_subscribers_s and any(p.get_subscription_count() == 0 for p in pubs):
        if time.monotonic() > deadline:
            lonely = [p.topic_name for p in pubs if p.get_subscription_count() == 0]
            raise BagError(f"no subscriber on {lonely} after {opts.wait_for_subscribers_s:g} s")
        time.sleep(0.05)
    time.sleep(opts.settle_s)


def _play_once(
    reader: Reader, connections: list[Any], pubs: dict[int, Any], clock_pub: Any, opts: PlayOptions
) -> int:
    clock_cls = message_class(CLOCK) if clock_pub is not None else None
    start = time.monotonic()
    first: int | None = None
    count = 0
    for conn, log_ns, raw in _messages(reader, connections):
        first = log_ns if first is None else first
        delay = start + (log_ns - first) / 1e9 / opts.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if clock_pub is not None and clock_cls is not None:
            msg = clock_cls()
            msg.clock.sec, msg.clock.nanosec = divmod(log_ns, 1_000_000_000)
            clock_pub.publish(msg)
        pubs[conn.id].publish(bytes(raw))
        count += 1
    return count
