"""Detection labels that travel with a bag: a ``labels/`` folder and a ``labels.json`` index.

Bags carry images, not annotations. ``bag make`` copies each pair's YOLO label file into the bag
folder (``<bag>/labels/<name>.txt``) and writes ``<bag>/labels.json``, which maps the visible
frame's header stamp to that file. ``bag evaluate`` looks labels up by the stamp of the visible
frame of each pair, exactly the stamp the outputs carry. ROS tools ignore the extra files, and a
recorded bag can be given labels later by writing the same index by hand (see docs/BAGS.md).

Index format (version 1)::

    {"version": 1, "format": "yolo", "classes": ["person", "bicycle", "car"],
     "frames": [{"stamp_ns": 1700000000000000000, "name": "00001D",
                 "file": "labels/00001D.txt", "width": 640, "height": 480}, ...]}

``format: yolo`` = one line per box ``class cx cy w h``, normalised by width and height; an empty
file means "no objects"; a frame absent from the index is not annotated and is left out of mAP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError

__all__ = ["INDEX_NAME", "LabelEntry", "LabelIndex", "read_class_names"]

INDEX_NAME = "labels.json"
LABELS_DIR = "labels"
FORMAT_VERSION = 1


def read_class_names(path: Path) -> tuple[str, ...]:
    """Class names from a ``classes`` file: one per line, ``name`` or ``id name`` (ids in order)."""
    names: list[str] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2 and parts[0].isdigit():
            if int(parts[0]) != len(names):
                raise DatasetError(
                    f"{path}:{number}: class id {parts[0]} out of order (expected {len(names)})"
                )
            parts = parts[1:]
        names.append(" ".join(parts))
    return tuple(names)


@dataclass(frozen=True)
class LabelEntry:
    """Where the boxes of one visible frame are."""

    stamp_ns: int
    name: str
    file: Path
    width: int
    height: int

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(boxes Nx4 xyxy pixels, classes N) of this frame; DatasetError names an unreadable file."""
        from ..metrics.detection import load_yolo_labels

        if not self.file.is_file():
            raise DatasetError(f"label file {self.file} (frame {self.name}) does not exist")
        try:
            return load_yolo_labels(self.file, (self.width, self.height))
        except DatasetError:
            raise
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise DatasetError(f"label file {self.file} (frame {self.name}) is unreadable: {err}") from err


@dataclass(frozen=True)
class LabelIndex:
    """Labels of a bag, by visible stamp."""

    classes: tuple[str, ...]
    entries: dict[int, LabelEntry]

    @classmethod
    def load(cls, path: Path) -> LabelIndex:
        """Read an index written by :meth:`write` (relative files resolve against its folder)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != FORMAT_VERSION or raw.get("format") != "yolo":
                raise DatasetError(
                    f"{path}: expected a version {FORMAT_VERSION} 'yolo' label index, "
                    f"got version {raw.get('version')!r} format {raw.get('format')!r}"
                )
            entries = {
                int(f["stamp_ns"]): LabelEntry(
                    int(f["stamp_ns"]),
                    str(f["name"]),
                    path.parent / f["file"],
                    int(f["width"]),
                    int(f["height"]),
                )
                for f in raw["frames"]
            }
            return cls(tuple(str(c) for c in raw["classes"]), entries)
        except DatasetError:
            raise
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
        ) as err:
            raise DatasetError(f"label index {path} is unreadable or malformed: {err!r}") from err

    def write(self, path: Path) -> None:
        """Write the index; entries' files are stored relative to ``path``'s folder."""
        frames = [
            {
                "stamp_ns": e.stamp_ns,
                "name": e.name,
                "file": e.file.relative_to(path.parent).as_posix(),
                "width": e.width,
                "height": e.height,
            }
            for e in sorted(self.entries.values(), key=lambda e: e.stamp_ns)
        ]
        doc = {"version": FORMAT_VERSION, "format": "yolo", "classes": list(self.classes), "frames": frames}
        Path(path).write_text(json.dumps(doc, indent=1) + "\n")
