"""``fusion-perception evaluate DATASET_DIR --json OUT.json``: one script, one set of files, every method.

For each pair of an MSRS-layout folder (ir/, vi/, labels_det_fusion/; optional splits/ and
segmentation labels) it computes:

* fusion metrics (docs/METRICS.md) of the model's fused image and of the average, max and Laplacian
  pyramid fusion baselines, all rounded to uint8 as the node publishes them;
* detection mAP@0.5 and @0.5:0.95 per class of the model's detector on fused input, on IR-only
  and on visible-only input (same weights), and optionally of separately trained single-modality
  detectors (``--baseline ir=CKPT``) on their own modality: the fair protocol;
* segmentation mIoU against the best labels present (official MSRS labels, else BDLFusion's
  predictions, named as such);
* with ``--judge``: mAP of the fixed NanoDet-g teacher on the fused, IR, visible, average and max
  images (:mod:`fusion_perception.teacher.judge`), independent of the model's own detector unless
  the model's provenance says the teacher entered its objective (then every figure says so);
* on MSRS names (``00123D``, ``00123N``) every detector's scores by day and by night as well
  (``detection_by_time_of_day``): the night pairs are where the thermal image matters.

The model is a training checkpoint (torch), because the single-modality inputs need the task net
alone; fused images are the same computation the exported graph runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DatasetError, FusionPerceptionError
from ..image_pairs import find_pairs, read_pair, split_names
from ..metrics.detection import DetectionEvaluator, load_yolo_labels
from ..metrics.fusion import FUSION_METRICS, fusion_metrics
from ..metrics.segmentation import SegmentationEvaluator
from ..preprocessing import fused_to_bgr, thermal_to_unit, unit_to_uint8
from ..runtime.pipeline import PipelineConfig
from ..runtime.postprocess import decode_detections, segmentation_labels

__all__ = ["evaluate_folder", "main", "pyramid_fusion", "time_of_day"]

log = logging.getLogger(__name__)
#: MSRS pair names: five digits and D (day) or N (night).
MSRS_NAME = re.compile(r"\d{5}[DN]")


def time_of_day(stem: str) -> str | None:
    """"day" or "night" for an MSRS pair name (``00123D``, ``00123N``); None for any other name."""
    if not MSRS_NAME.fullmatch(stem):
        return None
    return "night" if stem.endswith("N") else "day"


SEG_LABEL_SOURCES = (
    ("labels_seg", "MSRS labels"),
    ("seg_bdlfusion_pred", "BDLFusion predictions (not ground truth)"),
)


def pyramid_fusion(ir: np.ndarray, vis: np.ndarray, levels: int = 4) -> np.ndarray:
    """Laplacian-pyramid fusion baseline: max-abs detail coefficients, averaged base (float 0-1)."""

    def pyramid(img: np.ndarray) -> list[np.ndarray]:
        gauss = [img]
        for _ in range(levels):
            gauss.append(cv2.pyrDown(gauss[-1]))
        lap = [g - cv2.pyrUp(n, dstsize=(g.shape[1], g.shape[0])) for g, n in itertools.pairwise(gauss)]
        return [*lap, gauss[-1]]

    pa, pb = pyramid(ir.astype(np.float32)), pyramid(vis.astype(np.float32))
    fused = [np.where(np.abs(a) >= np.abs(b), a, b) for a, b in zip(pa[:-1], pb[:-1], strict=True)]
    out = (pa[-1] + pb[-1]) / 2
    for lap in reversed(fused):
        out = cv2.pyrUp(out, dstsize=(lap.shape[1], lap.shape[0])) + lap
    return np.clip(out, 0.0, 1.0)


def _load_checkpoint(path: Path):
    from ..models.checkpoint import load_deployed

    return load_deployed(path).eval()


def _seg_label(root: Path, stem: str) -> tuple[np.ndarray | None, str | None]:
    for folder, what in SEG_LABEL_SOURCES:
        path = root / folder / f"{stem}.png"
        if path.is_file():
            label = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if label is None:
                raise DatasetError(f"cannot read segmentation label {path}")
            return label, what
    return None, None


def _operating_points(evaluator: DetectionEvaluator) -> dict[str, Any]:
    """Precision/recall of the fused-input detector per score threshold, and the F1-best one: the
    evidence for the node's default ``score_threshold``."""
    rows = evaluator.operating_points([round(t, 2) for t in np.arange(0.05, 0.95, 0.05)])
    return {"curve": rows, "best_f1": max(rows, key=lambda r: r["f1"])}


