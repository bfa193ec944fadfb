"""Can the node keep up with a 30 Hz camera pair? Outputs per second, with every pair accounted for.

    .venv/bin/python benchmarks/bench_node_rate.py                    # default matrix, 60 s per setting
    .venv/bin/python benchmarks/bench_node_rate.py --duration 10 --settings fp32,int8

Three processes per setting, as on a robot: the node (the shipped ``config/fusion_perception.yaml``
plus the setting's overrides), a camera stand-in (``python harness/camera.py``:
640x480 IR mono8 + visible bgr8 at ``--rate``, sensor-data QoS as cameras publish) and this script,
which subscribes to the outputs (``--consume``) and to ``/diagnostics``. A short slow warm-up (the
first inferences allocate) precedes the measured stream; the node's counters are read from
``/diagnostics`` at rest before and after it, so their difference is the measured stream alone.

Accounting (:func:`account`; column ``ok``):

* pairs: sent = outputs + pairs the node dropped (``dropped_pair_*``; ``busy`` = inference was still
  running and the node kept the newer pair) + pairs never formed (sent - paired);
* frames, per stream: sent = paired + dropped by the node (``dropped_<stream>_*``: unpaired, out of
  order, overflow, ...) + uncounted, where every uncounted frame must be one that never reached the
  node's callback (sent - received, known here from the camera's stamps: lost in transport or
  overwritten in a full DDS queue).

Latency: header stamp -> the last subscribed output received here (p50/p95), and the node's own
stamp -> published (``latency_ms_*`` in /diagnostics). CPU: CPU seconds each process used during
the measured run per second of stream (the camera's includes its start-up). The machine's other
load counts against the node: run on a quiet machine, compare settings within one run. Prints a
table and writes JSON (node and camera logs go to a temporary folder named on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _report import write_result

REPO = Path(__file__).resolve().parents[1]
CAMERA = REPO / "harness" / "camera.py"  # the camera stand-in process
CONFIG = REPO / "config" / "fusion_perception.yaml"
#: name -> node parameter overrides. ``precision: int8`` loads ``<model>_int8.onnx`` beside the model,
#: ``network_size: 384x288`` its ``<model>_384x288[_int8].onnx`` sibling (bundled for the default model).
SETTINGS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "fp32_1thread": {"threads": 1},
    "fp32_no_overlay": {"publish_overlay": False},
    "fp32_publish_thread": {"publish_thread": True},
    "int8": {"precision": "int8"},
    "int8_1thread": {"precision": "int8", "threads": 1},
    "int8_no_overlay": {"precision": "int8", "publish_overlay": False},
    "int8_labels_detections": {"precision": "int8", "publish_overlay": False, "publish_fused": False},
    "int8_publish_thread": {"precision": "int8", "publish_thread": True},
    "int8_1thread_publish_thread": {"precision": "int8", "threads": 1, "publish_thread": True},
    "fp32_384x288": {"network_size": "384x288"},
    "int8_384x288": {"network_size": "384x288", "precision": "int8"},
    "int8_384x288_no_overlay": {"network_size": "384x288", "precision": "int8", "publish_overlay": False},
}
DEFAULT_SETTINGS = ("fp32", "int8", "int8_no_overlay", "fp32_384x288", "int8_384x288")
CONSUME = {"all": ("fused", "labels", "overlay", "detections"), "detections": ("detections",)}


def _ros_args(params: dict[str, Any]) -> list[str]:
    out = []
    for key, value in params.items():
        out += ["-p", f"{key}:={str(value).lower() if isinstance(value, bool) else value}"]
    return out


def _cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds: of live process ``pid`` (/proc), else of this process."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished (waited-for) children: the camera runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _counters(values: dict[str, str]) -> dict[str, int]:
    """The node's cumulative counters from one /diagnostics status (drops by reason included)."""
    keys = ("received_ir", "received_visible", "outputs", "outputs_degraded", "paired")
    out = {k: int(values.get(k, 0)) for k in keys}
    out.update({k: int(v) for k, v in values.items() if k.startswith("dropped_")})
    return out


