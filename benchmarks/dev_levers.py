"""The lever table of the development protocol: mean and min-max over seeds of each lever's dev scores.

    .venv/bin/python benchmarks/dev_levers.py runs/levers     # reads runs/levers/<LEVER>_s<SEED>/dev.json

Runs come from ``scripts/dev_levers.sh`` (task net trained on ``fit``, scored on ``dev`` by
``fusion-perception evaluate --split dev``). Prints a Markdown table (one row per lever, in the order
first seen) with the seeds found, a lever with one seed showing its value with no range, and writes
every run's figures and the table's rows to ``results/dev_levers_cpu.json``. The judge columns (the fixed
NanoDet-g on the run's fused images, mapped classes) are filled for runs evaluated with ``--judge``
(the ``fusion_*`` levers, whose fusion nets differ); "-" elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _report import REPO, write_result
from _seed_table import collect, figures, table

COLUMNS = (
    ("mAP@0.5", lambda r: r["detection"]["fused"]["mAP50"]),
    ("mAP@0.5:0.95", lambda r: r["detection"]["fused"]["mAP50_95"]),
    ("AP50 person", lambda r: r["detection"]["fused"]["per_class"]["person"]["AP50"]),
    ("AP50 bicycle", lambda r: r["detection"]["fused"]["per_class"]["bicycle"]["AP50"]),
    ("AP50 car", lambda r: r["detection"]["fused"]["per_class"]["car"]["AP50"]),
    ("AP50 person, small (< 32^2 px^2)", lambda r: _by_area(r, "small")["person"]["AP50"]),
    ("AP50 person, medium", lambda r: _by_area(r, "medium")["person"]["AP50"]),
    ("AP50 person, same weights on IR", lambda r: r["detection"]["ir"]["per_class"]["person"]["AP50"]),
    ("AP50 person at night", lambda r: _night(r, "fused")["person"]["AP50"]),
    ("AP50 person at night, same weights on IR", lambda r: _night(r, "ir")["person"]["AP50"]),
    ("seg mIoU", lambda r: r["segmentation"]["mIoU"]),
    ("judge mAP@0.5, fused", lambda r: _judge(r, "fused")["mAP50"]),
    ("judge AP50 person, fused", lambda r: _judge(r, "fused")["per_class"]["person"]["AP50"]),
    ("judge AP50 person, IR", lambda r: _judge(r, "ir")["per_class"]["person"]["AP50"]),
)


def _by_area(report: dict, area: str) -> dict:
    """The own detector's per-class AP50 on the fused image in one COCO size range; KeyError for a
    report written before the evaluator scored sizes."""
    return report["detection"]["fused"]["by_area"][area]["per_class"]


def _night(report: dict, image: str) -> dict:
    """The own detector's per-class scores on the night pairs' ``image`` (fused, or IR with the same
    weights); KeyError for a report written before the evaluator split day from night."""
    return (report.get("detection_by_time_of_day") or {})["night"][image]["per_class"]


def _judge(report: dict, image: str) -> dict:
    """The judge's row for ``image`` (mapped classes); KeyError when the run was not judged."""
    judge = report.get("judge")  # None for a run evaluated without --judge
    if judge is None:
        raise KeyError("judge")
    return judge["results"]["mapped"][image]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="folder holding <LEVER>_s<SEED>/dev.json")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "dev_levers_cpu.json")
    args = p.parse_args(argv)
    runs = collect(args.root, "dev.json")
    if not runs:
        print(f"no <LEVER>_s<SEED>/dev.json under {args.root}", file=sys.stderr)
        return 1
    rendered = table(runs, COLUMNS, "lever")
    print(rendered)
    first = next(iter(next(iter(runs.values())).values()))
    write_result(args.json, {
        "split": first.get("split"), "num_pairs": first.get("num_pairs"),
        "runs": figures(runs, COLUMNS), "table": rendered.splitlines(),
        "training": {lever: next(iter(by.values())).get("model_training") for lever, by in runs.items()},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
