"""The three training schemes at one budget: mean and min-max over seeds of each scheme's report.

    SCHEME=bilevel SEED=0 scripts/recipe.sh runs/schemes/bilevel_s0        # one run per scheme and seed
    .venv/bin/python benchmarks/schemes_table.py runs/schemes              # reads <SCHEME>_s<SEED>/val.json

Runs come from ``scripts/recipe.sh`` (``SCHEME`` = bilevel | tdfusion | refusion; the export phase
scores MSRS val once with ``evaluate --judge`` and RoadScene / TNO fusion metrics). Prints three
Markdown tables: MSRS val (the nine fusion metrics, wins against max fusion, the scheme's own
detector on its fused image and on the IR and visible images with the same weights, segmentation
agreement with the weak maps, the fixed judge on the fused image, wall time of the run's phases),
then RoadScene and TNO (fusion metrics), each with the reference fusions (average, max, pyramid)
as the reports give them; writes every run's figures and the tables to ``results/schemes_cpu.json``.
``--report dev.json`` reads development runs (``SPLIT=fit``) instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from _report import REPO, write_result
from _seed_table import Column, cell, collect, figures, table

METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
REFERENCES = ("average", "max", "pyramid")
PHASE_TIME = re.compile(r"^\[recipe\] \S+: (\d+) s$")


def _fusion(method: str) -> list[Column]:
    return [(m, lambda r, m=m: r["fusion"][method][m]) for m in METRICS]


VAL_COLUMNS: list[Column] = [
    *_fusion("model"),
    ("wins vs max (of 9)", lambda r: r["model_beats_baseline_on"]["max"]),
    ("own mAP@0.5, fused", lambda r: r["detection"]["fused"]["mAP50"]),
    ("same weights on IR", lambda r: r["detection"]["ir"]["mAP50"]),
    ("on visible", lambda r: r["detection"]["visible"]["mAP50"]),
    ("seg mIoU", lambda r: r["segmentation"]["mIoU"]),
    ("judge mAP@0.5, fused", lambda r: r["judge"]["results"]["mapped"]["fused"]["mAP50"]),
    ("wall s", lambda r: r["wall_s"]),
]
FUSION_COLUMNS: list[Column] = _fusion("model")


def wall_seconds(run: Path) -> float | None:
    """Sum of the phase times ``recipe.sh`` appended to ``<run>/times.txt``; None without one."""
    path = run / "times.txt"
    if not path.exists():
        return None
    return float(sum(int(m[1]) for line in path.read_text().splitlines() if (m := PHASE_TIME.match(line))))


def references(runs: dict[str, dict[int, dict]]) -> str:
    """The reference fusions' rows (the same images for every run: taken from the first report)."""
    report = next(iter(next(iter(runs.values())).values()))
    return "\n".join(
        f"| {ref} (reference) | | " + " | ".join(cell([report["fusion"][ref][m]]) for m in METRICS) + " |"
        for ref in REFERENCES
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="folder holding <SCHEME>_s<SEED>/ recipe runs")
    p.add_argument("--report", default="val.json", help="the MSRS report of each run: val.json or dev.json")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "schemes_cpu.json")
    args = p.parse_args(argv)
    runs = collect(args.root, args.report)
    if not runs:
        print(f"no <SCHEME>_s<SEED>/{args.report} under {args.root}", file=sys.stderr)
        return 1
    for name, by_seed in runs.items():
        for seed, report in by_seed.items():
            seconds = wall_seconds(args.root / f"{name}_s{seed}")
            if seconds is not None:
                report["wall_s"] = seconds
    tables = {"msrs": table(runs, VAL_COLUMNS, "scheme")}
    out = {"report": args.report, "runs": {"msrs": figures(runs, VAL_COLUMNS)}}
    for folder in ("roadscene", "tno"):
        other = collect(args.root, f"{folder}.json")
        if other:
            tables[folder] = table(other, FUSION_COLUMNS, "scheme") + "\n" + references(other)
            out["runs"][folder] = figures(other, FUSION_COLUMNS)
    tables["msrs"] += "\n" + references(runs)
    for folder, rendered in tables.items():
        print(f"\n{folder}\n{rendered}")
    write_result(args.json, {**out, "tables": {k: v.splitlines() for k, v in tables.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
