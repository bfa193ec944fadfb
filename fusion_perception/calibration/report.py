"""What ``calibrate`` writes: the node's parameter block and a report folder that shows the evidence.

* ``homography.yaml`` (any name): a ROS 2 params file for the node (``fusion_perception:
  ros__parameters: homography: [9 doubles]``), with comments saying where it came from, so a file
  found on a robot months later still tells which data and which version made it.
* the report folder: ``report.json`` (everything measured), ``index.md`` (the same for people,
  with the pictures), and per shown pair a checkerboard and a blend of the warped IR over the
  visible frame, before (size-based guess) and after. In the blend IR is magenta and visible
  green: where edges coincide they turn grey/white, a misalignment shows as coloured double edges.

Both appear only complete: the folder is written under a temporary name and renamed, the YAML
written to a temporary file and renamed (a verdict or a crash leaves nothing half-written).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import __version__
from ..preprocessing import GainControl, to_gray
from .estimate import CalibrationResult, warped_ir_u8

__all__ = ["blend", "checkerboard", "stretch", "write_report", "write_yaml", "yaml_text"]

SHOWN_WIDTH = 960  # pictures are shrunk to at most this width


def yaml_text(result: CalibrationResult, source: str) -> str:
    """The params file: provenance comments, then the ``fusion_perception`` node's homography."""
    values = ", ".join(f"{v:.10g}" for v in result.as_parameter())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    iw, ih = result.ir_size
    vw, vh = result.visible_size
    return (
        "# IR -> visible homography (maps IR pixel coordinates to visible pixel coordinates, row-major\n"
        "# 3x3, h33 = 1), estimated by `fusion-perception calibrate` (docs/CALIBRATION.md).\n"
        f"# source: {source}\n"
        f"# pairs used: {len(result.used)} of {len(result.pairs)}; IR {iw}x{ih}, visible {vw}x{vh}; "
        f"{now}; fusion_perception {__version__}\n"
        f"# alignment score (median over pairs): {result.score_before:.3f} before -> "
        f"{result.score_after:.3f} after; warped IR covers {100 * result.overlap:.1f}% of the visible frame\n"
        "# use: fusion_perception_node --ros-args --params-file config/fusion_perception.yaml "
        "--params-file <this file>\n"
        "fusion_perception:\n"
        "  ros__parameters:\n"
        f"    homography: [{values}]\n"
    )


