"""No machine's absolute path anywhere in the repository: code, tests, configs, docs, results.

A path such as ``/<home>/alice/datasets/msrs`` written into a test or a committed result works on one
machine and breaks (or silently skips) everywhere else. Datasets come from the data root
(``$FUSION_PERCEPTION_DATA``, fusion_perception/data_root.py; the ``data_root`` / ``msrs_root``
fixtures in tests); benchmark results are written with portable paths (benchmarks/_report.py).

Scanned: every file git tracks plus new files not ignored (``git ls-files --cached --others
--exclude-standard``), vendored ``interfaces/`` and ``third_party/`` included; binary files skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Top-level folders that only ever hold one machine's (or one user's) files. System folders that
#: are the same everywhere (/usr, /opt, /proc, /dev, /etc) are not machine paths.
MACHINE_ROOTS = (
    "work", "home", "root", "Users", "tmp", "mnt", "media", "scratch", "private/var", "var/folders",
)
#: An absolute path under one of them. The lookbehind keeps out what is not the start of a path:
#: ``data/tmp/x`` (relative), URLs (``https://host/home/...``), ``${ROOT}/tmp``, ``$(dirname)/tmp``.
MACHINE_PATH = re.compile(
    r"(?<![\w.~$}/)\]-])/(?:" + "|".join(re.escape(r) for r in MACHINE_ROOTS) + r")/[\w.$-]"
    r"|\b[A-Za-z]:\\Users\\"
)
BINARY_SUFFIXES = {
    ".onnx", ".pt", ".png", ".jpg", ".jpeg", ".mcap", ".db3", ".npz", ".npy", ".bin", ".engine",
}


def machine_paths(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line of ``text`` holding an absolute machine path."""
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if MACHINE_PATH.search(line)]


def scan(root: Path, names: list[str]) -> list[str]:
    """``file:line: text`` for each machine path in the text files ``names`` under ``root``."""
    found = []
    for name in names:
        path = root / name
        if path.suffix.lower() in BINARY_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for number, line in machine_paths(data.decode("utf-8", errors="replace")):
            found.append(f"{name}:{number}: {line[:160]}")
    return found


def repository_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout (no .git or no git): the file list comes from git ls-files")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout
    return sorted({name for name in out.decode().split("\0") if name})


def test_no_absolute_machine_path_in_the_repository() -> None:
    names = repository_files()
    assert any(n.startswith("test/") for n in names)
    assert any(n.startswith("benchmarks/results/") for n in names)
    found = scan(REPO, names)
    assert not found, (
        "absolute machine paths in the repository (datasets: use fusion_perception.data_root or the "
        "data_root/msrs_root fixtures; results: benchmarks/_report.portable):\n" + "\n".join(found)
    )


# Written in pieces so that this file does not hold the paths it checks for.
W, H, U, T = "/" + "work", "/" + "home", "/" + "Users", "/" + "tmp"
WIN = "C:" + "\\Users"


@pytest.mark.parametrize(
    "line",
    [
        f'MSRS = Path("{W}/shared/datasets/msrs")',
        f'MSRS = "{W}/shared/datasets/msrs"',
        f'  "model": "{W}/main/fusion_perception/assets/default.onnx",',
        f'"transport": "FASTRTPS_DEFAULT_PROFILES_FILE={W}/main/config/fastdds_large_data.xml (shipped)"',
        f"[INFO] loaded {W}/main/fusion_perception/assets/default.onnx with onnxruntime",
        f"fusion-perception bag make {H}/alice/data/msrs out.bag",
        f'root = "{U}/bob/datasets"',
        f'  "model": "{T}/q/default.onnx",',
        "--calib=" + f"{T}/calib",
        f"export PATH=/usr/bin:{H}/carol/bin",
        f"data = '{WIN}\\dave\\datasets'",
    ],
)
def test_machine_paths_are_found(line: str) -> None:
    assert machine_paths(f"first line\n{line}\n") == [(2, line.strip())]


@pytest.mark.parametrize(
    "line",
    [
        "#!/usr/bin/env bash",
        'TOPICS = ("/diagnostics", "/thermal/image_raw", "/ir/image", "/fused/image")',
        "see https://github.com/home/project and https://example.org/tmp/file",
        "MSRS = dataset_path('msrs')  # ../shared/datasets/msrs",
        "msrs_root: msrs",
        '  "model": "$TMPDIR/q/default.onnx",',
        "fusion_perception/assets/default.onnx",
        "data/tmp/x and build/work/y",
        "${ROOT}/tmp/out and $(dirname x)/work/y and ~/work/z",
        'Path(f"/proc/{pid}/status"), /dev/shm, /opt/python/cp311, /usr/share/x',
        "the ROS_LOG_DIR of a tmp_path",
    ],
)
def test_legitimate_text_is_not_flagged(line: str) -> None:
    assert machine_paths(line) == []


def test_scan_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test_x.py").write_text(f'import x\n\nMSRS = Path("{W}/shared/datasets/msrs")\n')
    (tmp_path / "model.onnx").write_bytes(f"{W}/ignored".encode())
    (tmp_path / "blob").write_bytes(b"\0\1" + f"{W}/ignored".encode())
    found = scan(tmp_path, ["test/test_x.py", "model.onnx", "blob", "deleted.txt"])
    assert found == [f'test/test_x.py:3: MSRS = Path("{W}/shared/datasets/msrs")']
