"""What the two cameras have in common: edges, not intensities.

A warm person is bright in IR and may be dark in the visible image; a painted lane marking is
sharp in the visible image and absent in IR. Intensities therefore do not correlate across the two
modalities, while the *places* where intensity changes (object outlines, horizons, poles, kerbs)
mostly coincide. The magnitude of the image gradient keeps those places and drops the sign of the
contrast, so a thermal edge and a visible edge of opposite polarity still match.

Two normalisations make the edge maps of the two cameras comparable:

* every frame is first brought to float [0, 1]: 8-bit by 1/255, 16-bit radiometric IR through the
  node's gain control (``preprocessing.thermal_to_unit``), so calibration sees what the node sees;
* the magnitude is divided by its local mean (``local_sigma``), so a dim part of a night-time
  visible frame contributes edges as much as a bright one (measured on the benchmark: docs/CALIBRATION.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ImageShapeError
from ..preprocessing import GainControl, thermal_to_unit, to_gray

__all__ = ["edge_map", "resize_to", "structure", "to_unit"]


def to_unit(image: np.ndarray, gain: GainControl | None = None) -> np.ndarray:
    """Any camera frame (uint8/uint16/float32, grey or BGR) as float32 HxW in [0, 1].

    16-bit frames (radiometric thermal, or a 16-bit visible camera) go through ``gain``.
    """
    gray = to_gray(image)
    if gray.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageShapeError(f"frames must be uint8, uint16 or float32, got {gray.dtype}")
    return thermal_to_unit(gray, gain)


def resize_to(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` resized by ``factor`` (area averaging when shrinking: no aliasing)."""
    if abs(factor - 1.0) < 1e-9:
        return image
    h, w = image.shape[:2]
    size = (max(8, round(w * factor)), max(8, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def edge_map(unit: np.ndarray, sigma: float = 1.0, local_sigma: float = 0.0) -> np.ndarray:
    """Gradient magnitude of a float [0, 1] frame, float32, same size.

    Args:
        sigma: Gaussian pre-smoothing in pixels (noise would otherwise dominate the magnitude).
        local_sigma: if > 0, divide the magnitude by its Gaussian local mean of this sigma
            (contrast normalisation; 0 = off).
    """
    img = cv2.GaussianBlur(unit, (0, 0), sigma) if sigma > 0 else unit
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    mag = cv2.magnitude(gx, gy)
    if local_sigma > 0:
        local = cv2.GaussianBlur(mag, (0, 0), local_sigma)
        mag = mag / (local + np.float32(0.01 * (float(mag.mean()) + 1e-6)) + np.float32(1e-4))
    return mag


def structure(unit: np.ndarray) -> float:
    """How much edge structure a frame has: the mean gradient magnitude of its 1/4-size copy after
    a 1-pixel blur, in intensity units per pixel (0 for a flat frame; a few 1e-3 for thermal noise).

    Measured on the 1/4 copy so that sensor noise (high frequency) counts little and scene edges
    (which survive down-sampling) count fully.
    """
    small = resize_to(unit, 0.25)
    return float(edge_map(small, sigma=1.0).mean())
