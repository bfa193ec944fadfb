"""Which Fast DDS transport the node's process uses, decided once before ``rclpy.init``.

Why this exists (measured; docs/ROBOT.md): with Fast DDS's default transports, and even with
``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``, a 640x480 bgr8 frame (921 kB) is cut into 64 kB
fragments; between processes on a loaded host whole best-effort frames were lost (most visible
frames of a 30 Hz stream). The shipped profile ``config/fastdds_large_data.xml`` keeps LARGE_DATA
(shared memory on one host, TCP between hosts, UDP only for discovery) and raises the largest
unfragmented message above the largest frame the node accepts, so a frame travels as one
shared-memory buffer.

Fast DDS reads its profile from the environment when the first participant is created, so the
console script, the demo, the camera stand-in and the benchmarks call
:func:`configure_dds_transport` before ``rclpy.init``; the launch file sets the same variable for
every process it starts. A profile or builtin-transport choice the user made is kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

__all__ = [
    "BUILTIN_VAR",
    "PROFILE_NAME",
    "PROFILE_VARS",
    "XML_QOS_VAR",
    "configure_dds_transport",
    "shipped_profile",
    "use_profile_reader_memory",
]

PROFILE_NAME = "fastdds_large_data.xml"
# Fast DDS 2.x (Jazzy) reads FASTRTPS_DEFAULT_PROFILES_FILE; 3.x (Kilted and later) FASTDDS_*.
PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
BUILTIN_VAR = "FASTDDS_BUILTIN_TRANSPORTS"
# rmw_fastrtps takes the history memory policy and publication mode from the profile only with this set
# (the node's own process sets it: see use_profile_reader_memory)
XML_QOS_VAR = "RMW_FASTRTPS_USE_QOS_FROM_XML"


def _candidates() -> list[Path]:
    """Where the profile is installed: colcon/pip share folder first, then a source checkout."""
    found = []
    try:
        from ament_index_python.packages import get_package_share_directory

        found.append(Path(get_package_share_directory("fusion_perception")) / "config" / PROFILE_NAME)
    except (ImportError, LookupError, OSError):  # no ament index here, or the package is not in it
        pass
    found.append(Path(sys.prefix) / "share" / "fusion_perception" / "config" / PROFILE_NAME)
    found.append(Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME)
    return found


def shipped_profile() -> Path:
    """The shipped Fast DDS profile.

    Raises:
        FileNotFoundError: the package was installed without its config folder; the message lists
            where it looked.
    """
    candidates = _candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"Fast DDS profile {PROFILE_NAME} not found in {[str(p) for p in candidates]}")


def configure_dds_transport(environ: MutableMapping[str, str] | None = None) -> str:
    """Point Fast DDS at the shipped profile unless the user chose a transport; returns what is used.

    Kept as the user set them: a profiles file in either variable of :data:`PROFILE_VARS`, or
    ``FASTDDS_BUILTIN_TRANSPORTS``. Otherwise both profile variables are set to
    :func:`shipped_profile`. Call before ``rclpy.init`` (Fast DDS reads them once per process).
    """
    env = os.environ if environ is None else environ
    for var in PROFILE_VARS:
        if env.get(var):
            return f"{var}={env[var]} (from the environment)"
    if env.get(BUILTIN_VAR):
        return f"{BUILTIN_VAR}={env[BUILTIN_VAR]} (from the environment)"
    profile = str(shipped_profile())
    for var in PROFILE_VARS:
        env[var] = profile
    return f"{PROFILE_VARS[0]}={profile} (shipped profile)"


def use_profile_reader_memory(environ: MutableMapping[str, str] | None = None) -> bool:
    """In the node's process, let rmw_fastrtps take the reader memory policy from the shipped profile.

    The profile gives readers ``DYNAMIC`` history memory, so a dropped oversized frame leaves no
    buffer behind (docs/ROBOT.md section 5), but rmw_fastrtps reads it only with
    :data:`XML_QOS_VAR` = 1. Only the node's process sets it, and only when the shipped profile is
    the one in use and the variable is unset: measured with Jazzy's rmw_fastrtps, service calls
    between two processes that *both* have it set go unanswered (lifecycle ``get_state`` timed
    out), while either side alone works. Returns whether it set the variable.
    """
    env = os.environ if environ is None else environ
    profile = str(shipped_profile())
    if env.get(XML_QOS_VAR) is not None or all(env.get(var) != profile for var in PROFILE_VARS):
        return False
    env[XML_QOS_VAR] = "1"
    return True
