"""FP32 vs INT8 (or any ONNX models): fusion metrics, detection mAP and latency, side by side.

    .venv/bin/python benchmarks/bench_precision.py MODEL.onnx MODEL_int8.onnx
    .venv/bin/python benchmarks/bench_precision.py A.onnx B.onnx C.onnx --limit 20 --json p.json

Every model runs through the project's ``Pipeline`` on the MSRS val split (never the train pairs
the INT8 model was calibrated on) and is scored with :func:`fusion_perception.evaluation.
evaluate_pipeline`, the definition ``bag evaluate`` uses: the nine fusion metrics of the published
fused image and COCO mAP@0.5 / @0.5:0.95 of the published boxes (``labels_det_fusion``, score
threshold 0.05 as in ``fusion-perception evaluate``). The first model is the reference: for each
other one the script also reports how far its outputs move from it (fused image |difference| in
uint8 levels, share of segmentation pixels whose class changes). Latency: ``backend.infer`` and
``Pipeline`` on the bundled pairs, all models interleaved in one loop (``bench_runtime.time_models``)
so a shared machine's load hits them alike; compare ratios. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _report import write_result
from bench_runtime import time_models

from fusion_perception.data_root import dataset_path

REPO = Path(__file__).resolve().parents[1]
MSRS = dataset_path("msrs")  # $FUSION_PERCEPTION_DATA/msrs, default ../shared/datasets/msrs


class _Drift:
    """How far one model's outputs move from the reference's, pair by pair."""

    def __init__(self, reference: dict[str, Any]) -> None:
        self.reference = reference
        self.abs_diff_hist = np.zeros(256, np.int64)
        self.label_changed = 0
        self.label_pixels = 0

    def __call__(self, stem: str, result: Any) -> None:
        fused, labels = self.reference[stem]
        diff = np.abs(result.fused_bgr.astype(np.int16) - fused.astype(np.int16))
        self.abs_diff_hist += np.bincount(diff.ravel(), minlength=256)
        self.label_changed += int(np.count_nonzero(result.labels != labels))
        self.label_pixels += labels.size

    def summary(self) -> dict[str, float]:
        total = max(int(self.abs_diff_hist.sum()), 1)
        cdf = np.cumsum(self.abs_diff_hist) / total
        levels = np.arange(256)
        return {
            "fused_abs_diff_mean": float((self.abs_diff_hist * levels).sum() / total),
            "fused_abs_diff_p99": float(np.searchsorted(cdf, 0.99)),
            "fused_abs_diff_max": float(levels[self.abs_diff_hist > 0].max(initial=0)),
            "segmentation_pixels_changed": self.label_changed / max(self.label_pixels, 1),
        }


def evaluate_models(models: dict[str, Path], dataset: Path, split: str, limit: int | None, threads: int,
                    score_threshold: float) -> dict[str, Any]:
    """Quality of each model on ``dataset``'s ``split``; the first model is the drift reference."""
    from fusion_perception.evaluation import evaluate_pipeline
    from fusion_perception.image_pairs import split_names
    from fusion_perception.runtime.backend import OnnxRuntimeBackend
    from fusion_perception.runtime.pipeline import Pipeline, PipelineConfig

    names = split_names(dataset, split)
    names = names[:limit] if names is not None and limit else names
    reference: dict[str, Any] = {}
    out: dict[str, Any] = {}

    def keep(stem: str, result: Any) -> None:
        reference[stem] = (result.fused_bgr, result.labels)

    for i, (label, path) in enumerate(models.items()):
        backend = OnnxRuntimeBackend(path, threads=threads)
        pipeline = Pipeline(backend, PipelineConfig(score_threshold=score_threshold))
        drift = _Drift(reference) if i else None
        report = evaluate_pipeline(pipeline, dataset, names, on_result=drift or keep)
        report["model"] = str(path)
        if drift is not None:
            report["drift_from_reference"] = drift.summary()
        out[label] = report
        backend.close()
        det = report["detection"]
        print(f"  {label}: mAP50 {det['mAP50']:.4f}, {report['num_pairs']} pairs, {report['seconds']:.0f} s",
              file=sys.stderr)
    return out


def _labels(paths: list[Path]) -> dict[str, Path]:
    """Column names: file stems, made unique."""
    labels: dict[str, Path] = {}
    for path in paths:
        name = path.stem
        while name in labels:
            name += "'"
        labels[name] = path
    return labels


def print_table(result: dict[str, Any]) -> None:
    """Metrics as rows, models as columns."""
    from fusion_perception.metrics.fusion import FUSION_METRICS

    models = list(result["quality"])
    q, t = result["quality"], result["timing"]
    t0 = t[models[0]]["backend_infer"]["p50_ms"]
    rows: list[tuple[str, list[str]]] = [
        (k, [f"{q[m]['fusion'][k]:.4f}" for m in models]) for k in FUSION_METRICS]
    rows += [(k, [f"{q[m]['detection'][k]:.4f}" for m in models]) for k in ("mAP50", "mAP50_95")]
    rows += [(f"AP50 {c}", [f"{q[m]['detection']['per_class'][c]['AP50']:.4f}" for m in models])
             for c in q[models[0]]["detection"]["per_class"]]
    rows += [("infer p50 ms", [f"{t[m]['backend_infer']['p50_ms']:.2f}" for m in models]),
             ("pipeline p50 ms", [f"{t[m]['pipeline']['p50_ms']:.2f}" for m in models]),
             ("pipeline CPU p50 ms", [f"{t[m]['pipeline_cpu_p50_ms']:.2f}" for m in models]),
             ("infer vs first", [f"{t[m]['backend_infer']['p50_ms'] / t0:.2f}x" for m in models])]
    for key in ("fused_abs_diff_mean", "fused_abs_diff_p99", "segmentation_pixels_changed"):
        rows.append((key, ["-"] + [f"{q[m]['drift_from_reference'][key]:.4f}" for m in models[1:]]))
    width = max(14, *(len(m) + 2 for m in models))
    print(f"{'':<28}" + "".join(f"{m:>{width}}" for m in models))
    for name, values in rows:
        print(f"{name:<28}" + "".join(f"{v:>{width}}" for v in values))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", type=Path, nargs="+", help="ONNX files; the first is the reference (FP32)")
    p.add_argument("--dataset", type=Path, default=MSRS,
                   help="MSRS-layout folder (ir/, vi/, labels_det_fusion/)")
    p.add_argument("--split", default="val", help="split name under DATASET/splits/ or a file (default val)")
    p.add_argument("--limit", type=int, help="first N pairs of the split only")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--score-threshold", type=float, default=0.05, help="detection score threshold for mAP")
    p.add_argument("--timing-iterations", type=int, default=100, help="interleaved timed runs per model")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "precision_cpu.json")
    args = p.parse_args(argv)
    for path in args.models:
        if not path.is_file():
            p.error(f"model {path} does not exist")
    models = _labels(args.models)
    result: dict[str, Any] = {
        "dataset": str(args.dataset), "split": args.split, "limit": args.limit, "threads": args.threads,
        "score_threshold": args.score_threshold, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "load_avg_at_start": os.getloadavg(),
    }
    print(f"quality on {args.dataset} ({args.split}):", file=sys.stderr)
    result["quality"] = evaluate_models(models, args.dataset, args.split, args.limit, args.threads,
                                        args.score_threshold)
    print("latency (interleaved):", file=sys.stderr)
    result["timing"] = time_models(models, args.threads, args.timing_iterations, warmup=5)
    result["load_avg_at_end"] = os.getloadavg()
    print_table(result)
    write_result(args.json, result, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
