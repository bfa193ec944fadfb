"""How much of a person's thermal contrast an image keeps: IR, the intensity targets, fused images.

    .venv/bin/python benchmarks/person_contrast.py --split dev \
        --model shipped=fusion_perception/assets/default.pt \
        --model warm=runs/levers/fusion_warm_s0/fusion/last.pt

For every labelled person of the split: mean intensity inside its box minus the mean of the ring
around it (the box grown by its width left and right, by half its height above and below), on the
network's luminance at 640x480 (the preprocessing the node uses). Grouped by day/night (MSRS names
end in D/N) and COCO size (small: box area <= 32^2 px^2). Rows: the IR image, each kind of
``loss.intensity_target`` built from the pair, and the fused image of each ``--model``'s fusion net.

Why: on dev the task nets find persons better on the IR image than on the fused one (small persons
at night most), and an image that keeps less of the person's contrast than IR cannot be expected to
do better. Prints a Markdown table, writes ``results/person_contrast_cpu.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _report import REPO, write_result

from fusion_perception.data_root import data_root
from fusion_perception.metrics.detection import AREA_RANGES


def box_contrast(image: np.ndarray, box: np.ndarray) -> float:
    """Mean inside ``box`` (x1, y1, x2, y2) minus the mean of the ring around it."""
    h_img, w_img = image.shape
    x1, y1, x2, y2 = np.round(box).astype(int)
    w, h = x2 - x1, y2 - y1
    ox1, oy1, ox2, oy2 = max(x1 - w, 0), max(y1 - h // 2, 0), min(x2 + w, w_img), min(y2 + h // 2, h_img)
    inner = image[y1:y2, x1:x2]
    ring_sum = image[oy1:oy2, ox1:ox2].sum() - inner.sum()
    ring_count = max((oy2 - oy1) * (ox2 - ox1) - inner.size, 1)
    return float(inner.mean() - ring_sum / ring_count)


def measure(root: Path, split: str, models: dict[str, Path]) -> dict[str, dict[str, list[float]]]:
    """group ("night, small", ...) -> image kind -> contrast of each person."""
    import torch

    from fusion_perception.image_pairs import read_pair, split_names
    from fusion_perception.metrics.detection import load_yolo_labels
    from fusion_perception.models.checkpoint import load_deployed
    from fusion_perception.preprocessing import PreprocessConfig, prepare_pair
    from fusion_perception.training.config import INTENSITY_TARGETS
    from fusion_perception.training.evaluate import time_of_day
    from fusion_perception.training.losses import intensity_target

    nets = {name: load_deployed(path).fusion for name, path in models.items()}
    groups: dict[str, dict[str, list[float]]] = {}
    for stem in split_names(root, split):
        ir, vis = read_pair(root / "ir" / f"{stem}.png", root / "vi" / f"{stem}.png")
        prepared = prepare_pair(ir, vis, PreprocessConfig(network_size=(640, 480)))
        ir_t, vis_y = torch.from_numpy(prepared.ir), torch.from_numpy(prepared.visible[:, :1])
        images = {"IR": prepared.ir[0, 0]}
        with torch.no_grad():
            for kind in INTENSITY_TARGETS:
                images[f"target: {kind}"] = intensity_target(ir_t, vis_y, kind)[0, 0].numpy()
            for name, net in nets.items():
                images[f"fused: {name}"] = net(ir_t, vis_y)[0, 0].numpy()
        boxes, classes = load_yolo_labels(root / "labels_det_fusion" / f"{stem}.txt", (640, 480))
        for box in boxes[classes == 0]:
            area = (box[2] - box[0]) * (box[3] - box[1])
            group = f"{time_of_day(stem)}, {'small' if area <= AREA_RANGES['small'][1] else 'larger'}"
            for kind, image in images.items():
                groups.setdefault(group, {}).setdefault(kind, []).append(box_contrast(image, box))
    return dict(sorted(groups.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=None, help="MSRS folder (default: <data root>/msrs)")
    p.add_argument("--split", default="dev")
    p.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="a checkpoint whose fusion net's image is measured (repeatable)")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "person_contrast_cpu.json")
    args = p.parse_args(argv)
    if any("=" not in m for m in args.model):
        p.error("--model takes NAME=CHECKPOINT")
    models = {name: Path(path) for name, path in (m.split("=", 1) for m in args.model)}
    root = args.dataset or data_root() / "msrs"
    groups = measure(root, args.split, models)
    kinds = list(next(iter(groups.values())))
    lines = ["| persons | count | " + " | ".join(kinds) + " |", "|" + "---|" * (len(kinds) + 2)]
    for group, by_kind in groups.items():
        cells = " | ".join(f"{np.mean(by_kind[k]):.3f}" for k in kinds)
        lines.append(f"| {group} | {len(by_kind['IR'])} | {cells} |")
    print("\n".join(lines))
    write_result(args.json, {
        "split": args.split, "dataset": str(root), "models": {k: str(v) for k, v in models.items()},
        "mean_contrast": {g: {k: float(np.mean(v)) for k, v in by.items()} for g, by in groups.items()},
        "count": {g: len(by["IR"]) for g, by in groups.items()}, "table": lines,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
