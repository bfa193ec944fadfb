"""Write outputs under a temporary name and rename them into place only when complete.

A crash or a bad message half way through a bag must never leave a file that looks finished, so
every output of ``bag make`` / ``bag evaluate`` (bag folder, JSON, report folder) goes through these
helpers: the temporary lives in the destination's folder (so the final rename is atomic on one
file system) and is removed when anything fails.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer

from ..errors import BagError

__all__ = ["STORAGES", "atomic_bag", "atomic_dir", "check_free", "write_json_atomic"]

#: storage name on the command line -> rosbags plugin
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def check_free(path: Path) -> None:
    """Raise BagError when ``path`` exists: outputs are never overwritten silently."""
    if path.exists():
        raise BagError(f"{path} exists already; remove it or choose another output name")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder that becomes ``path`` when the block finishes without error."""
    path = Path(path)
    check_free(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_bag(path: Path, storage: str = "mcap") -> Iterator[Writer]:
    """Yield an open rosbags Writer whose bag appears at ``path`` only once closed successfully.

    The bag is written as ``<tmp>/<name>`` so its inner file names already carry the final name.
    Files the caller puts in ``writer.path`` (a labels sidecar) move with the bag.
    """
    if storage not in STORAGES:
        raise BagError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    path = Path(path)
    check_free(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        writer = Writer(tmp / path.name, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        writer.open()
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()
        check_free(path)
        os.rename(writer.path, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` via a temporary file and an atomic replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
