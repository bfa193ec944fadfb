"""``fusion-perception calibrate`` end to end: a pair folder and a bag in, a params file and a report out.

The rig: the six shipped MSRS sample pairs at 320x240 (small, so the tests stay fast), their IR
re-sampled through a known homography into a 160x128 canvas. Tolerance 5 px at 320x240 (MSRS's own
registration is ~3 px off at 640x480; test_calibration.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_perception.assets import sample_pairs
from fusion_perception.bag.evaluate import load_params_file
from fusion_perception.bag.make import MakeOptions, make_bag
from fusion_perception.calibration.geometry import corner_error
from fusion_perception.calibration.synthetic import make_ir
from fusion_perception.cli import main as fusion_perception
from fusion_perception.preprocessing import to_gray
from fusion_perception.ros.params import settings_from_values

IR_SIZE, VIS_SIZE = (160, 128), (320, 240)
TRUTH = np.array([[1.55, 0.03, 38.0], [-0.025, 1.52, 22.0], [1e-5, 0.0, 1.0]])


@pytest.fixture(scope="module")
def rig_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rig")
    (root / "ir").mkdir()
    (root / "vi").mkdir()
    for pair in sample_pairs():
        ir = to_gray(cv2.imread(str(pair.ir), cv2.IMREAD_UNCHANGED))
        ir = cv2.resize(ir, VIS_SIZE, interpolation=cv2.INTER_AREA)
        vis = cv2.resize(cv2.imread(str(pair.visible)), VIS_SIZE, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "ir" / f"{pair.name}.png"), make_ir(ir, TRUTH, IR_SIZE))
        cv2.imwrite(str(root / "vi" / f"{pair.name}.png"), vis)
    return root


def _homography(yaml_path: Path) -> np.ndarray:
    values = load_params_file(yaml_path)  # the loader `bag evaluate --params-file` uses
    assert set(values) == {"homography"}
    settings = settings_from_values(values)  # the node's own validation
    return np.array(settings.homography, np.float64)


def test_pair_folder_to_yaml_and_report(rig_folder: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "rig.yaml", tmp_path / "report"
    args = ["calibrate", str(rig_folder), "--out", str(out), "--report", str(report)]
    assert fusion_perception(args) == 0
    assert "6 of 6 pairs used" in capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("# IR -> visible homography")
    assert "fusion_perception:\n  ros__parameters:\n" in text
    h = _homography(out)
    assert h[2, 2] == 1.0
    assert corner_error(h, TRUTH, IR_SIZE) < 5.0
    summary = json.loads((report / "report.json").read_text())
    assert np.allclose(np.reshape(summary["homography"], (3, 3)), h)
    assert summary["alignment_score"]["after"] > summary["alignment_score"]["before"]
    assert 0.3 < summary["overlap_fraction"] < 1.0 and len(summary["overlap_polygon"]) >= 4
    assert {p["name"] for p in summary["pairs"]} == {p.name for p in sample_pairs()}
    assert len(summary["pictures"]) == 3
    index = (report / "index.md").read_text()
    for picture in summary["pictures"]:
        for kind in ("checker_before", "checker_after", "blend_before", "blend_after"):
            assert (report / picture[kind]).is_file() and picture[kind] in index
            assert cv2.imread(str(report / picture[kind])).shape[:2] == (VIS_SIZE[1], VIS_SIZE[0])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_bag_with_mono16_ir_to_yaml(rig_folder: Path, tmp_path: Path) -> None:
    bag = tmp_path / "rig_bag"
    make_bag(rig_folder, bag, MakeOptions(ir_16bit=True, jitter_ms=3.0, labels_dir="",
                                          ir_topic="/thermal/image_raw", visible_topic="/camera/image_raw"))
    out, report = tmp_path / "h.yaml", tmp_path / "rep"
    rc = fusion_perception(["calibrate", str(bag), "--out", str(out), "--report", str(report),
                            "--ir-topic", "/thermal/image_raw", "--visible-topic", "/camera/image_raw"])
    assert rc == 0
    assert corner_error(_homography(out), TRUTH, IR_SIZE) < 5.0
    assert "source: bag" in out.read_text()
    assert json.loads((report / "report.json").read_text())["pairs_used"] == 6


def _flat_folder(root: Path, count: int) -> Path:
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir()
    for k in range(count):
        cv2.imwrite(str(root / "ir" / f"{k}.png"), np.full(IR_SIZE[::-1], 90, np.uint8))
        cv2.imwrite(str(root / "vi" / f"{k}.png"), np.full((*VIS_SIZE[::-1], 3), 120, np.uint8))
    return root


@pytest.mark.parametrize(("count", "reason"), [(4, "no_structure"), (2, "too_few_pairs")])
def test_verdict_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            count: int, reason: str) -> None:
    folder = _flat_folder(tmp_path / "flat", count)
    out, report = tmp_path / "h.yaml", tmp_path / "rep"
    assert fusion_perception(["calibrate", str(folder), "--out", str(out), "--report", str(report)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fusion-perception calibrate: cannot calibrate ({reason}):")
    assert not out.exists() and not report.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat"]


def test_existing_outputs_are_kept_unless_forced(rig_folder: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h.yaml"
    out.write_text("keep me\n")
    assert fusion_perception(["calibrate", str(rig_folder), "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert fusion_perception(["calibrate", str(tmp_path / "missing"), "--out", str(tmp_path / "x.yaml"),
                              "--report", str(tmp_path / "r")]) == 1
    assert "does not exist" in capsys.readouterr().err
