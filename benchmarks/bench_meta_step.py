"""Time and peak memory of one meta step of the learnable-loss schemes, per meta-gradient mode.

Each (scheme, mode) runs in a fresh process, so the peak resident set size (``ru_maxrss``) belongs to
that configuration alone: "extra peak" is the peak during the first meta step minus the resident
size after building everything and running one ordinary fusion-net step. Time is the median of
``--repeats`` steps after that first one, as process CPU time (robust to other jobs sharing the
cores, which wall time is not; with ``--threads 1`` it is the compute time) and as wall time.

The TDFusion outer objective is the task net (``TaskNet``) on the fused image: segmentation
cross-entropy plus a stand-in for the detection loss (mean sigmoid of the detection logits), so the
whole task net is in the backward pass; the real detection loss adds no network cost.

    nice -n 5 .venv/bin/python benchmarks/bench_meta_step.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "meta_step_cpu.json"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run_one(
    scheme: str, mode: str, batch: int, height: int, width: int, repeats: int, threads: int, swap: bool
) -> dict:
    import torch

    from fusion_perception.models.deployed import modality_input
    from fusion_perception.models.fusion import GuidedFusionNet
    from fusion_perception.models.tasks import TaskNet
    from fusion_perception.training.config import LossConfig
    from fusion_perception.training.loss_learner import LossNetLearner, Reconstructor
    from fusion_perception.training.losses import segmentation_loss
    from fusion_perception.training.meta_config import MetaConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fusion = GuidedFusionNet()
    cfg = MetaConfig(mode=mode, swap_orders=swap)
    learner = LossNetLearner(cfg, LossConfig(intensity=5.0))
    data = {
        "ir": torch.rand(batch, 1, height, width),
        "visible": torch.rand(batch, 3, height, width),
        "seg": torch.randint(0, 9, (batch, height, width)),
    }
    if scheme == "tdfusion":
        tasks = TaskNet()

        def outer_fn(fused: torch.Tensor, b: dict) -> torch.Tensor:
            seg, det = tasks(modality_input("fused", b["ir"], b["visible"], fused))
            return segmentation_loss(seg, b["seg"]) + det[..., 4:].sigmoid().mean()

    else:
        outer_fn = Reconstructor(cfg).objective

    first, second, _ = learner.fusion_inputs(data)
    # One ordinary fusion step first, so allocator pools exist before the baseline is taken.
    loss, _ = learner.fusion_loss(fusion(first, second), first, second)
    loss.backward()
    fusion.zero_grad(set_to_none=True)
    base_peak, base_now = _rss_mib(), _current_rss_mib()
    learner.meta_step(fusion, data, outer_fn)
    peak = _rss_mib()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        learner.meta_step(fusion, data, outer_fn)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    c0 = time.process_time()
    for _ in range(repeats):
        loss, _ = learner.fusion_loss(fusion(first, second), first, second)
        loss.backward()
    plain_cpu_s = (time.process_time() - c0) / repeats
    return {
        "scheme": scheme,
        "mode": mode,
        "batch": batch,
        "size_hw": [height, width],
        "threads": threads,
        "swap_orders": swap,
        "meta_step_cpu_s_median": statistics.median(cpu),
        "meta_step_wall_s_median": statistics.median(wall),
        "fusion_step_cpu_s": plain_cpu_s,
        "extra_peak_rss_mib": max(0.0, peak - max(base_peak, base_now)),
        "baseline_rss_mib": base_now,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--swap-orders",
        action="store_true",
        help="feed both source orders (the batch doubled), as meta.swap_orders does in training",
    )
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--one", nargs=2, metavar=("SCHEME", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = (args.batch, args.height, args.width, args.repeats, args.threads, args.swap_orders)
    if args.one:
        print(json.dumps(run_one(*args.one, *sizes)))
        return
    rows = []
    for scheme in ("refusion", "tdfusion"):
        for mode in ("exact", "finite_difference"):
            cmd = [sys.executable, __file__, "--one", scheme, mode]
            cmd += ["--batch", str(args.batch), "--height", str(args.height), "--width", str(args.width)]
            cmd += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
            cmd += ["--swap-orders"] if args.swap_orders else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"{scheme:9s} {mode:18s} meta step {r['meta_step_cpu_s_median']:.3f} s CPU "
                f"(fusion step {r['fusion_step_cpu_s']:.3f} s), "
                f"extra peak RSS {r['extra_peak_rss_mib']:.0f} MiB"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