def write_yaml(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _shrink(image: np.ndarray) -> np.ndarray:
    w = image.shape[1]
    if w <= SHOWN_WIDTH:
        return image
    f = SHOWN_WIDTH / w
    return cv2.resize(image, (SHOWN_WIDTH, round(image.shape[0] * f)), interpolation=cv2.INTER_AREA)


def stretch(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Contrast stretch for display: the 1st-99th percentile (inside ``mask``) to 0-255.

    A daytime thermal frame often spans a few dozen grey levels; unstretched it is a dark ghost
    in the blend and the eye cannot judge its edges.
    """
    values = image[mask] if mask is not None and mask.any() else image.ravel()
    lo, hi = np.percentile(values, (1, 99))
    out = (image.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0))
    out = np.clip(out, 0, 255).astype(np.uint8)
    if mask is not None:
        out[~mask] = 0
    return out


def checkerboard(ir8: np.ndarray, vis8: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternating square tiles of the warped IR and the visible frame (grey): edges must continue
    across tile borders when the two are aligned."""
    h, w = vis8.shape[:2]
    side = max(8, w // tiles)
    yy, xx = np.mgrid[0:h, 0:w]
    use_ir = ((yy // side) + (xx // side)) % 2 == 0
    return np.where(use_ir, ir8, vis8).astype(np.uint8)


def blend(ir8: np.ndarray, vis8: np.ndarray, polygon: np.ndarray | None = None) -> np.ndarray:
    """False colour: IR in magenta (red + blue), visible in green; optional overlap outline (yellow)."""
    out = cv2.merge((ir8, vis8, ir8))
    if polygon is not None and len(polygon) >= 3:
        cv2.polylines(out, [np.round(polygon).astype(np.int32)], True, (0, 255, 255), 2, cv2.LINE_AA)
    return out


def _pictures(folder: Path, k: int, ir: np.ndarray, vis: np.ndarray, result: CalibrationResult,
              gain: GainControl) -> dict[str, str]:
    vis8 = stretch(to_gray(vis))
    names = {}
    for label, h in (("before", result.start), ("after", result.homography)):
        ir8, valid = warped_ir_u8(ir, h, result.visible_size, gain)
        ir8 = stretch(ir8, valid)
        poly = result.overlap_polygon if label == "after" else None
        for kind, image in (("checker", checkerboard(ir8, vis8)), ("blend", blend(ir8, vis8, poly))):
            name = f"pair{k:02d}_{kind}_{label}.png"
            cv2.imwrite(str(folder / name), _shrink(image))
            names[f"{kind}_{label}"] = name
    return names


def _index_md(summary: dict[str, Any], shown: list[dict[str, Any]]) -> str:
    s = summary
    h = s["homography"]
    rows = [
        "# Calibration report", "",
        f"Source: {s['source']}  ",
        f"Written {s['written']} by fusion_perception {s['version']}.", "",
        "| | |", "|---|---|",
        f"| pairs used / read / in source | {s['pairs_used']} / {s['pairs_total']} / "
        f"{s['pairs_available']} |",
        f"| IR, visible size | {s['ir_size'][0]}x{s['ir_size'][1]}, "
        f"{s['visible_size'][0]}x{s['visible_size'][1]} |",
        f"| alignment score (median), before -> after | {s['alignment_score']['before']} -> "
        f"{s['alignment_score']['after']} |",
        f"| edge correlation of the joint fit | {s['edge_ncc']} |",
        f"| visible frame covered by the warped IR | {100 * s['overlap_fraction']:.1f} % |",
        f"| estimate time | {s['seconds']} s |", "",
        "Homography (IR pixel -> visible pixel):", "",
        "```",
        *(" ".join(f"{v:>14.6g}" for v in h[r * 3 : r * 3 + 3]) for r in range(3)),
        "```", "",
        "Alignment score: normalised correlation of edge maps at 1/4 size, 0 (no shared edges) to 1; "
        "'before' is the size-based guess (IR scaled to the visible width, centred). Deviation: the shift "
        "that would align the pair alone best, given the joint answer (visible pixels).", "",
        "| pair | name | status | score before | score after | deviation px |", "|---|---|---|---|---|---|",
    ]
    for p in s["pairs"]:
        rows.append(f"| {p['index']} | {p['name']} | {p['status']} | {p['score_before']} | "
                    f"{p['score_after']} | {p['deviation_px']} |")
    rows += ["", "Overlap polygon (visible pixels): "
             + ", ".join(f"({x:.0f}, {y:.0f})" for x, y in s["overlap_polygon"]), ""]
    for item in shown:
        rows += [f"## Pair {item['index']} ({item['name']})", "",
                 "| before | after |", "|---|---|",
                 f"| ![]({item['checker_before']}) | ![]({item['checker_after']}) |",
                 f"| ![]({item['blend_before']}) | ![]({item['blend_after']}) |", ""]
    rows += ["Blend: IR magenta, visible green, the overlap region outlined in yellow (after).", ""]
    return "\n".join(rows)


def write_report(
    folder: Path,
    result: CalibrationResult,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    names: Sequence[str],
    *,
    source: str,
    available: int,
    gain: GainControl | None = None,
    shown: int = 3,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the report folder (must not exist) atomically; returns the ``report.json`` content."""
    folder = Path(folder)
    gain = gain or GainControl()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        summary = {
            "source": source,
            "written": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": __version__,
            "pairs_available": available,
            **result.to_dict(),
            **(extra or {}),
        }
        for p in summary["pairs"]:
            p["name"] = names[p["index"]]
        used = sorted(result.used, key=lambda p: -(p.score_after or 0.0))[:shown]
        pictures = []
        for k, p in enumerate(sorted(used, key=lambda p: p.index)):
            ir, vis = pairs[p.index]
            pictures.append({"index": p.index, "name": names[p.index],
                             **_pictures(tmp, k, ir, vis, result, gain)})
        summary["pictures"] = pictures
        (tmp / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "index.md").write_text(_index_md(summary, pictures))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