def _by_reason(delta: dict[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in sorted(delta.items()) if k.startswith(prefix) and v}


def account(sent: dict[str, list[int]], before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    """Where every pair and frame of the measured stream went, from the node's counter differences.

    ``accounted`` is True when the pairs close exactly (each formed pair is an output or a counted
    pair drop) and, per stream, every frame the node's callback received is paired or counted (the
    node may or may not count frames that never reached it; this script knows them from the stamps).
    Outputs computed from one camera alone (``outputs_degraded``) should not occur in a steady
    stream, so any of them also fails the check.
    """
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    paired, outputs, degraded = delta["paired"], delta["outputs"], delta.get("outputs_degraded", 0)
    pair_drops = _by_reason(delta, "dropped_pair_")
    frames: dict[str, Any] = {}
    for stream in ("ir", "visible"):
        dropped = _by_reason(delta, f"dropped_{stream}_")
        n_sent, received = len(sent[stream]), delta[f"received_{stream}"]
        frames[stream] = {
            "sent": n_sent, "received": received, "never_reached_callback": n_sent - received,
            "paired": paired, "dropped_by_node": dropped,
            "uncounted": n_sent - paired - sum(dropped.values()),
        }
    pairs_sent = min(len(sent["ir"]), len(sent["visible"]))
    pairs_close = paired == outputs - degraded + sum(pair_drops.values())
    frames_close = all(0 <= f["uncounted"] <= f["never_reached_callback"] for f in frames.values())
    return {
        "pairs_sent": pairs_sent, "outputs": outputs, "outputs_degraded": degraded, "pair_drops": pair_drops,
        "pairs_not_formed": pairs_sent - paired, "frames": frames,
        "accounted": pairs_close and frames_close and degraded == 0,
    }


def _node_breakdown(timing_msgs: list[Any]) -> dict[str, float]:
    """p50 ms inside the node from its ``~/timing`` messages: pipeline stages, queue wait, and the
    rest of receipt -> published (``publish``: converting and publishing the outputs)."""
    rows = [{kv.key: float(kv.value) for kv in m.status[0].values} for m in timing_msgs]
    for row in rows:
        row["publish"] = row["node_total"] - row["queue_wait"] - row["total"]
    return {k: float(np.median([row[k] for row in rows])) for k in rows[0]} if rows else {}


class _Graph:
    """This process's side: an output collector and the node's /diagnostics, on one executor."""

    def __init__(self, keys: tuple[str, ...], timing: bool) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from fusion_perception.ros.client import OutputCollector

        rclpy.init()
        self.executor = SingleThreadedExecutor()
        self.collector = OutputCollector(keys=keys, timing=timing)
        self.executor.add_node(self.collector)

    def spin(self, done: Callable[[], bool], timeout_s: float) -> bool:
        from fusion_perception.ros.client import spin_until

        return spin_until(self.executor, done, timeout_s)

    def fresh_status(self, timeout_s: float = 5.0) -> dict[str, str]:
        """A node status computed after this call: the second to arrive (the first may be older)."""
        col = self.collector
        seen = len(col.diagnostics)
        if not self.spin(lambda: len(col.diagnostics) >= seen + 2, timeout_s):
            raise RuntimeError("the node published no /diagnostics status in time")
        return col.latest_values()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.collector.destroy_node()
        rclpy.try_shutdown()


def _bench_overrides(timing: bool) -> dict[str, Any]:
    """Node parameters every setting gets: fast diagnostics, and staleness limits longer than the
    pause between warm-up and stream (a camera process takes seconds to start), so the single-camera
    mode does not take the stream's first frames alone: what is measured is the steady stream."""
    from fusion_perception.ros.params import SPECS

    out: dict[str, Any] = {"diagnostics_period_s": 0.5, **({"publish_timing": True} if timing else {})}
    out.update({name: 30.0 for name in ("stale_input_s", "stale_error_s") if name in SPECS})
    return out


def _camera(log: Any, **params: Any) -> subprocess.Popen:
    cmd = [sys.executable, str(CAMERA), "--ros-args", *_ros_args(params)]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _stream(graph: _Graph, node_pid: int, args: argparse.Namespace, log: Any, stamps: Path) -> dict[str, Any]:
    """Warm up, then send the measured stream; returns counters before/after, CPU and stamps sent."""
    warm = _camera(log, rate_hz=args.warmup_rate, count=args.warmup_pairs, wait_for_subscribers_s=30.0,
                   settle_s=0.5, linger_s=0.5)
    graph.spin(lambda: warm.poll() is not None, 60.0)
    graph.spin(lambda: False, 1.0)  # the last warm-up pair finishes
    before = _counters(graph.fresh_status())
    cpu0 = {"node": _cpu_s(node_pid), "camera": _children_cpu_s(), "this": _cpu_s()}
    cam = _camera(log, rate_hz=args.rate, duration_s=args.duration, qos="sensor_data",
                  wait_for_subscribers_s=30.0, settle_s=0.5, linger_s=1.0, stamps_file=str(stamps))
    graph.spin(lambda: cam.poll() is not None, args.duration + 60.0)
    graph.spin(lambda: False, args.drain)
    cpu1 = {"node": _cpu_s(node_pid), "camera": _children_cpu_s(), "this": _cpu_s()}
    after = _counters(graph.fresh_status())
    if cam.returncode != 0 or not stamps.is_file():
        raise RuntimeError(f"the camera failed (exit {cam.returncode}); see {log.name}")
    return {"before": before, "after": after, "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0},
            "sent": json.loads(stamps.read_text())}


def _report(name: str, run: dict[str, Any], graph: _Graph, rate: float) -> dict[str, Any]:
    """One setting's row: rates, accounting, latency, CPU, the node's own figures."""
    col, sent = graph.collector, run["sent"]
    stamps = set(sent["visible"])
    span_s = (max(stamps) - min(stamps)) / 1e9 + 1.0 / rate
    ours = [r for s, r in col.by_stamp.items() if s in stamps]
    # detections go out last, after the enabled images, so their arrival completes an output
    done = [r for r in ours if "detections" in r.messages]
    e2e = [(max(t for k, (_, t) in r.messages.items() if k != "timing") - r.stamp_ns) / 1e6 for r in done]
    books = account(sent, run["before"], run["after"])
    diag = col.latest_values()
    inside = _node_breakdown([r.messages["timing"][0] for r in ours if "timing" in r.messages])
    return {
        "setting": name, "overrides": SETTINGS[name], "stream_s": span_s,
        "input_pairs_per_s": books["pairs_sent"] / span_s, "outputs_per_s": books["outputs"] / span_s,
        "outputs_received_here": len(done), **books,
        "e2e_latency_ms": {"p50": float(np.percentile(e2e, 50)), "p95": float(np.percentile(e2e, 95))}
        if e2e else None,
        "node_latency_ms": {q: float(diag[f"latency_ms_{q}"]) for q in ("p50", "p95")},
        "node_pipeline_ms": {q: float(diag[f"pipeline_ms_{q}"]) for q in ("p50", "p95")},
        "cpu_s_per_stream_s": {k: v / span_s for k, v in run["cpu"].items()},
        "model": diag.get("model"), "backend": diag.get("backend"),
        **({"inside_node_p50_ms": inside} if inside else {}),
    }


def run_setting(name: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """One fresh node process with the setting's parameters: warm-up, measured stream, report."""
    from fusion_perception.ros.process import stop_process

    params = {"model_file_path": args.model, **_bench_overrides(args.timing), **SETTINGS[name]}
    cmd = [sys.executable, "-m", "fusion_perception.ros.node", "--ros-args", "--params-file", str(CONFIG),
           "-r", "__node:=fusion_perception", *_ros_args(params)]
    with (log_dir / f"{name}.node.log").open("wb") as node_log, \
            (log_dir / f"{name}.camera.log").open("wb") as camera_log:
        node = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT)
        graph = _Graph(CONSUME[args.consume], args.timing)
        col = graph.collector
        try:
            if not graph.spin(lambda: len(col.label_info) == 2
                              and col.latest_values().get("backend_state") == "active", 60.0):
                raise RuntimeError(f"setting {name}: the node did not become active; see {node_log.name}")
            run = _stream(graph, node.pid, args, camera_log, log_dir / f"{name}.stamps.json")
            return _report(name, run, graph, args.rate)
        finally:
            graph.close()
            stop_process(node)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'setting':<28}{'out/s':>7}{'sent':>6}{'outputs':>8}{'busy':>6}{'other':>6}{'unformed':>9}"
          f"{'lost ir/vis':>12}{'e2e p50':>9}{'p95':>7}{'node cpu':>9}{'ok':>4}")
    for r in rows:
        busy = r["pair_drops"].get("busy", 0)
        lost = "/".join(str(r["frames"][k]["never_reached_callback"]) for k in ("ir", "visible"))
        lat = r["e2e_latency_ms"] or {"p50": float("nan"), "p95": float("nan")}
        print(f"{r['setting']:<28}{r['outputs_per_s']:>7.1f}{r['pairs_sent']:>6}{r['outputs']:>8}{busy:>6}"
              f"{sum(r['pair_drops'].values()) - busy:>6}{r['pairs_not_formed']:>9}{lost:>12}"
              f"{lat['p50']:>9.1f}{lat['p95']:>7.1f}{r['cpu_s_per_stream_s']['node']:>9.2f}"
              f"{'yes' if r['accounted'] else 'NO':>4}")


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per setting over its runs: median and min-max of outputs/s and node CPU, all runs accounted."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == name]
        rates = [r["outputs_per_s"] for r in mine]
        cpu = [r["cpu_s_per_stream_s"]["node"] for r in mine]
        out[name] = {"runs": len(mine), "outputs_per_s_median": float(np.median(rates)),
                     "outputs_per_s_min": min(rates), "outputs_per_s_max": max(rates),
                     "node_cpu_median": float(np.median(cpu)),
                     "all_accounted": all(r["accounted"] for r in mine)}
    return out


