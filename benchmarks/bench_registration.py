"""What registration is worth to the node's outputs: misaligned rigs with and without the estimated
homography, beside the registered originals.

    .venv/bin/python benchmarks/bench_registration.py                  # 4 rigs, MSRS val (60 pairs)
    .venv/bin/python benchmarks/bench_registration.py --rigs 2 --limit 20 --json r.json

Each rig imitates a thermal camera of another size and pose: the registered MSRS IR image is
re-sampled through a random homography G (IR pixel -> visible pixel) into a 640x512 or 320x256 IR
frame whose field of view covers the whole visible frame (a thermal lens a little wider than the
visible one, rotated up to 2 degrees, shifted, slightly tilted), so that perfect registration
loses no IR content and every difference below comes from registration (and, for 320x256, from
the thermal camera's lower resolution, which the "true H" row isolates). Per rig:

* ``estimated``: ``fusion-perception calibrate``'s estimator run on 8 pairs of the MSRS *train*
  split through the same rig (a user's calibration session), then the val pairs through the node's
  pipeline with that homography;
* ``true H``: the same with G itself (what perfect calibration gives at that IR resolution);
* ``D @ true H``: G corrected by MSRS's own registration error D (IR grid -> visible grid, 3.3 px
  at the corners, fitted on 40 train pairs as in ``bench_calibration.py``, where mutual information
  confirms it). An estimator that is right about the cameras finds D @ G, not G, because the
  calibration pairs carry D; the fusion metrics, scored against the registered IR, count that
  correction as loss. This row shows how much, so the estimate is judged against it too;
* ``size only``: the homography a user without calibration would set: IR scaled to the visible
  width and centred (``calibration.geometry.size_guess``).

Scores: the nine fusion metrics of the published fused image against the *registered* sources (the
truth: misregistration shows as loss) and COCO mAP@0.5 of the published boxes (score threshold
0.05, as ``fusion-perception evaluate``), on the MSRS val split. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _report import write_result

from fusion_perception.data_root import dataset_path

REPO = Path(__file__).resolve().parents[1]
MSRS = dataset_path("msrs")
IR_SIZES = ((640, 512), (320, 256))
CALIBRATION_PAIRS = 8
REFERENCE_PAIRS = 40  # for D, MSRS's own registration error (as bench_calibration.py)


def covering_rig(rng: np.random.Generator, ir_size: tuple[int, int], vis_size: tuple[int, int]) -> np.ndarray:
    """A random IR -> visible homography whose IR footprint contains the whole visible frame."""
    from fusion_perception.calibration.geometry import corners, transform

    vw, vh = vis_size
    for _ in range(1000):
        width = rng.uniform(1.08, 1.2) * vw
        height = width * ir_size[1] / ir_size[0]
        theta = np.deg2rad(rng.uniform(-2.0, 2.0))
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * [width / 2, height / 2]
        centre = np.array([vw / 2, vh / 2]) + rng.uniform(-0.03, 0.03, 2) * [vw, vh]
        dst = half @ rot.T + centre + rng.uniform(-0.01, 0.01, (4, 2)) * vw
        h = cv2.getPerspectiveTransform(corners(ir_size).astype(np.float32), dst.astype(np.float32))
        inside = transform(np.linalg.inv(h), corners(vis_size))
        if ((inside >= 0) & (inside <= np.array(ir_size) - 1)).all():
            return h / h[2, 2]
    raise RuntimeError(f"no covering rig for IR {ir_size} on visible {vis_size}")


def _score(pipeline: Any, pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
           labels: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str]) -> dict[str, Any]:
    """Fusion metrics (against the registered IR) and mAP of ``pipeline`` over ``pairs`` of
    (stem, IR as the rig delivers it, visible, registered IR)."""
    from fusion_perception.metrics.detection import DetectionEvaluator
    from fusion_perception.metrics.fusion import fusion_metrics

    evaluator = DetectionEvaluator(classes)
    rows = []
    for stem, ir, vis, ir_registered in pairs:
        result = pipeline(ir, vis)
        rows.append(fusion_metrics(result.fused_bgr, ir_registered, vis))
        det = result.detections
        evaluator.add(stem, *labels[stem], det.boxes, det.scores, det.class_ids)
    return {"fusion": {k: float(np.mean([r[k] for r in rows])) for k in rows[0]},
            "mAP50": float(evaluator.summarize()["mAP50"])}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fusion_perception.calibration.estimate import estimate_homography
    from fusion_perception.calibration.features import to_unit
    from fusion_perception.calibration.geometry import corner_error, size_guess
    from fusion_perception.calibration.joint import refine_joint
    from fusion_perception.calibration.synthetic import make_ir
    from fusion_perception.image_pairs import find_pairs, read_pair, split_names
    from fusion_perception.metrics.detection import load_yolo_labels
    from fusion_perception.preprocessing import PreprocessConfig, to_gray
    from fusion_perception.runtime.backend import OnnxRuntimeBackend
    from fusion_perception.runtime.pipeline import Pipeline, PipelineConfig

    def load(names: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return [(stem, to_gray(ir), vis) for stem, ir, vis in
                ((s, *read_pair(i, v)) for s, i, v in find_pairs(args.dataset, names))]

    train = split_names(args.dataset, "train")
    val, calib = load(split_names(args.dataset, "val")[: args.limit]), load(train[:CALIBRATION_PAIRS])
    ref = load([train[i] for i in np.linspace(0, len(train) - 1, REFERENCE_PAIRS).round().astype(int)])
    d = refine_joint([to_unit(ir) for _, ir, _ in ref], [to_unit(vis) for _, _, vis in ref], np.eye(3)).h
    vis_size = (val[0][2].shape[1], val[0][2].shape[0])
    backend = OnnxRuntimeBackend(args.model, threads=args.threads)
    classes = list(backend.info.det_classes)
    labels = {stem: load_yolo_labels(args.dataset / "labels_det_fusion" / f"{stem}.txt", vis_size)
              for stem, _, _ in val}

    def pipeline(homography: np.ndarray | None) -> Any:
        h = None if homography is None else tuple(map(tuple, np.asarray(homography, float)))
        return Pipeline(backend, PipelineConfig(preprocess=PreprocessConfig(network_size=None, homography=h),
                                                score_threshold=0.05))

    aligned = _score(pipeline(None), [(s, ir, vis, ir) for s, ir, vis in val], labels, classes)
    print(f"  registered originals: mAP50 {aligned['mAP50']:.4f}", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    rigs = []
    for k in range(args.rigs):
        ir_size = IR_SIZES[k % len(IR_SIZES)]
        truth = covering_rig(rng, ir_size, vis_size)
        t0 = time.perf_counter()
        estimate = estimate_homography([(make_ir(ir, truth, ir_size), vis) for _, ir, vis in calib])
        seconds = time.perf_counter() - t0
        rig_pairs = [(s, make_ir(ir, truth, ir_size), vis, ir) for s, ir, vis in val]
        rig: dict[str, Any] = {"ir_size": list(ir_size), "true_homography": truth.ravel().tolist(),
                               "estimated_homography": estimate.as_parameter(), "estimate_seconds": seconds}
        for name, h in (("estimated", estimate.homography), ("true H", truth), ("D @ true H", d @ truth),
                        ("size only", size_guess(ir_size, vis_size))):
            rig[name] = _score(pipeline(h), rig_pairs, labels, classes)
            rig[name]["corner_error_px"] = corner_error(np.asarray(h), truth, ir_size)
            rig[name]["corner_error_vs_D_px"] = corner_error(np.asarray(h), d @ truth, ir_size)
            print(f"  rig {k} {ir_size[0]}x{ir_size[1]} {name}: corner error "
                  f"{rig[name]['corner_error_px']:.2f} px, mAP50 {rig[name]['mAP50']:.4f}", file=sys.stderr)
        rigs.append(rig)
    backend.close()
    return {"aligned": aligned, "rigs": rigs, "dataset_registration_D": d.ravel().tolist()}


def print_table(result: dict[str, Any]) -> None:
    from fusion_perception.metrics.fusion import FUSION_METRICS

    def values(scores: dict[str, Any]) -> list[float]:
        return [scores["fusion"][m] for m in FUSION_METRICS] + [scores["mAP50"]]

    def worst(scores: dict[str, Any], ref: dict[str, Any]) -> str:
        return f"{max(abs(v / r - 1) for v, r in zip(values(scores), values(ref), strict=True) if r):.1%}"

    aligned = result["aligned"]
    names = ("estimated", "true H", "D @ true H", "size only")
    print(f"{'':<34}{'px vs H':>8}{'vs D@H':>8}" + "".join(f"{m:>8}" for m in (*FUSION_METRICS, "mAP50"))
          + f"{'worst vs reg.':>14}{'vs true H':>10}{'vs D@H':>8}")
    print(f"{'registered originals':<34}{'-':>8}{'-':>8}" + "".join(f"{v:>8.3f}" for v in values(aligned))
          + f"{'0.0%':>14}{'-':>10}{'-':>8}")
    for k, rig in enumerate(result["rigs"]):
        size = "x".join(map(str, rig["ir_size"]))
        for name in names:
            row = rig[name]
            errors = f"{row['corner_error_px']:>8.2f}{row['corner_error_vs_D_px']:>8.2f}"
            ratios = (f"{worst(row, aligned):>14}{worst(row, rig['true H']):>10}"
                      f"{worst(row, rig['D @ true H']):>8}")
            scores = "".join(f"{v:>8.3f}" for v in values(row))
            print(f"{f'rig {k} ({size}) {name}':<34}{errors}{scores}{ratios}")


def main(argv: list[str] | None = None) -> int:
    from fusion_perception.ros.params import default_model_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=default_model_path())
    p.add_argument("--dataset", type=Path, default=MSRS, help="MSRS-layout folder with splits/")
    p.add_argument("--rigs", type=int, default=4, help="random rigs (IR sizes alternate 640x512, 320x256)")
    p.add_argument("--limit", type=int, help="first N val pairs only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "registration_cpu.json")
    args = p.parse_args(argv)
    result: dict[str, Any] = {"model": str(args.model), "dataset": str(args.dataset), "rigs": args.rigs,
                              "seed": args.seed, "cpu_count": os.cpu_count(), "platform": platform.platform()}
    result.update(run(args))
    print_table(result)
    write_result(args.json, result, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
