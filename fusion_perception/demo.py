"""``fusion-perception demo``: the real node on the bundled sample pairs, over real DDS.

Starts the lifecycle node (its console-script entry point, in a subprocess: its own GIL, as on a
robot), a pair publisher and an output collector (this process), publishes the sample pairs at a
camera-like rate (paced to the node, see ``_publish``), and writes what came back:

    DIR/fused/<name>.png        fused image (bgr8 topic)
    DIR/overlay/<name>.png      colour segmentation overlay
    DIR/detections/<name>.png   fused image with boxes, class names and scores drawn
    DIR/summary.json            per-frame latency (stamp -> output received) and node pipeline
                                time, counts, backend, model provenance, final diagnostics
    DIR/node.log                the node's log

Exit status 0 only when every published pair produced every output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["main"]

NAMESPACE = "/fusion_perception_demo"
NODE = "fusion_perception"


def _parse(argv: list[str]) -> argparse.Namespace:
    from .ros.params import default_model_path

    p = argparse.ArgumentParser(prog="fusion-perception demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, required=True, help="folder for images and summary.json")
    p.add_argument("--model", type=Path, default=default_model_path(), help="ONNX model (default: bundled)")
    p.add_argument("--pairs", type=int, default=None, help="pairs to publish (default: every sample once)")
    p.add_argument("--rate", type=float, default=10.0, help="publish rate in Hz (10-30 is camera-like)")
    p.add_argument("--backend", default="onnxruntime", help="node backend parameter")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID (default: $ROS_DOMAIN_ID if set, else a random one in 1..100)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node and outputs")
    args = p.parse_args(argv)
    if args.pairs is not None and args.pairs < 1:
        p.error("--pairs must be >= 1")
    if not 0.5 <= args.rate <= 100.0:
        p.error("--rate must lie in [0.5, 100] Hz")
    return args


def _model_provenance(path: Path) -> dict[str, Any]:
    from .runtime.backends import read_onnx_info

    info = read_onnx_info(path)
    return {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "input_size": list(info.input_size), "det_classes": list(info.det_classes),
            "seg_classes": list(info.seg_classes), "training": info.training}


def _start_node(args: argparse.Namespace, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fusion_perception.ros.node", "--ros-args", "-r", f"__ns:={NAMESPACE}",
           "-r", f"__node:={NODE}", "-p", f"model_file_path:={args.model.resolve()}",
           "-p", f"backend:={args.backend}", "-p", "input_qos:=reliable", "-p", "publish_timing:=true",
           "-p", "diagnostics_period_s:=0.5"]
    return subprocess.Popen(cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)


def _ms(a_ns: int, b_ns: int) -> float:
    return round((a_ns - b_ns) / 1e6, 3)


def _frame_record(name: str, stamp: int, msgs: dict[str, tuple[Any, int]], keys: tuple[str, ...],
                  names: dict[int, str], out: Path) -> dict[str, Any]:
    """Write one pair's images and return its summary entry."""
    from .ros.messages import image_to_array, msg_to_detections
    from .runtime.postprocess import draw_detections

    frame: dict[str, Any] = {"name": name, "stamp_ns": stamp, "missing": [k for k in keys if k not in msgs]}
    if "fused" in msgs:
        fused = image_to_array(msgs["fused"][0])
        cv2.imwrite(str(out / "fused" / f"{name}.png"), fused)
        if "detections" in msgs:
            dets = msgs["detections"][0].detections
            class_names = [names.get(i, str(i)) for i in range(max(names, default=-1) + 1)]
            drawn = draw_detections(fused, msg_to_detections(msgs["detections"][0]), class_names)
            cv2.imwrite(str(out / "detections" / f"{name}.png"), drawn)
            frame["detections"] = [
                {"class": names.get(int(d.results[0].hypothesis.class_id)),
                 "score": round(d.results[0].hypothesis.score, 4),
                 "center_size_px": [round(v, 1) for v in (d.bbox.center.position.x, d.bbox.center.position.y,
                                                          d.bbox.size_x, d.bbox.size_y)]}
                for d in dets
            ]
    if "overlay" in msgs:
        cv2.imwrite(str(out / "overlay" / f"{name}.png"), image_to_array(msgs["overlay"][0]))
    frame["latency_ms"] = {k: _ms(t, stamp) for k, (_, t) in msgs.items() if k != "timing"}
    if "timing" in msgs:
        frame["node_pipeline_ms"] = {kv.key: float(kv.value) for kv in msgs["timing"][0].status[0].values}
    return frame


