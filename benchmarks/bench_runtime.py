"""CPU runtime benchmark at 640x480: backend.infer alone, Pipeline (pre + infer + post), whole node over DDS.

    .venv/bin/python benchmarks/bench_runtime.py                 # short run (defaults)
    .venv/bin/python benchmarks/bench_runtime.py --iterations 300 --graph-pairs 600 --rate 30

The graph stage starts the real node (subprocess: its own GIL, as on a robot), publishes real MSRS
pairs at ``--rate`` from this process and collects every output. Latency there is stamp -> last
output received; "node overhead" is that latency minus ``backend.infer`` (so it contains decode,
pairing, pre/post-processing, encoding and both DDS hops), and "excl. DDS" uses the node's own
receipt -> published time (``node_total`` on its ``~/timing`` topic) instead. Pairs the node
skipped because it was still busy (its keep-newest policy) show as ``busy`` drops. Prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import write_result, write_text

REPO = Path(__file__).resolve().parents[1]


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, float)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "mean_ms": float(a.mean()), "fps": float(1e3 / a.mean())}


def time_models(models: dict[str, Path], threads: int, iterations: int, warmup: int) -> dict[str, Any]:
    """``backend.infer`` and ``Pipeline`` timings of each model on the bundled pairs, interleaved.

    Each iteration runs every model once (infer, then the whole pipeline), so a load change on a
    shared machine hits all models alike: compare them by ratio within one call. The CPU time is the
    process CPU time of one pipeline call (all ONNX Runtime threads): what the call costs the
    machine (``pipeline_cpu_p50_ms``), less disturbed by other load than wall time.
    """
    from fusion_perception.assets import load_sample_pairs as sample_pairs
    from fusion_perception.runtime.backend import OnnxRuntimeBackend
    from fusion_perception.runtime.pipeline import Pipeline

    pairs = [(ir, vi) for _, ir, vi in sample_pairs(4)]
    pipelines = {name: Pipeline(OnnxRuntimeBackend(path, threads=threads)) for name, path in models.items()}
    prepared = {name: [p.prepare(ir, vi) for ir, vi in pairs] for name, p in pipelines.items()}
    infer_ms: dict[str, list[float]] = {name: [] for name in models}
    cpu_ms: dict[str, list[float]] = {name: [] for name in models}
    parts: dict[str, dict[str, list[float]]] = {
        name: {k: [] for k in ("preprocess", "inference", "postprocess", "total")} for name in models}
    for i in range(warmup + iterations):
        for name, pipeline in pipelines.items():
            p = prepared[name][i % len(pairs)]
            t0 = time.perf_counter()
            pipeline.backend.infer(p.ir, p.visible)
            t1, c1 = time.perf_counter(), time.process_time()
            result = pipeline(*pairs[i % len(pairs)])
            if i >= warmup:
                cpu_ms[name].append((time.process_time() - c1) * 1e3)
                infer_ms[name].append((t1 - t0) * 1e3)
                for k, v in parts[name].items():
                    v.append(result.timings_ms[k])
    out = {}
    for name, pipeline in pipelines.items():
        out[name] = {"backend_infer": _stats(infer_ms[name]), "pipeline": _stats(parts[name]["total"]),
                     "pipeline_parts_p50_ms": {k: float(np.median(v)) for k, v in parts[name].items()
                                               if k != "total"},
                     "pipeline_cpu_p50_ms": float(np.median(cpu_ms[name])),
                     "input_size": list(pipeline.info.input_size)}
        pipeline.backend.close()
    return out


def bench_backend_and_pipeline(model: Path, threads: int, iterations: int, warmup: int) -> dict[str, Any]:
    """``backend.infer`` and ``Pipeline`` timings of one model (see :func:`time_models`)."""
    return time_models({"model": model}, threads, iterations, warmup)["model"]


RIG_IR, RIG_VISIBLE = (320, 256), (1280, 720)


def bench_rig(model: Path, threads: int, iterations: int, warmup: int) -> dict[str, Any]:
    """``Pipeline`` on a rig of unequal cameras: 320x256 mono16 IR registered by a homography onto a
    1280x720 visible frame (the bundled pairs resized so), beside the same pairs at 640x480.

    Measures what the rig path adds (the IR warp into the network grid, the larger visible frame's
    colour conversion, resize and colour restoration); interleaved like :func:`time_models`.
    """
    import cv2

    from fusion_perception.assets import load_sample_pairs as sample_pairs
    from fusion_perception.preprocessing import PreprocessConfig
    from fusion_perception.runtime.backend import OnnxRuntimeBackend
    from fusion_perception.runtime.pipeline import Pipeline, PipelineConfig

    sx, sy = RIG_VISIBLE[0] / RIG_IR[0], RIG_VISIBLE[1] / RIG_IR[1]
    homography = ((sx, 0.0, (sx - 1) / 2), (0.0, sy, (sy - 1) / 2), (0.0, 0.0, 1.0))
    backend = OnnxRuntimeBackend(model, threads=threads)
    plain = Pipeline(backend)
    rig = Pipeline(backend, PipelineConfig(preprocess=PreprocessConfig(network_size=None,
                                                                       homography=homography)))
    pairs = [(ir, vi) for _, ir, vi in sample_pairs(4)]
    rig_pairs = [(cv2.resize(ir, RIG_IR, interpolation=cv2.INTER_AREA).astype(np.uint16) * 64,
                  cv2.resize(vi, RIG_VISIBLE)) for ir, vi in pairs]
    stages = ("preprocess", "inference", "postprocess", "total")
    ms = {name: {k: [] for k in stages} for name in ("640x480", "rig")}
    for i in range(warmup + iterations):
        for name, pipeline, inputs in (("640x480", plain, pairs), ("rig", rig, rig_pairs)):
            result = pipeline(*inputs[i % len(inputs)])
            if i >= warmup:
                for k, v in ms[name].items():
                    v.append(result.timings_ms[k])
    backend.close()
    out: dict[str, Any] = {
        name: {"pipeline": _stats(parts["total"]),
               "pipeline_parts_p50_ms": {k: float(np.median(parts[k])) for k in stages[:-1]}}
        for name, parts in ms.items()}
    out["rig"].update(ir=f"{RIG_IR[0]}x{RIG_IR[1]} mono16", visible=f"{RIG_VISIBLE[0]}x{RIG_VISIBLE[1]} bgr8")
    return out


def bench_graph(model: Path, threads: int, pairs: int, rate: float, infer_p50_ms: float,
                log: Path) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from fusion_perception.assets import load_sample_pairs as sample_pairs
    from fusion_perception.ros.client import OutputCollector, PairPublisher, spin_until
    from fusion_perception.ros.process import stop_process

    cmd = [sys.executable, "-m", "fusion_perception.ros.node", "--ros-args",
           "-r", "__node:=fusion_perception", "-p", f"model_file_path:={model}", "-p", f"threads:={threads}",
           "-p", "input_qos:=reliable", "-p", "publish_timing:=true", "-p", "diagnostics_period_s:=0.5"]
    node = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    rclpy.init()
    executor = SingleThreadedExecutor()
    pub, col = PairPublisher(reliable=True), OutputCollector(timing=True)
    executor.add_node(pub)
    executor.add_node(col)
    try:
        if not spin_until(executor, lambda: pub.matched() and len(col.label_info) == 2, 60.0):
            raise RuntimeError(f"node did not become active; see {log}")
        samples = [(ir, vi) for _, ir, vi in sample_pairs(4)]
        for ir, vi in samples[:2]:  # warm-up, lockstep
            s = pub.publish_pair(ir, vi)
            spin_until(executor, lambda s=s: col.complete(s, col.KEYS), 10.0)
        keys = (*col.KEYS, "timing")
        stamps, t_start, next_t = [], time.monotonic(), time.monotonic()
        for i in range(pairs):
            spin_until(executor, lambda t=next_t: time.monotonic() >= t, 1.0)
            stamps.append(pub.publish_pair(*samples[i % len(samples)]))
            next_t += 1.0 / rate
        send_s = time.monotonic() - t_start
        spin_until(executor, lambda: all(col.complete(s, keys) for s in stamps), 5.0)
        spin_until(executor, lambda: False, 1.0)
        done = [col.by_stamp[s] for s in stamps if col.complete(s, keys)]
        last_rx = max((max(t for _, t in r.messages.values()) for r in done), default=0)
        e2e = [(max(t for k, (_, t) in r.messages.items() if k != "timing") - r.stamp_ns) / 1e6 for r in done]
        timing = [{kv.key: float(kv.value) for kv in r.messages["timing"][0].status[0].values} for r in done]
        pipe = [t["total"] for t in timing]
        node_total = [t["node_total"] for t in timing]
        diag = col.latest_values()
        span_s = (last_rx - stamps[0]) / 1e9 if done else float("nan")
        return {
            "rate_hz": rate, "pairs_sent": pairs, "pairs_complete": len(done), "send_duration_s": send_s,
            "output_fps": len(done) / span_s if done else 0.0,
            "e2e_latency": _stats(e2e) if e2e else None,
            "node_pipeline": _stats(pipe) if pipe else None,
            "node_overhead_over_infer_p50_ms": float(np.median(e2e)) - infer_p50_ms if e2e else None,
            "node_total": _stats(node_total) if node_total else None,
            "node_queue_wait": _stats([t["queue_wait"] for t in timing]) if timing else None,
            "node_overhead_over_infer_excl_dds_p50_ms":
                float(np.median(node_total)) - infer_p50_ms if e2e else None,
            "dds_and_harness_p50_ms": float(np.median(np.subtract(e2e, node_total))) if e2e else None,
            "drops": {k: int(v) for k, v in diag.items() if k.startswith("dropped_")},
            "node_diagnostics": diag,
        }
    finally:
        executor.shutdown()
        pub.destroy_node()
        col.destroy_node()
        rclpy.try_shutdown()
        stop_process(node)


def main(argv: list[str] | None = None) -> int:
    from fusion_perception.ros.params import default_model_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=default_model_path())
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--iterations", type=int, default=30, help="timed runs of infer and of the pipeline")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--graph-pairs", type=int, default=60, help="pairs sent through the node (0: skip)")
    p.add_argument("--rate", type=float, default=30.0, help="publish rate of the graph stage, Hz")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "runtime_cpu.json")
    args = p.parse_args(argv)
    if not args.model.is_file():
        p.error(f"model {args.model} does not exist (train/export one or pass --model)")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    from fusion_perception.ros.transport import configure_dds_transport

    transport = configure_dds_transport()  # the shipped Fast DDS profile (docs/ROBOT.md)
    result: dict[str, Any] = {
        "model": str(args.model), "threads": args.threads, "cpu_count": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(), "platform": platform.platform(),
        "dds_transport": transport,
    }
    result.update(bench_backend_and_pipeline(args.model, args.threads, args.iterations, args.warmup))
    result["rig"] = bench_rig(args.model, args.threads, args.iterations, args.warmup)
    if args.graph_pairs > 0:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        log = args.json.with_suffix(".node.log")
        result["graph"] = bench_graph(args.model, args.threads, args.graph_pairs, args.rate,
                                      result["backend_infer"]["p50_ms"], log)
        write_text(log, log.read_text(errors="replace"))  # kept next to the JSON: no machine paths
    result["load_avg_at_end"] = os.getloadavg()
    rows = [("backend.infer", result["backend_infer"]), ("Pipeline (pre+infer+post)", result["pipeline"])]
    rig = result["rig"]["rig"]
    rows.append((f"Pipeline, rig {rig['ir']} + {rig['visible']}", rig["pipeline"]))
    graph = result.get("graph")
    if graph and graph["e2e_latency"]:
        e2e = {**graph["e2e_latency"], "fps": graph["output_fps"]}
        rows.append((f"node over DDS @ {graph['rate_hz']:g} Hz", e2e))
    print(f"{'stage':<48}{'p50 ms':>9}{'p95 ms':>9}{'FPS':>8}")
    for name, s in rows:
        print(f"{name:<48}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}{s['fps']:>8.1f}")
    if graph:
        print(f"graph: {graph['pairs_complete']}/{graph['pairs_sent']} pairs complete; "
              f"node overhead over infer p50 {graph['node_overhead_over_infer_p50_ms']:.1f} ms "
              f"(excl. DDS {graph['node_overhead_over_infer_excl_dds_p50_ms']:.1f} ms); "
              f"drops {graph['drops']}")
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