def print_summary(summary: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'setting':<28}{'runs':>5}{'out/s median':>14}{'min-max':>14}{'node cpu':>9}{'ok':>4}")
    for name, s in summary.items():
        spread = f"{s['outputs_per_s_min']:.1f}-{s['outputs_per_s_max']:.1f}"
        print(f"{name:<28}{s['runs']:>5}{s['outputs_per_s_median']:>14.1f}{spread:>14}"
              f"{s['node_cpu_median']:>9.2f}{'yes' if s['all_accounted'] else 'NO':>4}")


def _parser() -> argparse.ArgumentParser:
    from fusion_perception.ros.params import default_model_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=default_model_path(),
                   help="FP32 ONNX; int8 settings load <stem>_int8.onnx beside it")
    p.add_argument("--settings", default=",".join(DEFAULT_SETTINGS),
                   help=f"comma-separated names from: {', '.join(SETTINGS)}")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of camera stream per setting")
    p.add_argument("--rate", type=float, default=30.0, help="camera pairs per second")
    p.add_argument("--consume", choices=CONSUME, default="all",
                   help="outputs this process subscribes to: all (a local consumer of every published "
                   "topic) or detections (counting only)")
    p.add_argument("--timing", action="store_true",
                   help="also run the node with publish_timing and report where its time goes")
    p.add_argument("--warmup-pairs", type=int, default=8)
    p.add_argument("--warmup-rate", type=float, default=4.0)
    p.add_argument("--drain", type=float, default=3.0, help="seconds to collect after the last pair")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per setting (interleaved: all settings once, then again); the summary gives "
                   "the median and the min-max of outputs/s over them")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "node_rate_cpu.json")
    return p