def evaluate_folder(
    root: Path,
    checkpoint: Path,
    *,
    split: str | None = None,
    baselines: dict[str, Path] | None = None,
    score_threshold: float = 0.05,
    judge: bool = False,
    fusion_only: bool = False,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on every pair of ``root`` (or its ``split``); returns the report dict.

    ``judge`` adds the teacher's scores of the fused and input images (report key ``judge``).
    ``fusion_only`` scores the fused image alone (folders without labels: RoadScene, TNO).
    """
    import torch

    from ..models.deployed import modality_input

    root = Path(root)
    if not fusion_only and not (root / "labels_det_fusion").is_dir():
        raise DatasetError(
            f"{root} has no labels_det_fusion/ folder (MSRS layout: ir/, vi/, labels_det_fusion/); "
            "use --fusion-only for a folder without labels"
        )
    if fusion_only and (judge or baselines):
        raise ValueError("--fusion-only scores fusion metrics alone: no --judge or --baseline")
    pairs = find_pairs(root, split_names(root, split))
    model = _load_checkpoint(checkpoint)
    info = model.info
    detectors = (
        {}
        if fusion_only
        else {
            "fused": (model.tasks, "fused"),
            "ir": (model.tasks, "ir"),
            "visible": (model.tasks, "visible"),
        }
    )
    for modality, path in (baselines or {}).items():
        detectors[f"{modality}_trained"] = (_load_checkpoint(path).tasks, modality)
    det_eval = {name: DetectionEvaluator(info.det_classes) for name in detectors}
    # MSRS names end in D (day) or N (night): persons are lost at night, so score each apart too.
    pair_time = {stem: time_of_day(stem) for stem, _, _ in pairs}
    by_time = None not in pair_time.values() and not fusion_only
    det_eval_time = {
        t: {name: DetectionEvaluator(info.det_classes) for name in detectors} for t in ("day", "night")
    } if by_time else {}
    seg_eval = SegmentationEvaluator(len(info.seg_classes), class_names=info.seg_classes)
    seg_source = None
    teacher_judge = None
    if judge:
        from ..teacher.judge import TeacherJudge, judge_inputs

        teacher_judge = TeacherJudge(training=info.training, class_names=info.det_classes)
    methods = ("model", "average", "max", "pyramid")
    per_method: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    t0 = time.perf_counter()
    from ..preprocessing import PreprocessConfig, prepare_pair

    for stem, ir_path, vi_path in pairs:
        ir_img, vis_img = read_pair(ir_path, vi_path)
        h, w = vis_img.shape[:2]
        prepared = prepare_pair(ir_img, vis_img, PreprocessConfig(network_size=(w - w % 32, h - h % 32)))
        ir_t = torch.from_numpy(prepared.ir)
        vis_t = torch.from_numpy(prepared.visible)
        with torch.no_grad():
            fused_t = model.fusion(ir_t, vis_t[:, :1])
            outputs = {
                name: net(modality_input(mod, ir_t, vis_t, fused_t)) for name, (net, mod) in detectors.items()
            }
        ir_u, vis_u = prepared.ir[0, 0], prepared.visible[0, 0]
        fused_images = {
            "model": fused_t[0, 0].numpy(),
            "average": (ir_u + vis_u) / 2,
            "max": np.maximum(ir_u, vis_u),
            "pyramid": pyramid_fusion(ir_u, vis_u),
        }
        ir8, vis8 = unit_to_uint8(ir_u), unit_to_uint8(vis_u)
        for method, image in fused_images.items():
            per_method[method].append(fusion_metrics(unit_to_uint8(image), ir8, vis8))
        if fusion_only:
            continue
        gt_boxes, gt_classes = load_yolo_labels(root / "labels_det_fusion" / f"{stem}.txt", (w, h))
        net_size = prepared.mapping.network_size
        for name, (_, det_raw) in outputs.items():
            dets = decode_detections(
                det_raw[0].numpy(),
                input_size=net_size,
                strides=info.det_strides,
                score_threshold=score_threshold,
                iou_threshold=PipelineConfig.iou_threshold,
                max_detections=PipelineConfig.max_detections,
            )
            boxes = prepared.mapping.boxes_to_source(dets.boxes)
            det_eval[name].add(stem, gt_boxes, gt_classes, boxes, dets.scores, dets.class_ids)
            if by_time:
                det_eval_time[pair_time[stem]][name].add(
                    stem, gt_boxes, gt_classes, boxes, dets.scores, dets.class_ids
                )
        if teacher_judge is not None:
            ir8 = unit_to_uint8(thermal_to_unit(ir_img))
            fused_bgr = fused_to_bgr(fused_images["model"], prepared)
            teacher_judge.add(stem, judge_inputs(ir8, vis_img, fused_bgr), gt_boxes, gt_classes)
        label, source = _seg_label(root, stem)
        if label is not None:
            seg_source = source
            pred = segmentation_labels(outputs["fused"][0][0].numpy(), (w, h))
            seg_eval.add(pred, label)
    fusion_table = {
        m: {k: float(np.nanmean([r[k] for r in rows])) for k in FUSION_METRICS}
        for m, rows in per_method.items()
    }
    wins = {
        m: sum(fusion_table["model"][k] > fusion_table[m][k] for k in FUSION_METRICS)
        for m in methods
        if m != "model"
    }
    report = {
        "dataset": str(root),
        "split": split,
        "num_pairs": len(pairs),
        "checkpoint": str(checkpoint),
        "model_training": info.training,
        "fusion": fusion_table,
        "model_beats_baseline_on": wins,
        "detection": {name: ev.summarize() for name, ev in det_eval.items()},
        "detection_by_time_of_day": {
            t: {name: ev.summarize() for name, ev in evs.items()} for t, evs in det_eval_time.items()
        } if by_time else None,
        "operating_points": _operating_points(det_eval["fused"]) if "fused" in det_eval else None,
        "segmentation": ({"labels": seg_source, **seg_eval.summarize()} if seg_source else None),
        "judge": teacher_judge.summarize() if teacher_judge is not None else None,
        "seconds": time.perf_counter() - t0,
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusion-perception evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path, help="folder with ir/, vi/, labels_det_fusion/ (MSRS layout)")
    parser.add_argument("--json", type=Path, required=True, help="write the report here")
    parser.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (last.pt)")
    parser.add_argument(
        "--split",
        help="evaluate only the names of SPLIT: DATASET/splits/SPLIT.txt (e.g. val), "
        "or dev, carved from the train split (the development protocol)",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="MODALITY=CKPT",
        help="a detector trained on one modality (ir or visible), evaluated on that modality",
    )
    parser.add_argument(
        "--fusion-only",
        action="store_true",
        help="fusion metrics only, for pair folders without labels (RoadScene, TNO)",
    )
    parser.add_argument(
        "--judge",
        action="store_true",
        help="also score fused/IR/visible/average/max images with the fixed NanoDet-g teacher",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.fusion_only and (args.judge or args.baseline):
        parser.error("--fusion-only scores fusion metrics alone: drop --judge and --baseline")
    baselines = {}
    for item in args.baseline:
        modality, sep, path = item.partition("=")
        if not sep or modality not in ("ir", "visible"):
            parser.error(f"--baseline expects ir=CKPT or visible=CKPT, got {item!r}")
        baselines[modality] = Path(path)
    try:
        report = evaluate_folder(
            args.dataset,
            args.checkpoint,
            split=args.split,
            baselines=baselines,
            judge=args.judge,
            fusion_only=args.fusion_only,
        )
    except (FusionPerceptionError, FileNotFoundError) as err:
        print(f"fusion-perception evaluate: {err}", file=sys.stderr)
        return 1
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
    fused = report["fusion"]
    print(f"{'method':<8} " + " ".join(f"{k:>7}" for k in FUSION_METRICS))
    for method, row in fused.items():
        print(f"{method:<8} " + " ".join(f"{row[k]:7.3f}" for k in FUSION_METRICS))
    for name, det in report["detection"].items():
        print(f"detector[{name}]: mAP50 {det['mAP50']:.3f}  mAP50:95 {det['mAP50_95']:.3f}")
    if report["operating_points"]:
        best = report["operating_points"]["best_f1"]
        print(
            f"fused detector, best F1 {best['f1']:.3f} at score {best['threshold']:.2f}: precision "
            f"{best['precision']:.3f}, recall {best['recall']:.3f}, {best['boxes_per_image']:.1f} boxes/image"
        )
    if report["segmentation"]:
        print(
            f"segmentation mIoU vs {report['segmentation']['labels']}: {report['segmentation']['mIoU']:.3f}"
        )
    if report["judge"]:
        from ..teacher.judge import format_judge

        print("\n".join(format_judge(report["judge"])))
    return 0
