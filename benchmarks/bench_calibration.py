"""Known-answer benchmark of ``fusion-perception calibrate``'s estimator (and of ``alignment_score``).

Registered datasets (MSRS, RoadScene, TNO, LLVIP) are turned into rigs with a known answer: the IR
frames of a group of pairs (``--pairs``, one rig) are re-sampled through one random homography
(shift, scale, roll, small perspective; ``calibration.synthetic``) into an IR canvas of 320x256 or
640x512 (alternating), against the visible frame at 640x480. The estimator sees only the pairs;
the error is the mean distance of the IR frame's four corners mapped by the estimate and by the
answer, in visible pixels (median and p95 over ``--cases`` groups per dataset, seeds fixed).

The datasets' own registration is not exact. For the two recorded with one fixed rig (MSRS, LLVIP)
its systematic part D (a homography, IR grid -> visible grid) is estimated jointly on pairs that
no case uses (MSRS train split vs val split; LLVIP train vs test); errors are given against the
raw answer H and against D @ H. Evidence that D is real and not the estimator's bias: the mutual
information of intensities (a criterion the estimator does not use) on the evaluation pairs, with
and without D. RoadScene and TNO pairs were registered one by one (sizes differ), so no common D
exists.

A single D is not the whole story: the datasets' registration varies across the frame (their two
lenses distort differently), so the homography that best registers the part of the scene a rig's IR
sees is not D restricted to it. Each case therefore also has a **region reference** R: the
dataset's registration over exactly that case's IR footprint and resolution, fitted jointly
(``refine_joint``, from D @ H) on reference pairs put through the same warp (``--ref-pairs``, pairs
the case does not use: MSRS train, LLVIP train, the rest of the pool for RoadScene and TNO). The
same arbiter decides whether R is the data's truth or the fit's bias: per case, the mutual
information of the case's own pairs inside the IR footprint with R against D @ H.

Where the dataset's registration differs pair by pair (RoadScene, TNO), no reference fitted on
other pairs applies; ``--self-reference`` then takes U, the estimate on the case's own pairs
un-warped, and gives the errors against U @ H: how well the warp is recovered, apart from the
data's registration, with the same MI arbiter between U @ H and the dataset's answer.

Also measured: the losing candidates on a subset (``--compare-cases``); two controls (IR made from
the visible frame itself: the geometry alone; the un-warped pairs: what the data allow); a large
visible frame (1280x960 against 640x512 IR); and ``alignment_score`` for aligned, shifted and
unrelated MSRS pairs, with its time.

    nice -n 10 .venv/bin/python benchmarks/bench_calibration.py --jobs 2   # everything, ~1.5 h on 2 cores
    .venv/bin/python benchmarks/bench_calibration.py --parts main --jobs 2  # the main table alone
    .venv/bin/python benchmarks/bench_calibration.py --quick               # a few cases, smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a shared 2-core machine: one thread, nice'd

import cv2
import numpy as np
from _calibration_candidates import per_pair_ecc
from _report import REPO, write_result

from fusion_perception.calibration import CalibrationOptions, alignment_score, estimate_homography
from fusion_perception.calibration.features import to_unit
from fusion_perception.calibration.geometry import corner_error, corners, transform
from fusion_perception.calibration.joint import JointSettings, refine_joint
from fusion_perception.calibration.synthetic import make_ir, random_homography
from fusion_perception.data_root import dataset_path
from fusion_perception.errors import CalibrationError
from fusion_perception.image_pairs import find_pairs, read_pair, split_names
from fusion_perception.preprocessing import to_gray, warp_to_visible

cv2.setNumThreads(1)

VIS = (640, 480)
IR_SIZES = ((320, 256), (640, 512))
# name -> (evaluation folder, split), (reference folder, split) or None
DATASETS: dict[str, tuple[tuple[str, str | None], tuple[str, str | None] | None]] = {
    "msrs": (("msrs", "val"), ("msrs", "train")),
    "roadscene": (("roadscene", None), None),
    "tno": (("tno", None), None),
    "llvip": (("llvip_samples/test", None), ("llvip_samples/train", None)),
}
Pairs = list[tuple[np.ndarray, np.ndarray]]
Method = Callable[[Pairs], np.ndarray]


def load(folder: str, split: str | None, size: tuple[int, int] = VIS, limit: int | None = None) -> Pairs:
    """(IR grey, visible grey) pairs, both resized to ``size`` (registration survives the resize)."""
    root = dataset_path(folder)
    found = find_pairs(root, split_names(root, split))
    if limit is not None and len(found) > limit:
        found = [found[i] for i in np.linspace(0, len(found) - 1, limit).round().astype(int)]
    out = []
    for _, ir_path, vis_path in found:
        ir, vis = read_pair(ir_path, vis_path)
        ir, vis = to_gray(ir), to_gray(vis)
        interp = cv2.INTER_AREA if vis.shape[1] >= size[0] else cv2.INTER_LINEAR
        out.append((cv2.resize(ir, size, interpolation=interp), cv2.resize(vis, size, interpolation=interp)))
    return out


def mutual_information(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """MI (nats) of two uint8 images over ``mask``, 32x32-bin joint histogram."""
    hist, _, _ = np.histogram2d(a[mask], b[mask], bins=32, range=[[0, 256], [0, 256]])
    p = hist / hist.sum()
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / outer[nz])).sum())


def reference_registration(ref: Pairs, evaluation: Pairs) -> tuple[np.ndarray, dict]:
    """D (IR grid -> visible grid of the dataset) from ``ref`` pairs, and the MI check on ``evaluation``."""
    t = time.perf_counter()
    d = refine_joint([to_unit(i) for i, _ in ref], [to_unit(v) for _, v in ref], np.eye(3)).h
    mi_id, mi_d = [], []
    for ir, vis in evaluation:
        mask = np.zeros(vis.shape, bool)
        mask[12:-12, 12:-12] = True
        mi_id.append(mutual_information(ir, vis, mask))
        warped = warp_to_visible(ir, d, VIS)
        mi_d.append(mutual_information(warped, vis, mask & (warp_to_visible(np.ones_like(ir), d, VIS) > 0)))
    offsets = transform(d, corners(VIS)) - corners(VIS)
    return d, {
        "pairs": len(ref),
        "homography": [round(float(v), 8) for v in d.ravel()],
        "corner_offsets_px": np.round(offsets, 2).tolist(),
        "mean_corner_offset_px": round(float(np.linalg.norm(offsets, axis=1).mean()), 2),
        "mutual_information_eval": {
            "identity": round(float(np.mean(mi_id)), 5),
            "with_D": round(float(np.mean(mi_d)), 5),
            "pairs_higher_with_D": int(np.sum(np.array(mi_d) > np.array(mi_id))),
            "pairs": len(evaluation),
        },
        "seconds": round(time.perf_counter() - t, 1),
    }


#: The region reference's fit: from D @ H (a few pixels off), so the two finer levels suffice.
REGION_FIT = JointSettings(level_widths=(320, 640))


def footprint_mi(pairs: Pairs, h: np.ndarray) -> float:
    """Mean MI over ``pairs`` (IR canvas, visible) of the IR warped by ``h`` and the visible frame,
    inside the IR footprint (eroded by 8 px: interpolation at the edge of the footprint)."""
    size = (pairs[0][1].shape[1], pairs[0][1].shape[0])
    inside = warp_to_visible(np.full_like(pairs[0][0], 255), h, size) == 255
    inside = cv2.erode(inside.astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
    return float(np.mean([mutual_information(warp_to_visible(ir, h, size), vis, inside)
                          for ir, vis in pairs]))


def region_reference(refs: Pairs, h: np.ndarray, ir_size: tuple[int, int], start: np.ndarray) -> np.ndarray:
    """R: the dataset's registration over the footprint of a rig ``h`` at ``ir_size``, fitted on
    ``refs`` put through the same warp."""
    irs = [to_unit(make_ir(ir, h, ir_size)) for ir, _ in refs]
    return refine_joint(irs, [to_unit(v) for _, v in refs], start, REGION_FIT).h


def other_split(ref_pool: Pairs, used: set[int]) -> Pairs:
    """Region reference pairs of a dataset with a reference split: all of them (no case uses any)."""
    return ref_pool


def rest_of_pool(pool: Pairs, count: int, used: set[int]) -> Pairs:
    """Region reference pairs of a dataset without one: up to ``count`` pool pairs the case does not
    use, evenly spaced over the pool."""
    rest = [i for i in range(len(pool)) if i not in used]
    picked = np.linspace(0, len(rest) - 1, min(count, len(rest))).round().astype(int)
    return [pool[rest[i]] for i in picked]


def shipped(options: CalibrationOptions | None = None) -> Method:
    def run(pairs: Pairs) -> np.ndarray:
        return estimate_homography(pairs, options).homography
    return run


def stats(errors: Sequence[float]) -> dict:
    e = np.asarray(errors, np.float64)
    finite = e[np.isfinite(e)]
    return {
        "cases": len(e),
        "verdicts": int(np.sum(~np.isfinite(e))),
        "median_px": round(float(np.median(e)), 2),
        "p95_px": round(float(np.percentile(e, 95)), 2) if np.isfinite(np.percentile(e, 95)) else None,
        "max_finite_px": round(float(finite.max()), 2) if len(finite) else None,
        "under_2px": round(float(np.mean(e <= 2.0)), 3),
        "under_5px": round(float(np.mean(e <= 5.0)), 3),
    }


def run_cases(
    pool: Pairs, method: Method, *, cases: int, k: int, seed: int, d: np.ndarray,
    vis_size: tuple[int, int] = VIS, ir_sizes: Sequence[tuple[int, int]] = IR_SIZES,
    mode: str = "warp", label: str = "", refs: Callable[[set[int]], Pairs] | None = None,
    self_reference: bool = False,
) -> dict:
    """``cases`` rigs of ``k`` pairs from ``pool``; mode ``warp`` (the benchmark), ``same`` (IR made
    from the visible frame: geometry only) or ``unwarped`` (the pairs as registered, answer = I).
    ``refs``: the reference pairs for a case's region reference, given the pool indices it uses
    (``warp`` mode only). ``unwarped`` also records in how many cases the pairs' mutual information
    is higher with the estimate than with the dataset's registration (``estimate_mi_higher``).
    ``self_reference`` (``warp`` mode at the 640x480 visible size): per case also U, the estimate on
    the same pairs un-warped, and the errors against U @ H: the warp's recovery apart from the
    data's own registration, with the MI arbiter between U @ H and the dataset's answer."""
    rng = np.random.default_rng(seed)
    raw, corrected, seconds = [], [], []
    region, region_vs_d, mi_better = [], [], []
    vs_self, self_mi_better, estimate_mi_better = [], [], []
    for c in range(cases):
        ir_size = ir_sizes[c % len(ir_sizes)] if mode != "unwarped" else VIS
        idx = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
        h = random_homography(rng, ir_size, vis_size) if mode != "unwarped" else np.eye(3)
        pairs = []
        for i in idx:
            ir, vis = pool[i]
            if vis_size != VIS:
                ir = cv2.resize(ir, vis_size, interpolation=cv2.INTER_LINEAR)
                vis = cv2.resize(vis, vis_size, interpolation=cv2.INTER_LINEAR)
            source = vis if mode == "same" else ir
            pairs.append((make_ir(source, h, ir_size) if mode != "unwarped" else ir, vis))
        scale = vis_size[0] / VIS[0]
        truth = (np.diag([scale, scale, 1.0]) @ d @ np.diag([1 / scale, 1 / scale, 1.0]) if mode != "same"
                 else np.eye(3)) @ h
        t = time.perf_counter()
        try:
            est = method(pairs)
        except CalibrationError as err:
            print(f"  {label} case {c}: verdict {err.reason}: {err}", flush=True)
            est = None
        seconds.append(time.perf_counter() - t)
        raw.append(corner_error(est, h, ir_size) if est is not None else float("inf"))
        corrected.append(corner_error(est, truth, ir_size) if est is not None else float("inf"))
        if self_reference and mode == "warp" and vis_size == VIS:
            try:
                u_truth = method([pool[i] for i in idx]) @ h
            except CalibrationError:
                u_truth = None
            vs_self.append(corner_error(est, u_truth, ir_size) if est is not None and u_truth is not None
                           else float("inf"))
            if u_truth is not None:
                self_mi_better.append(footprint_mi(pairs, u_truth) > footprint_mi(pairs, truth))
        if mode == "unwarped" and est is not None:  # the arbiter: is the data's registration off?
            estimate_mi_better.append(footprint_mi(pairs, est) > footprint_mi(pairs, truth))
        if refs is not None and mode == "warp":
            r = region_reference(refs(set(idx.tolist())), h, ir_size, truth)
            region.append(corner_error(est, r, ir_size) if est is not None else float("inf"))
            region_vs_d.append(corner_error(r, truth, ir_size))
            mi_better.append(footprint_mi(pairs, r) > footprint_mi(pairs, truth))
        if c % 10 == 9:
            print(f"  {label} {c + 1}/{cases}: median {np.median(corrected):.2f} px", flush=True)
    out = {"vs_answer": stats(raw), "vs_D_answer": stats(corrected),
           "seconds_per_case": round(float(np.median(seconds)), 2),
           "errors_vs_D_answer": [round(float(x), 3) for x in corrected]}
    if vs_self:
        out["vs_self_reference"] = stats(vs_self)
        out["self_reference_mi_higher"] = round(float(np.mean(self_mi_better)), 3)
    if estimate_mi_better:
        out["estimate_mi_higher"] = round(float(np.mean(estimate_mi_better)), 3)
    if region:
        out["vs_region_reference"] = stats(region)
        out["region_reference_vs_D_answer"] = stats(region_vs_d)
        out["region_reference_mi_higher"] = round(float(np.mean(mi_better)), 3)
        out["errors_vs_region_reference"] = [round(float(x), 3) for x in region]
    return out


def score_check(pool: Pairs) -> dict:
    """``alignment_score`` on registered MSRS pairs, shifted copies and unrelated pairs; its time."""
    keys = ("aligned", "shift_5px", "shift_10px", "shift_20px", "unrelated")
    out: dict[str, list[float]] = {k: [] for k in keys}
    times = []
    for n, (ir, vis) in enumerate(pool):
        t = time.perf_counter()
        out["aligned"].append(alignment_score(ir, vis))
        times.append(time.perf_counter() - t)
        for d in (5, 10, 20):
            shifted = warp_to_visible(ir, np.array([[1, 0, d], [0, 1, 0], [0, 0, 1.0]]), VIS)
            out[f"shift_{d}px"].append(alignment_score(shifted, vis))
        out["unrelated"].append(alignment_score(pool[(n + 7) % len(pool)][0], vis))
    summary = {k: {"median": round(float(np.median(v)), 3), "p10": round(float(np.percentile(v, 10)), 3),
                   "p90": round(float(np.percentile(v, 90)), 3)} for k, v in out.items()}
    above = np.array(out["aligned"]) > np.array(out["shift_10px"])
    summary["aligned_above_shift_10px"] = round(float(np.mean(above)), 3)
    summary["pairs"] = len(pool)
    summary["ms_per_call_640x480_median"] = round(1000 * float(np.median(times)), 2)
    return summary


def table(rows: list[tuple[str, str, dict]]) -> str:
    head = (f"{'dataset':<10} {'method / setting':<34} {'cases':>5} {'median':>7} {'p95':>7} "
            f"{'<=2px':>6} {'verdicts':>8}")
    lines = [head, "-" * len(head)]
    for ds, name, s in rows:
        lines.append(f"{ds:<10} {name:<34} {s['cases']:>5} {s['median_px']:>7} {s['p95_px']!s:>7} "
                     f"{s['under_2px']:>6} {s['verdicts']:>8}")
    return "\n".join(lines)


PARTS = ("main", "candidates", "controls")


def candidates() -> dict[str, Method]:
    """The losing candidates, measured on the same cases as the shipped method."""
    return {
        "per-pair ECC + median": per_pair_ecc,
        "joint, no contrast normalisation": shipped(
            CalibrationOptions(joint=JointSettings(local_fraction=0.0))),
        "joint, homography at every level": shipped(
            CalibrationOptions(joint=JointSettings(motions=("homography",)))),
    }


def run_dataset(name: str, args: argparse.Namespace) -> dict:
    """Every part of ``args.parts`` for one dataset: {"entry", "candidates", "controls", "score", "rows"}
    (one process per dataset with ``--jobs``; nothing is shared between datasets)."""
    cv2.setNumThreads(1)
    (ev_folder, ev_split), ref = DATASETS[name]
    pool = load(ev_folder, ev_split)
    out: dict = {"entry": {"evaluation_pairs": len(pool), "folder": ev_folder, "split": ev_split},
                 "candidates": {}, "controls": {}, "score": {}, "rows": []}
    entry, rows = out["entry"], out["rows"]
    d = np.eye(3)
    if ref is not None:
        ref_pool = load(ref[0], ref[1], limit=args.ref_pairs)
        d, entry["reference_registration"] = reference_registration(ref_pool, pool)
        print(f"{name}: dataset registration D from {ref}: {entry['reference_registration']}", flush=True)
        refs = partial(other_split, ref_pool)
    else:
        refs = partial(rest_of_pool, pool, args.ref_pairs)
    seed = args.seed + 1000 * list(DATASETS).index(name)
    if "main" in args.parts:
        main = run_cases(pool, shipped(), cases=args.cases, k=args.pairs, seed=seed, d=d,
                         label=f"{name} shipped", refs=refs, self_reference=args.self_reference)
        entry["shipped"] = main
        rows.append((name, "shipped (joint), vs H", main["vs_answer"]))
        if ref is not None:
            rows.append((name, "shipped (joint), vs D@H", main["vs_D_answer"]))
        rows.append((name, "shipped (joint), vs region ref R", main["vs_region_reference"]))
        rows.append((name, "region ref R vs D@H (the data)", main["region_reference_vs_D_answer"]))
        if args.self_reference:
            rows.append((name, "shipped (joint), vs U@H", main["vs_self_reference"]))
            print(f"{name}: MI inside the footprint higher with U@H than with the dataset's answer in "
                  f"{main['self_reference_mi_higher']:.0%} of the cases", flush=True)
        print(f"{name}: MI inside the footprint higher with R than with D@H in "
              f"{main['region_reference_mi_higher']:.0%} of the cases", flush=True)
        if name == "msrs":
            out["score"] = score_check(pool)
    if "candidates" in args.parts and name in args.compare_datasets:
        for cname, method in {**candidates(), "shipped (same cases)": shipped()}.items():
            res = run_cases(pool, method, cases=args.compare_cases, k=args.pairs, seed=seed, d=d,
                            label=f"{name} {cname}")
            out["candidates"][cname] = res
            rows.append((name, cname, res["vs_D_answer"]))
    if "controls" in args.parts:
        controls = out["controls"]
        # the pairs as the dataset registers them: the estimate's scatter around D (I where there is
        # no D) with no warp at all, what the data allow
        res = run_cases(pool, shipped(), cases=args.control_cases, k=args.pairs, seed=seed + 1, d=d,
                        mode="unwarped", label=f"{name} unwarped")
        controls["unwarped pairs (data floor)"] = res
        answer = "D" if ref is not None else "I"
        rows.append((name, f"control: unwarped pairs vs {answer}", res["vs_D_answer"]))
        print(f"{name}: unwarped pairs: MI higher with the estimate than with {answer} in "
              f"{res.get('estimate_mi_higher', 0):.0%} of the cases", flush=True)
        if ref is not None:
            res = run_cases(pool, shipped(), cases=args.control_cases, k=args.pairs, seed=seed + 2, d=d,
                            vis_size=(1280, 960), ir_sizes=((640, 512),), label=f"{name} 1280x960")
            controls["visible 1280x960, IR 640x512"] = res
            rows.append((name, "1280x960 visible (px of 1280)", res["vs_D_answer"]))
        if name == "msrs":
            res = run_cases(pool, shipped(), cases=args.control_cases, k=args.pairs, seed=seed + 3, d=d,
                            mode="same", label="msrs same-modality")
            controls["IR made from the visible frame (geometry only)"] = res
            rows.append((name, "control: IR := visible", res["vs_answer"]))
            res = run_cases(pool, shipped(), cases=args.control_cases * 2, k=4, seed=seed + 4, d=d,
                            label="msrs 4 pairs")
            controls["4 pairs per case"] = res
            rows.append((name, "shipped, 4 pairs per case", res["vs_D_answer"]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                   help="all three (default), or some (main: the 100-case table and alignment_score): "
                        "the parts not run are carried over from the existing --out file, if any, and "
                        "listed in setup.carried_over")
    p.add_argument("--jobs", type=int, default=1, help="datasets measured in parallel (one process each)")
    p.add_argument("--cases", type=int, default=100, help="groups per dataset (default 100)")
    p.add_argument("--pairs", type=int, default=8, help="pairs per group, one rig (default 8)")
    p.add_argument("--compare-cases", type=int, default=30, help="groups per dataset, other candidates")
    p.add_argument("--compare-datasets", nargs="+", default=["msrs", "roadscene"], choices=list(DATASETS))
    p.add_argument("--control-cases", type=int, default=20, help="groups per control")
    p.add_argument("--self-reference", action="store_true",
                   help="main: per case also U, the estimate on the same pairs un-warped, and errors "
                        "against U @ H (about twice the time)")
    p.add_argument("--ref-pairs", type=int, default=40, help="pairs fitting D and R")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="5 cases of everything (smoke test, no JSON)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "calibration_cpu.json")
    args = p.parse_args(argv)
    if args.quick:
        args.cases = args.compare_cases = args.control_cases = 5
    t0 = time.perf_counter()
    setup = {"visible": list(VIS), "ir_sizes": [list(s) for s in IR_SIZES], "pairs_per_case": args.pairs,
             "cases": args.cases, "seed": args.seed, "python": platform.python_version(),
             "opencv": cv2.__version__, "error": "mean distance of the IR frame's 4 corners, visible pixels",
             "parts": list(args.parts)}
    result: dict = {"setup": setup, "datasets": {}, "candidates": {}, "controls": {}, "score": {}}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        outs = dict(zip(args.datasets, pool.map(run_dataset, args.datasets, [args] * len(args.datasets)),
                        strict=True))
    rows: list[tuple[str, str, dict]] = []
    for name, out in outs.items():
        result["datasets"][name] = out["entry"]
        for cname, res in out["candidates"].items():
            result["candidates"].setdefault(cname, {})[name] = res
        for cname, res in out["controls"].items():
            result["controls"].setdefault(cname, {})[name] = res
        result["score"] = out["score"] or result["score"]
        rows += out["rows"]
    result["setup"]["wall_s"] = round(time.perf_counter() - t0, 1)
    print()
    print(table(rows))
    if result["score"]:
        print("\nalignment_score on MSRS val:", result["score"])
    if not args.quick:
        result["table"] = [{"dataset": ds, "method": m, **s} for ds, m, s in rows]
        if set(args.parts) != set(PARTS):
            result["table"] += carry_over(result, args.out)
        write_result(args.out, result)
    return 0


def carry_over(result: dict, path: Path) -> list[dict]:
    """Copy the parts not run now (``result["setup"]["parts"]``) from the previous ``path``; their
    table rows."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    missing = [part for part in PARTS if part not in result["setup"]["parts"]]
    for part in missing:
        if part == "main":
            result["datasets"], result["score"] = old.get("datasets", {}), old.get("score", {})
        else:
            result[part] = old.get(part, {})
    result["setup"]["carried_over"] = {"parts": missing, "from": old.get("setup", {})}
    return [row for row in old.get("table", []) if row_part(row["method"]) in missing]


def row_part(method: str) -> str:
    """Which part wrote a table row, from its method label."""
    if method.startswith(("shipped (joint)", "region ref")):
        return "main"
    if method.startswith(("control:", "1280x960", "shipped, 4 pairs")):
        return "controls"
    return "candidates"


if __name__ == "__main__":
    raise SystemExit(main())