def main(argv: list[str] | None = None) -> int:
    from fusion_perception.ros.transport import configure_dds_transport

    p = _parser()
    args = p.parse_args(argv)
    names = [n for n in args.settings.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"unknown settings {unknown}; known: {list(SETTINGS)}")
    if not args.model.is_file():
        p.error(f"model {args.model} does not exist")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    transport = configure_dds_transport()  # before rclpy starts; the node and the camera inherit it
    result: dict[str, Any] = {
        "model": str(args.model), "rate_hz": args.rate, "duration_s": args.duration, "consume": args.consume,
        "transport": transport, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "load_avg_at_start": os.getloadavg(), "settings": [],
    }
    log_dir = Path(tempfile.mkdtemp(prefix="node_rate_"))
    print(f"logs in {log_dir}", file=sys.stderr)
    for repeat in range(args.repeats):
        for name in names:
            print(f"{name} (run {repeat + 1}/{args.repeats}): {SETTINGS[name] or 'node defaults'} ...",
                  file=sys.stderr)
            result["settings"].append({**run_setting(name, args, log_dir), "run": repeat + 1})
    result["load_avg_at_end"] = os.getloadavg()
    print_table(result["settings"])
    result["summary"] = summarise(result["settings"])
    print_summary(result["summary"])
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
