"""Cross-process delivery of 640x480 camera pairs under several Fast DDS transport settings.

    .venv/bin/python benchmarks/bench_transport.py                       # every setting, 300 pairs at 30 Hz
    .venv/bin/python benchmarks/bench_transport.py --settings shipped --pairs 900

For each setting a fresh camera process (``python harness/camera.py``: IR mono8
307 kB + visible bgr8 921 kB per pair, sensor-data QoS) and a fresh subscriber process (this script
with ``--role subscriber``, sensor-data QoS, depth 5, a callback that only counts) run with that
setting's environment. No node and no inference: this measures the transport alone. The subscriber
counts frames received per stream, Fast DDS's ``message_lost`` events, and gaps in the publication
sequence numbers (frames that never reached the callback, whatever the reason). Prints a table and
writes JSON (docs/ROBOT.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import write_result

REPO = Path(__file__).resolve().parents[1]
CAMERA = REPO / "harness" / "camera.py"  # the camera stand-in process
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "large_data": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    "large_data_2mb": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA?max_msg_size=2MB&sockets_size=4MB"},
    "shipped": {"FASTRTPS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_large_data.xml")},
}
TRANSPORT_VARS = ("FASTDDS_BUILTIN_TRANSPORTS", "FASTRTPS_DEFAULT_PROFILES_FILE",
                  "FASTDDS_DEFAULT_PROFILES_FILE")


def _windows(arrivals: list[tuple[float, float]], window_s: float) -> list[dict[str, float]]:
    """Frames per second and latency p50 per ``window_s`` of arrival time (decay shows up here)."""
    import numpy as np

    if not arrivals:
        return []
    t0, rows = arrivals[0][0], {}
    for t, ms in arrivals:
        rows.setdefault(int((t - t0) // window_s), []).append(ms)
    return [{"start_s": k * window_s, "fps": len(v) / window_s, "latency_ms_p50": float(np.median(v))}
            for k, v in sorted(rows.items())]


def _subscriber(out: Path, done_file: Path, idle_s: float, qos_name: str, window_s: float) -> int:
    """Count what arrives until the camera wrote ``done_file`` and nothing came for ``idle_s``."""
    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from fusion_perception.ros.delivery import SequenceGaps

    rclpy.init()
    node = rclpy.create_node("transport_probe")
    got = {s: 0 for s in ("ir", "visible")}
    lost = {s: 0 for s in ("ir", "visible")}
    gaps = {s: SequenceGaps() for s in ("ir", "visible")}
    latency_ms: dict[str, list[float]] = {s: [] for s in ("ir", "visible")}
    arrivals: list[tuple[float, float]] = []  # (monotonic s, latency ms) of visible frames
    last_rx = [time.monotonic()]

    def on_image(stream: str, msg: Image, info: dict[str, Any]) -> None:
        got[stream] += 1
        gaps[stream].update(int(info["publication_sequence_number"]))
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latency_ms[stream].append((time.time_ns() - stamp) / 1e6)
        last_rx[0] = time.monotonic()
        if stream == "visible":
            arrivals.append((last_rx[0], latency_ms[stream][-1]))

    def on_lost(stream: str, status: Any) -> None:
        lost[stream] = int(status.total_count)

    qos = qos_profile_sensor_data
    if qos_name == "reliable":
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    for stream in got:
        events = SubscriptionEventCallbacks(message_lost=lambda st, s=stream: on_lost(s, st))
        node.create_subscription(Image, f"{stream}/image", lambda m, i, s=stream: on_image(s, m, i),
                                 qos, event_callbacks=events)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not (done_file.exists() and time.monotonic() - last_rx[0] > idle_s):
            executor.spin_once(timeout_sec=0.1)
    finally:
        import numpy as np

        result = {
            "received": got, "message_lost": lost, "sequence_gaps": {s: g.missing for s, g in gaps.items()},
            "latency_ms_p50": {s: float(np.percentile(v, 50)) if v else None for s, v in latency_ms.items()},
            "latency_ms_p95": {s: float(np.percentile(v, 95)) if v else None for s, v in latency_ms.items()},
            "windows": _windows(arrivals, window_s),
        }
        out.write_text(json.dumps(result) + "\n")
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _measure(name: str, env_extra: dict[str, str], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in TRANSPORT_VARS}
    env.update(env_extra)
    env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(101, 200))
    if not env_extra:  # "default": keep the camera module from loading the shipped profile
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "DEFAULT"
    stamps, result = work / f"{name}.stamps.json", work / f"{name}.result.json"
    role = ["--role", "subscriber", "--out", str(result), "--done-file", str(stamps)]
    sub = subprocess.Popen([sys.executable, __file__, *role, "--qos", args.qos, "--window", str(args.window)],
                           env=env)
    seconds = args.duration or args.pairs / args.rate
    cam = subprocess.run(
        [sys.executable, str(CAMERA), "--ros-args", "-p", f"rate_hz:={args.rate}",
         "-p", f"count:={0 if args.duration else args.pairs}", "-p", f"duration_s:={float(args.duration)}",
         "-p", f"qos:={args.qos}", "-p", "wait_for_subscribers_s:=30.0", "-p", f"stamps_file:={stamps}"],
        env=env, capture_output=True, text=True, timeout=120 + seconds)
    if cam.returncode != 0:
        sub.kill()
        raise RuntimeError(f"camera failed for {name}: {cam.stderr[-2000:]}")
    sub.wait(timeout=60)
    sent = json.loads(stamps.read_text())
    measured = json.loads(result.read_text())
    return {"setting": name, "env": env_extra, "sent": {s: len(v) for s, v in sent.items()}, **measured}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=("orchestrator", "subscriber"), default="orchestrator",
                   help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--done-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--duration", type=float, default=0.0, help="seconds to send instead of --pairs")
    p.add_argument("--window", type=float, default=30.0, help="seconds per row of the rate/latency windows")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--qos", choices=("sensor_data", "reliable"), default="sensor_data")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "transport_cpu.json")
    args = p.parse_args(argv)
    if args.role == "subscriber":
        return _subscriber(args.out, args.done_file, 3.0, args.qos, args.window)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.settings:
            rows.append(_measure(name, SETTINGS[name], args, Path(tmp)))
            r = rows[-1]
            print(f"{name:<16} IR {r['received']['ir']:>4}/{r['sent']['ir']:<4} "
                  f"visible {r['received']['visible']:>4}/{r['sent']['visible']:<4} "
                  f"message_lost {r['message_lost']} gaps {r['sequence_gaps']} "
                  f"visible p50 {r['latency_ms_p50']['visible']} ms", flush=True)
    result = {"pairs": args.pairs, "rate_hz": args.rate, "qos": args.qos, "cpu_count": os.cpu_count(),
              "load_avg": os.getloadavg(), "rows": rows}
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
