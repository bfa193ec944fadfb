"""The report folder of ``bag evaluate``: plots, sample frames and an ``index.md`` tying them together.

matplotlib runs on the Agg backend (no display on robots or CI); sample frames are composed with
OpenCV: IR | visible on top, fused with detections | segmentation overlay below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..runtime.postprocess import Detections, draw_detections

__all__ = ["Sample", "write_report"]


@dataclass(frozen=True)
class Sample:
    """One pair kept for the report (arrays at source size; IR already 8-bit grey)."""

    stamp_ns: int
    ir8: np.ndarray
    visible: np.ndarray
    fused_bgr: np.ndarray
    overlay_bgr: np.ndarray
    detections: Detections


def _bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def _sample_png(sample: Sample, names: tuple[str, ...], path: Path) -> None:
    top = cv2.hconcat([_bgr(sample.ir8), _bgr(sample.visible)])
    bottom = cv2.hconcat([draw_detections(sample.fused_bgr, sample.detections, names), sample.overlay_bgr])
    cv2.imwrite(str(path), cv2.vconcat([top, bottom]))


def _latency_plot(summary: dict[str, Any], path: Path) -> None:
    totals = [r["latency_ms"]["total"] for r in summary["frames"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(totals, bins=min(50, max(5, len(totals) // 2)), color="#4477aa")
    for name, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        value = summary["latency_ms"]["total"][name]
        ax.axvline(value, color="k", linestyle=style, label=f"{name} {value:.1f} ms")
    ax.set_xlabel("pipeline latency per pair [ms]")
    ax.set_ylabel("pairs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _metrics_plot(summary: dict[str, Any], path: Path) -> bool:
    rows = [r for r in summary["frames"] if "metrics" in r]
    if not rows:
        return False
    names = list(rows[0]["metrics"])
    t0 = summary["frames"][0]["stamp_ns"]
    t = [(r["stamp_ns"] - t0) / 1e9 for r in rows]
    cols = 3
    fig, axes = plt.subplots(
        (len(names) + cols - 1) // cols, cols, figsize=(10, 2.2 * ((len(names) + 2) // 3)), squeeze=False
    )
    for ax, name in zip(axes.ravel(), names, strict=False):
        ax.plot(t, [r["metrics"][name] for r in rows], marker=".", linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.supxlabel("bag time [s]", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| quantity | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def write_report(
    summary: dict[str, Any], samples: list[Sample], folder: Path, *, class_names: tuple[str, ...] = ()
) -> None:
    """Write ``latency.png``, ``metrics.png``, ``samples/*.png`` and ``index.md`` into ``folder``."""
    folder = Path(folder)
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    _latency_plot(summary, folder / "latency.png")
    has_metrics = _metrics_plot(summary, folder / "metrics.png")
    sample_files = []
    for i, sample in enumerate(samples):
        name = f"samples/pair_{i:02d}_{sample.stamp_ns}.png"
        _sample_png(sample, class_names, folder / name)
        sample_files.append((sample.stamp_ns, name))
    pairing, lat, tp = summary["pairing"], summary["latency_ms"]["total"], summary["throughput"]
    lines = [
        f"# Bag evaluation: `{summary['bag']}`",
        "",
        f"Model `{summary['model']}` on {summary['backend']}.",
        "",
    ]
    lines += _table(
        [
            ("pairs evaluated", str(tp["pairs"])),
            ("throughput (metrics excluded)", f"{tp['pairs_per_s']:.2f} pairs/s"),
            ("latency p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms"),
            (
                "frames received (IR / visible)",
                f"{pairing['received']['ir']} / {pairing['received']['visible']}",
            ),
            ("dropped (IR / visible)", f"{pairing['dropped']['ir']} / {pairing['dropped']['visible']}"),
            (
                "slop; max / mean abs skew",
                f"{pairing['slop_ms']:g} ms; {pairing['max_abs_skew_ms']:.2f} / "
                f"{pairing['mean_abs_skew_ms']:.2f} ms",
            ),
        ]
    )
    if summary["fusion_metrics"]["frames"]:
        mean, std = summary["fusion_metrics"]["mean"], summary["fusion_metrics"]["std"]
        lines += ["", f"## Fusion metrics (mean ± std over {summary['fusion_metrics']['frames']} pairs)", ""]
        lines += [
            "| " + " | ".join(mean) + " |",
            "|" + "---|" * len(mean),
            "| " + " | ".join(f"{mean[n]:.3f} ± {std[n]:.3f}" for n in mean) + " |",
        ]
    det = summary.get("detection")
    if det:
        lines += [
            "",
            f"## Detection ({det['num_images']} labelled pairs)",
            "",
            f"mAP@0.5 = {det['mAP50']:.4f}, mAP@0.5:0.95 = {det['mAP50_95']:.4f}",
        ]
    lines += ["", "## Latency", "", "![latency histogram](latency.png)"]
    if has_metrics:
        lines += ["", "## Metrics over time", "", "![fusion metrics over time](metrics.png)"]
    lines += [
        "",
        "## Sample pairs",
        "",
        "Top: IR (as the network sees it) | visible. Bottom: fused with detections | segmentation overlay.",
        "",
    ]
    lines += [f"### stamp {stamp}\n\n![pair {stamp}]({name})\n" for stamp, name in sample_files]
    (folder / "index.md").write_text("\n".join(lines) + "\n")
