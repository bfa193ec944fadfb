"""Bag reading + pairing throughput (no inference) and the cost of the fusion metrics per pair.

Builds an MCAP bag of real 640x480 MSRS pairs in a temporary folder, then times
read -> deserialize -> pair (the node's StampPairer) -> decode both images, the loop ``bag evaluate``
runs around the pipeline; and, separately, each fusion metric on real pairs. Writes JSON
(default benchmarks/results/bag_cpu.json) and prints a table. The default run is short; raise
``--pairs``/``--repeat``/``--metric-pairs`` for steadier numbers.

    python benchmarks/bench_bag.py [--pairs 60] [--repeat 3] [--metric-pairs 3] [--storage mcap]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from _report import write_result

from fusion_perception.bag.make import MakeOptions, make_bag
from fusion_perception.bag.messages import image_from_msg
from fusion_perception.bag.reader import BagImages
from fusion_perception.data_root import dataset_path
from fusion_perception.metrics.fusion import FUSION_METRICS, fusion_metrics
from fusion_perception.pairing import StampPairer
from fusion_perception.ros.params import settings_from_values

MSRS = dataset_path("msrs")  # $FUSION_PERCEPTION_DATA/msrs, default ../shared/datasets/msrs
RESULTS = Path(__file__).resolve().parent / "results" / "bag_cpu.json"


def read_and_pair(bag: Path) -> tuple[int, float]:
    """Pairs produced and seconds spent reading, pairing and decoding the whole bag."""
    settings = settings_from_values({})
    pairer: StampPairer = StampPairer(settings.slop_ns, settings.queue_size)
    t0 = time.perf_counter()
    pairs = 0
    with BagImages(bag, ir_topic="/ir/image", visible_topic="/visible/image") as source:
        for frame in source.frames():
            for pair in pairer.push(frame.stream, frame.stamp_ns, frame):
                image_from_msg(pair.ir.msg)
                image_from_msg(pair.visible.msg)
                pairs += 1
    return pairs, time.perf_counter() - t0


def metric_costs(n_pairs: int) -> dict[str, float]:
    """Milliseconds per pair of each metric on real pairs (a fused stand-in: the per-pixel max)."""
    import cv2
    import numpy as np

    names = sorted(p.stem for p in (MSRS / "vi").glob("*.png"))[:n_pairs]
    triplets = []
    for name in names:
        ir = cv2.imread(str(MSRS / "ir" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        vis = cv2.imread(str(MSRS / "vi" / f"{name}.png"))
        triplets.append((np.maximum(ir, cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY)), ir, vis))
    costs = {}
    for metric in (*FUSION_METRICS, "all"):
        chosen = FUSION_METRICS if metric == "all" else (metric,)
        t0 = time.perf_counter()
        for fused, ir, vis in triplets:
            fusion_metrics(fused, ir, vis, chosen)
        costs[metric] = (time.perf_counter() - t0) * 1e3 / len(triplets)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=60, help="pairs in the benchmark bag")
    parser.add_argument("--repeat", type=int, default=3, help="timed reads of the bag (best is kept)")
    parser.add_argument("--metric-pairs", type=int, default=3, help="pairs the metrics are timed on")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "bench"
        make_bag(MSRS, bag, MakeOptions(storage=args.storage, limit=args.pairs, jitter_ms=3.0, labels_dir=""))
        read_and_pair(bag)  # warm the page cache and imports
        runs = [read_and_pair(bag) for _ in range(args.repeat)]
    pairs, best_s = min(runs, key=lambda r: r[1])
    result = {
        "machine": {"cpus_available": len(os.sched_getaffinity(0)), "python": platform.python_version()},
        "bag": {"storage": args.storage, "pairs": pairs, "size": "640x480 mono8 IR + bgr8 visible"},
        "read_pair_decode": {
            "best_s": best_s,
            "pairs_per_s": pairs / best_s,
            "all_runs_pairs_per_s": [p / s for p, s in runs],
            "target_pairs_per_s": 300,
        },
        "metrics_ms_per_pair": metric_costs(args.metric_pairs),
    }
    write_result(args.out, result)
    print(
        f"read + pair + decode ({args.storage}, {pairs} pairs): "
        f"{result['read_pair_decode']['pairs_per_s']:.0f} "
        f"pairs/s (target >= 300)"
    )
    print(f"{'metric':<8} {'ms/pair':>9}")
    for name, ms in result["metrics_ms_per_pair"].items():
        print(f"{name:<8} {ms:>9.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
