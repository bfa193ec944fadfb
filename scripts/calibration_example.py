"""The example of docs/CALIBRATION.md: a misaligned rig made from the shipped MSRS samples, calibrated.

Builds a pair folder whose IR frames (320x256) are the six shipped sample pairs' IR re-sampled
through a known homography (seed 3: IR footprint ~74 % of the visible width, rolled ~3 degrees,
off-centre), runs ``fusion-perception calibrate`` on it, prints the error against the known answer,
and copies three of the report's pictures, shrunk to 400 px wide, to docs/images/.

usage: .venv/bin/python scripts/calibration_example.py [WORK_FOLDER]   (default: a temporary one)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from fusion_perception.assets import sample_pairs
from fusion_perception.calibration.cli import main as calibrate
from fusion_perception.calibration.geometry import corner_error
from fusion_perception.calibration.synthetic import make_ir, random_homography
from fusion_perception.preprocessing import to_gray

REPO = Path(__file__).resolve().parents[1]
IR_SIZE, VIS_SIZE = (320, 256), (640, 480)
WIDTH = 400  # pictures in docs/images/
SHOWN = {"blend_before": "calibration_blend_before.png", "blend_after": "calibration_blend_after.png",
         "checker_after": "calibration_checker_after.png"}


def main(argv: list[str]) -> int:
    work = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="calibration_example_"))
    truth = random_homography(np.random.default_rng(3), IR_SIZE, VIS_SIZE)
    rig = work / "rig"
    (rig / "ir").mkdir(parents=True)
    (rig / "vi").mkdir()
    for pair in sample_pairs():
        ir = to_gray(cv2.imread(str(pair.ir), cv2.IMREAD_UNCHANGED))
        cv2.imwrite(str(rig / "ir" / f"{pair.name}.png"), make_ir(ir, truth, IR_SIZE))
        cv2.imwrite(str(rig / "vi" / f"{pair.name}.png"), cv2.imread(str(pair.visible)))
    report = work / "report"
    rc = calibrate([str(rig), "--out", str(work / "homography.yaml"), "--report", str(report),
                    "--shown", "1"])
    if rc:
        return rc
    summary = json.loads((report / "report.json").read_text())
    h = np.reshape(summary["homography"], (3, 3))
    print(f"corner error against the known answer: {corner_error(h, truth, IR_SIZE):.2f} px "
          "(MSRS's own registration is ~3 px off: docs/CALIBRATION.md)")
    picture = summary["pictures"][0]
    for key, name in SHOWN.items():
        image = cv2.imread(str(report / picture[key]))
        size = (WIDTH, round(image.shape[0] * WIDTH / image.shape[1]))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(REPO / "docs" / "images" / name), small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"wrote docs/images/{name} (pair {picture['name']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
