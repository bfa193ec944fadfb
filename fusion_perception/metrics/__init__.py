"""Quality metrics for fusion, detection and segmentation (torch-free: NumPy, SciPy, OpenCV,
scikit-image, pycocotools), shared by training evaluation and the bag evaluator.

Definitions, scales and the sum-versus-mean choices are in docs/METRICS.md.
"""

from .detection import DetectionEvaluator, load_yolo_labels
from .fusion import FUSION_METRICS, fusion_metrics
from .segmentation import SegmentationEvaluator

__all__ = [
    "FUSION_METRICS",
    "DetectionEvaluator",
    "SegmentationEvaluator",
    "fusion_metrics",
    "load_yolo_labels",
]
