"""Point the ROS wheels' exported CMake files at this venv's Python and NumPy headers.

The ROS 2 wheels on PyPI were built in a manylinux container; their exported CMake targets (e.g.
``std_msgs::std_msgs__rosidl_generator_py``) still name that container's include folders
(``/opt/python/cp311-cp311/include/python3.11`` and its NumPy). Building an interface package
against them (vision_msgs here) fails to configure until those paths name real folders.

usage: python patch_ros_cmake_paths.py VENV     (idempotent; prints the files it changed)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CONTAINER_NUMPY = re.compile(r"/opt/python/cp\d+-cp\d+/lib/python3\.\d+/site-packages/numpy/_core/include")
CONTAINER_PYTHON = re.compile(r"/opt/python/cp\d+-cp\d+/include/python3\.\d+")


def main(venv: Path) -> int:
    query = "import sysconfig, numpy; print(sysconfig.get_paths()['include']); print(numpy.get_include())"
    py_inc, np_inc = subprocess.check_output([str(venv / "bin" / "python"), "-c", query], text=True).split()
    for path in sorted((venv / "share").rglob("*.cmake")):
        text = path.read_text()
        patched = CONTAINER_PYTHON.sub(py_inc, CONTAINER_NUMPY.sub(np_inc, text))
        if patched != text:
            path.write_text(patched)
            print(f"patched {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(Path(sys.argv[1])))
