"""Where the datasets live: one environment variable, one documented default.

The datasets (MSRS, RoadScene, TNO, LLVIP samples) are not part of the repository; they sit in one
folder, the *data root*:

* ``$FUSION_PERCEPTION_DATA`` when it is set (and not empty);
* otherwise ``<repository root>/../shared/datasets``, the layout of the development machines and CI,
  computed from this file's location, so it does not depend on the working directory.

Why one place: tests, benchmarks, scripts and the training configs all need the same folder; a path
written into each of them ends up as some machine's absolute path in the repository (and in its
committed results), which breaks on every other machine. Everything that needs a dataset asks here;
the shell scripts read the same variable with the same default.

Stdlib only (no numpy, no torch): the runtime, the benchmarks and the test configuration import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "DEFAULT_DATA_ROOT", "data_root", "dataset_path", "resolve_data_path"]

DATA_ENV = "FUSION_PERCEPTION_DATA"
REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPOSITORY.parent / "shared" / "datasets"


def data_root() -> Path:
    """The data root: ``$FUSION_PERCEPTION_DATA`` if set, else ``<repository>/../shared/datasets``.

    Read on every call (not cached at import), so a test or a script can set the variable late.
    The folder is not required to exist; callers that need it check and say what is missing.
    """
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_DATA_ROOT


def dataset_path(name: str) -> Path:
    """``data_root() / name``, e.g. ``dataset_path("msrs")`` or ``dataset_path("llvip_samples/train")``."""
    return data_root() / name


def resolve_data_path(value: str | Path) -> Path:
    """A dataset path as written in a config or on a command line, made usable from any directory.

    * absolute paths are kept as they are;
    * relative paths that exist from the working directory are kept (so existing usage such as
      ``--set data.msrs_root=../shared/datasets/msrs`` run from the repository keeps working);
    * any other relative path is a name under the data root: ``msrs`` -> ``data_root() / "msrs"``.

    This lets the shipped configs say just ``msrs`` or ``roadscene`` and work from any working
    directory and on any machine where ``$FUSION_PERCEPTION_DATA`` points at the datasets.
    Nothing is checked beyond that: a missing folder is reported by whoever opens it, with the
    resolved path in the message.
    """
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return data_root() / path
