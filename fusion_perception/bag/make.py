"""``bag make``: an image-pair folder becomes a ROS 2 bag, as if two cameras had recorded it.

Input: a folder with ``ir/`` and ``vi/`` (MSRS layout; ``infrared``/``visible``/``vis`` also
accepted) whose files pair by stem, and optionally YOLO labels (``labels_det_fusion/``,
``labels_det_vi/`` or ``labels/``) with a ``classes_det.txt``/``classes.txt``.

Output: a bag (MCAP by default) with ``sensor_msgs/Image`` + ``sensor_msgs/CameraInfo`` per camera,
pair i stamped ``start + i / rate``; the IR stamp is offset by a uniform random jitter in
``[-jitter, +jitter]`` to imitate unsynchronised cameras. Labels travel inside the bag folder
(see :mod:`.labels`). The bag appears only when complete.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError
from ..image_pairs import find_pairs, read_pair
from ..preprocessing import to_gray
from ..runtime.model_info import ModelInfo
from .atomic import atomic_bag
from .labels import INDEX_NAME, LABELS_DIR, LabelEntry, LabelIndex, read_class_names
from .messages import CAMERA_INFO, IMAGE, camera_info_msg, header_msg, image_msg, typestore

__all__ = ["MakeOptions", "MakeSummary", "make_bag"]

LABEL_DIRS = ("labels_det_fusion", "labels_det_vi", "labels")
CLASS_FILES = ("classes_det.txt", "classes.txt")


@dataclass(frozen=True)
class MakeOptions:
    """Settings of ``bag make``.

    Args:
        storage: ``"mcap"`` or ``"sqlite3"``.
        rate_hz: frame rate of the stamps (> 0).
        jitter_ms: largest |IR stamp - visible stamp| offset, milliseconds (>= 0).
        ir_16bit: store IR as mono16 (8-bit counts x 257, the full 16-bit range) to exercise the
            radiometric path; 16-bit source files are stored as they are either way.
        visible_encoding: ``"bgr8"`` or ``"rgb8"`` for colour visible frames.
        limit: at most this many pairs (sorted by name), None for all.
        names: only these stems (e.g. a split file's lines), None for all.
        labels_dir: label folder (name inside the dataset or a path); None picks the first of
            LABEL_DIRS that exists; ``""`` writes no labels.
        ir_topic, visible_topic: image topics; camera info goes to the sibling ``camera_info``.
        ir_frame_id, visible_frame_id: header frame ids.
        start_ns: stamp of the first visible frame.
        seed: seed of the jitter.
    """

    storage: str = "mcap"
    rate_hz: float = 30.0
    jitter_ms: float = 0.0
    ir_16bit: bool = False
    visible_encoding: str = "bgr8"
    limit: int | None = None
    names: tuple[str, ...] | None = None
    labels_dir: str | None = None
    ir_topic: str = "/ir/image"
    visible_topic: str = "/visible/image"
    ir_frame_id: str = "ir_camera"
    visible_frame_id: str = "visible_camera"
    start_ns: int = 1_700_000_000_000_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if self.jitter_ms < 0:
            raise ValueError(f"jitter_ms must be >= 0, got {self.jitter_ms}")
        if self.visible_encoding not in ("bgr8", "rgb8"):
            raise ValueError(f"visible_encoding must be bgr8 or rgb8, got {self.visible_encoding!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


@dataclass
class MakeSummary:
    """What was written."""

    bag: Path
    pairs: int
    labelled: int
    topics: dict[str, str] = field(default_factory=dict)


def _labels_source(root: Path, choice: str | None) -> tuple[Path | None, tuple[str, ...]]:
    """Label folder and class names, or (None, ()) when the dataset has no labels."""
    if choice == "":
        return None, ()
    if choice is None:
        folder = next((root / n for n in LABEL_DIRS if (root / n).is_dir()), None)
    else:
        folder = Path(choice) if Path(choice).is_absolute() else root / choice
        if not folder.is_dir():
            raise DatasetError(f"label folder {folder} does not exist")
    if folder is None:
        return None, ()
    class_file = next((root / n for n in CLASS_FILES if (root / n).is_file()), None)
    classes = read_class_names(class_file) if class_file else ModelInfo().det_classes
    return folder, classes


def make_bag(dataset: Path, out: Path, options: MakeOptions | None = None) -> MakeSummary:
    """Write the bag ``out`` from the pairs in ``dataset``; see the module docstring."""
    opts = options or MakeOptions()
    dataset = Path(dataset)
    pairs = find_pairs(dataset, opts.names)[: opts.limit]
    label_dir, classes = _labels_source(dataset, opts.labels_dir)
    store = typestore()
    rng = np.random.default_rng(opts.seed)
    jitter_ns = round(opts.jitter_ms * 1e6)
    entries: dict[int, LabelEntry] = {}
    with atomic_bag(out, opts.storage) as writer:
        conns = {}
        for cam, topic in (("ir", opts.ir_topic), ("visible", opts.visible_topic)):
            info_topic = topic.rsplit("/", 1)[0] + "/camera_info"
            conns[cam] = (
                writer.add_connection(topic, IMAGE, typestore=store),
                writer.add_connection(info_topic, CAMERA_INFO, typestore=store),
            )
        for i, (stem, ir_path, vis_path) in enumerate(pairs):
            ir, vis = read_pair(ir_path, vis_path)
            ir = to_gray(ir)
            if ir.dtype == np.uint8 and opts.ir_16bit:
                ir = ir.astype(np.uint16) * np.uint16(257)
            if vis.ndim == 3 and vis.shape[2] == 4:
                vis = cv2.cvtColor(vis, cv2.COLOR_BGRA2BGR)
            vis_stamp = opts.start_ns + round(i * 1e9 / opts.rate_hz)
            ir_stamp = vis_stamp + (int(rng.integers(-jitter_ns, jitter_ns + 1)) if jitter_ns else 0)
            frames = [
                ("ir", ir_stamp, ir, None, opts.ir_frame_id),
                (
                    "visible",
                    vis_stamp,
                    vis,
                    opts.visible_encoding if vis.ndim == 3 else None,
                    opts.visible_frame_id,
                ),
            ]
            for cam, stamp, image, encoding, frame_id in sorted(frames, key=lambda f: f[1]):
                header = header_msg(stamp, frame_id)
                image_conn, info_conn = conns[cam]
                writer.write(
                    image_conn, stamp, store.serialize_cdr(image_msg(image, header, encoding), IMAGE)
                )
                info = camera_info_msg(image.shape[1], image.shape[0], header)
                writer.write(info_conn, stamp, store.serialize_cdr(info, CAMERA_INFO))
            label_file = label_dir / f"{stem}.txt" if label_dir else None
            if label_file is not None and label_file.is_file():
                height, width = vis.shape[:2]
                LabelEntry(
                    vis_stamp, stem, label_file, width, height
                ).load()  # fail now on an unreadable file
                copy = writer.path / LABELS_DIR / label_file.name
                copy.parent.mkdir(exist_ok=True)
                shutil.copyfile(label_file, copy)
                entries[vis_stamp] = LabelEntry(vis_stamp, stem, copy, width, height)
        if entries:
            LabelIndex(classes, entries).write(writer.path / INDEX_NAME)
    topics = {c.topic: c.msgtype for pair in conns.values() for c in pair}
    return MakeSummary(bag=Path(out), pairs=len(pairs), labelled=len(entries), topics=topics)
