"""IR -> visible registration from a rig's own frames (``fusion-perception calibrate``).

The estimator, the alignment score and the synthetic rigs are NumPy + OpenCV only (the
preprocessing layer of docs/DESIGN.md "Layers": the node may import them); reading bags and
folders (``sources.py``) and the command (``cli.py``) belong to the CLI layer and are not
imported here. Method and measurements: docs/CALIBRATION.md.
"""

from .estimate import CalibrationOptions, CalibrationResult, PairResult, estimate_homography
from .score import alignment_score

__all__ = ["CalibrationOptions", "CalibrationResult", "PairResult", "alignment_score", "estimate_homography"]