def _publish(pub: Any, col: Any, executor: Any, samples: list, count: int, rate: float,
             timeout: float) -> list[tuple[str, int]]:
    """Warm up with one uncounted pair, then publish ``count`` pairs; returns (name, stamp) each.

    Pairs go out at ``rate``, but never before the previous pair's outputs arrived: the demo shows
    every sample's outputs even on a busy machine (where a real camera stream would make the node
    drop pairs as busy; that regime is bench_runtime.py's subject).
    """
    from .ros.client import spin_until

    warm = pub.publish_pair(samples[0][1], samples[0][2])
    spin_until(executor, lambda: col.complete(warm, col.KEYS), timeout)  # first inference allocates
    sent: list[tuple[str, int]] = []
    next_t = time.monotonic()
    for i in range(count):
        name, ir, vi = samples[i % len(samples)]
        spin_until(executor, lambda t=next_t: time.monotonic() >= t, 2.0 / rate)
        if sent:
            spin_until(executor, lambda s=sent[-1][1]: col.complete(s, col.KEYS), timeout)
        sent.append((name if count <= len(samples) else f"{i:04d}_{name}", pub.publish_pair(ir, vi)))
        next_t = max(next_t + 1.0 / rate, time.monotonic())
    return sent


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0 when every pair produced every output, 1 otherwise, 2 on bad usage."""
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if not args.model.is_file():
        print(f"demo: model {args.model} does not exist; train and export one, or pass --model",
              file=sys.stderr)
        return 2
    if args.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    # Before any participant exists, and inherited by the node's process: large frames cross
    # processes whole (config/fastdds_large_data.xml, docs/ROBOT.md), unless the user chose a transport.
    from .ros.transport import configure_dds_transport

    transport = configure_dds_transport()
    out = args.output
    for sub in ("fused", "overlay", "detections"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from .assets import load_sample_pairs as sample_pairs
    from .ros.client import OutputCollector, PairPublisher, spin_until
    from .ros.process import stop_process

    samples = list(sample_pairs())
    count = args.pairs or len(samples)
    provenance = _model_provenance(args.model)
    print(f"demo: {count} pairs at {args.rate:g} Hz, model {args.model}, "
          f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}")
    node = _start_node(args, out / "node.log")
    rclpy.init()
    executor = SingleThreadedExecutor()
    pub = PairPublisher("demo_pair_publisher", NAMESPACE, reliable=True)
    col = OutputCollector("demo_output_collector", NAMESPACE, node_name=NODE, timing=True)
    executor.add_node(pub)
    executor.add_node(col)
    try:
        ready = lambda: pub.matched() and len(col.label_info) == 2 and node.poll() is None  # noqa: E731
        if not spin_until(executor, ready, args.timeout):
            print(f"demo: the node did not become active; see {out / 'node.log'}", file=sys.stderr)
            return 1
        sent = _publish(pub, col, executor, samples, count, args.rate, args.timeout)
        keys = (*col.KEYS, "timing")
        spin_until(executor, lambda: all(col.complete(s, keys) for _, s in sent), args.timeout)
        spin_until(executor, lambda: False, 1.0)  # one more diagnostics period
        names = {c.class_id: c.class_name for c in col.label_info["detections"].class_map}
        frames = [_frame_record(name, stamp, col.by_stamp[stamp].messages if stamp in col.by_stamp else {},
                                keys, names, out) for name, stamp in sent]
        missing = sum(bool(f["missing"]) for f in frames)
        diag = col.latest_values()
        latencies = [max(f["latency_ms"].values()) for f in frames if f["latency_ms"]]
        summary = {
            "pairs_sent": len(sent), "pairs_complete": len(sent) - missing, "rate_hz": args.rate,
            "outputs_received": {k: sum(k not in f["missing"] for f in frames) for k in keys},
            "latency_ms_p50": float(np.percentile(latencies, 50)) if latencies else None,
            "latency_ms_p95": float(np.percentile(latencies, 95)) if latencies else None,
            "backend": diag.get("backend"), "backend_state": diag.get("backend_state"),
            "model": provenance, "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]),
            "dds_transport": transport,
            "class_id_convention": "vision_msgs class_id = class index as a string; names from LabelInfo",
            "diagnostics": diag, "frames": frames,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        lat = "n/a" if not latencies else (f"p50 {summary['latency_ms_p50']:.1f} ms "
                                           f"p95 {summary['latency_ms_p95']:.1f} ms")
        print(f"demo: {len(sent) - missing}/{len(sent)} pairs complete, latency {lat}, "
              f"backend {diag.get('backend')}; wrote {out}")
        if missing:
            print(f"demo: {missing} pair(s) lack outputs; see {out / 'summary.json'} and node.log",
                  file=sys.stderr)
        return 1 if missing else 0
    finally:
        executor.shutdown()
        pub.destroy_node()
        col.destroy_node()
        rclpy.try_shutdown()
        stop_process(node)


if __name__ == "__main__":
    sys.exit(main())
