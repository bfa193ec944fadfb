"""Reading the IR and visible image streams of a ROS 2 bag (sqlite3 or MCAP) with rosbags.

Every failure of the underlying library (missing or corrupt metadata, a truncated file, a message
that does not deserialize) becomes a :class:`BagError` naming the bag, the topic and the message.
Frames come in the bag's log-time order, the order a live node would have received them, and
carry their header stamp, which is what pairing and the outputs use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.rosbag2 import Reader

from ..errors import BagError
from ..pairing import Stream
from .messages import IMAGE, stamp_ns, typestore

__all__ = ["BagImages", "Frame"]


@dataclass(frozen=True)
class Frame:
    """One deserialized image message.

    Attributes:
        stream: ``"ir"`` or ``"visible"``.
        stamp_ns: header stamp (what pairing uses).
        log_ns: time the bag recorded it.
        msg: the rosbags ``sensor_msgs/Image`` object (decode with ``messages.image_from_msg``).
    """

    stream: Stream
    stamp_ns: int
    log_ns: int
    msg: Any


class BagImages:
    """The two image topics of one bag. Use as a context manager.

    Args:
        path: bag folder (or a single ``.mcap``/``.db3`` file inside one).
        ir_topic, visible_topic: the image topics to read.

    Raises:
        BagError: the bag cannot be opened, or a topic is missing or not ``sensor_msgs/msg/Image``.
    """

    def __init__(self, path: Path | str, *, ir_topic: str, visible_topic: str) -> None:
        path = Path(path)
        if path.is_file() and path.suffix in (".mcap", ".db3"):
            path = path.parent
        if not path.exists():
            raise BagError(f"bag {path} does not exist")
        self.path = path
        self._reader = Reader(path)
        try:
            self._reader.open()
        except Exception as err:  # rosbags raises ReaderError, but also yaml/sqlite/OS errors
            raise BagError(f"cannot open bag {path}: {err}") from err
        try:
            self.topics = {c.topic: c.msgtype for c in self._reader.connections}
            self._streams: dict[str, Stream] = {}
            for stream, topic in (("ir", ir_topic), ("visible", visible_topic)):
                msgtype = self.topics.get(topic)
                if msgtype is None:
                    raise BagError(
                        f"bag {path} has no {stream} topic {topic!r}; "
                        f"its topics: {sorted(self.topics) or 'none'}"
                    )
                if msgtype != IMAGE:
                    raise BagError(f"bag {path}: topic {topic!r} carries {msgtype}, expected {IMAGE}")
                self._streams[topic] = stream
            self._connections = [c for c in self._reader.connections if c.topic in self._streams]
            self.counts = {self._streams[c.topic]: c.msgcount for c in self._connections}
        except BaseException:
            self._reader.close()
            raise

    @property
    def message_count(self) -> int:
        """Image messages on the two topics, from the bag's metadata."""
        return sum(self.counts.values())

    def frames(self) -> Iterator[Frame]:
        """Yield the image messages of both topics in log-time order.

        Raises:
            BagError: the bag is truncated or corrupt, or a message does not deserialize; the
                message says after how many messages and on which topic.
        """
        store = typestore()
        seen = 0
        messages = self._reader.messages(connections=self._connections)
        while True:
            try:
                item = next(messages, None)
            except Exception as err:
                raise BagError(
                    f"bag {self.path} is truncated or corrupt after {seen} messages: {err}"
                ) from err
            if item is None:
                return
            conn, log_ns, raw = item
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as err:
                raise BagError(
                    f"bag {self.path}: message {seen} on {conn.topic} "
                    f"does not deserialize as {conn.msgtype}: {err}"
                ) from err
            seen += 1
            yield Frame(self._streams[conn.topic], stamp_ns(msg.header), log_ns, msg)

    def close(self) -> None:
        """Close the bag (idempotent)."""
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> BagImages:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
