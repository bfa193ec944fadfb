"""Training-time augmentation of labelled pairs: scale jitter and photometric jitter.

MSRS gives 270 labelled training pairs from one rig, so the task net sees every person at the
handful of sizes and brightnesses those frames hold. Two cheap augmentations widen that without
new labels (both off by default; ``data.scale_jitter`` and ``data.photometric`` switch them on):

* **scale jitter** resizes the whole sample (every image, the segmentation map and the boxes) by a
  factor drawn uniformly from [1 - j, 1 + j] before the crop, padding up to the crop size when it
  shrinks (images with 0, segmentation with the ignore index): distant persons a few cells tall and
  near cars larger than the frame both appear;
* **photometric jitter** applies an independent gain and offset to the IR image, the visible
  luminance and the cached fused image, as automatic gain control does differently on each camera;
  chroma is left alone so colours keep their meaning.

Both run on the cached tensors of :class:`~fusion_perception.training.data.PairFolder` (values in
[0, 1]), so the deployed preprocessing (``preprocessing.prepare_pair``) stays the only path from
camera pixels to network input.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .data import IGNORE_INDEX, Sample

__all__ = ["Augment"]

#: boxes shorter or narrower than this (pixels) after a downscale are dropped: nothing to learn from
_MIN_BOX_PX = 2.0


@dataclass(frozen=True)
class Augment:
    """Scale and photometric jitter of one sample.

    Args:
        scale_jitter: j; the resize factor is uniform in [1 - j, 1 + j] (0 = off).
        photometric: s; gain uniform in [1 - s, 1 + s] and offset in [-s/2, s/2] per image (0 = off).
        min_size: (width, height) the sample is padded up to after a downscale (the crop size).
    """

    scale_jitter: float
    photometric: float
    min_size: tuple[int, int]

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale_jitter < 1.0 or not 0.0 <= self.photometric < 1.0:
            raise ValueError(
                "scale_jitter and photometric must lie in [0, 1), "
                f"got {self.scale_jitter}, {self.photometric}"
            )

    @property
    def active(self) -> bool:
        return self.scale_jitter > 0.0 or self.photometric > 0.0

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if self.scale_jitter > 0.0:
            factor = float(rng.uniform(1.0 - self.scale_jitter, 1.0 + self.scale_jitter))
            sample = rescale(sample, factor, self.min_size)
        if self.photometric > 0.0:
            sample = self._photometric(sample, rng)
        return sample

    def _photometric(self, sample: Sample, rng: np.random.Generator) -> Sample:
        s = self.photometric

        def jitter(image: torch.Tensor) -> torch.Tensor:
            gain, offset = rng.uniform(1.0 - s, 1.0 + s), rng.uniform(-s / 2, s / 2)
            return (image * gain + offset).clamp(0.0, 1.0)

        visible = torch.cat((jitter(sample.visible[:1]), sample.visible[1:]))
        fused = None if sample.fused is None else jitter(sample.fused)
        return replace(sample, ir=jitter(sample.ir), visible=visible, fused=fused)


def rescale(sample: Sample, factor: float, min_size: tuple[int, int]) -> Sample:
    """``sample`` resized by ``factor`` (images bilinear, segmentation nearest, boxes scaled), then
    padded right and bottom up to ``min_size`` (width, height) where it became smaller."""
    _, h, w = sample.ir.shape
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    pad = (0, max(0, min_size[0] - nw), 0, max(0, min_size[1] - nh))

    def image(t: torch.Tensor, chroma: bool = False) -> torch.Tensor:
        out = F.interpolate(t[None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[0]
        out = F.pad(out, pad)
        if chroma:  # the visible image's Cb, Cr: pad with neutral grey (0.5), not a saturated colour
            out[1:, nh:, :] = 0.5
            out[1:, :, nw:] = 0.5
        return out

    seg = F.interpolate(sample.seg[None, None].float(), size=(nh, nw), mode="nearest")[0, 0]
    seg = F.pad(seg, pad, value=float(IGNORE_INDEX)).long()
    boxes = sample.boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=sample.boxes.dtype)
    weights = sample.weights if sample.weights is not None else torch.ones(len(sample.classes))
    keep = ((boxes[:, 2] - boxes[:, 0]) >= _MIN_BOX_PX) & ((boxes[:, 3] - boxes[:, 1]) >= _MIN_BOX_PX)
    return replace(
        sample,
        ir=image(sample.ir),
        visible=image(sample.visible, chroma=True),
        fused=None if sample.fused is None else image(sample.fused),
        seg=seg,
        boxes=boxes[keep],
        classes=sample.classes[keep],
        weights=weights[keep],
    )
