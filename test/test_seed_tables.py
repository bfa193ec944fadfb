"""The multi-seed tables of docs/RESULTS.md (benchmarks/_seed_table.py, dev_levers.py,
schemes_table.py): seeds aggregate as mean (min-max), a missing figure shows as "-", run folders
that are not <NAME>_s<SEED> are ignored, and the schemes table sums the recipe's phase times."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    if str(REPO / "benchmarks") not in sys.path:  # the benchmarks import their helpers by name
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _report(en: float, det: float, with_judge: bool = True) -> dict:
    metrics = dict.fromkeys(("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM"), 1.0)
    fusion = {m: {**metrics, "EN": en} for m in ("model", "average", "max", "pyramid")}
    report = {
        "fusion": fusion,
        "model_beats_baseline_on": {"max": 6},
        "detection": {k: {"mAP50": det} for k in ("fused", "ir", "visible")},
        "segmentation": {"mIoU": 0.3},
    }
    if with_judge:
        report["judge"] = {"results": {"mapped": {"fused": {"mAP50": 0.45}}}}
    return report


def _write(root: Path, run: str, report: dict, times: str | None = None) -> None:
    (root / run).mkdir(parents=True)
    (root / run / "val.json").write_text(json.dumps(report))
    if times is not None:
        (root / run / "times.txt").write_text(times)


def test_cells_aggregate_seeds_and_mark_what_is_missing() -> None:
    seed_table = _load("_seed_table")
    assert seed_table.cell([0.4, 0.5, 0.6]) == "0.500 (0.400-0.600)"
    assert seed_table.cell([0.45]) == "0.450"
    assert seed_table.cell([0.4, None]) == "-"


def test_schemes_table_reads_recipe_runs(tmp_path: Path) -> None:
    schemes = _load("schemes_table")
    _write(tmp_path, "bilevel_s0", _report(6.7, 0.50), "[recipe] fusion: 100 s\n[recipe] tasks: 50 s\n")
    _write(tmp_path, "bilevel_s1", _report(6.9, 0.40), "[recipe] fusion: 110 s\n")
    _write(tmp_path, "tdfusion_s0", _report(6.5, 0.45, with_judge=False))
    _write(tmp_path, "notes", _report(0.0, 0.0))  # not <NAME>_s<SEED>: ignored
    out = tmp_path / "schemes.json"
    assert schemes.main([str(tmp_path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {line.split(" | ")[0].strip("| "): line for line in result["tables"]["msrs"]}
    assert set(rows) >= {"bilevel", "tdfusion", "max (reference)"} and "notes" not in rows
    assert "| 0,1 | 6.800 (6.700-6.900) |" in rows["bilevel"]
    assert "0.450 (0.400-0.500)" in rows["bilevel"]  # own mAP over the two seeds
    assert rows["bilevel"].endswith("| 130.000 (110.000-150.000) |")  # summed phase times
    assert rows["tdfusion"].endswith("| - | - |")  # no judge, no times.txt
    assert result["runs"]["msrs"]["bilevel"]["1"]["EN"] == 6.9
