"""Task network over the fused image: an ImageNet-pretrained EfficientNet-Lite0 backbone (strides
4/8/16), a top-down feature pyramid, a segmentation head and an anchor-free detection head with an
IoU-aware classification score (Generalized Focal Loss, Li et al., NeurIPS 2020).

Why this shape (measured, docs/RESULTS.md):

* pretrained features are the largest lever on a CPU budget: the first from-scratch 77 k-parameter
  net reached mAP@0.5 0.07 after 1500 steps, a frozen pretrained backbone ~0.25 in 10 minutes;
* the task branch runs at 1/``task_scale`` of the network input (an average pool inside the
  graph), because EfficientNet-Lite0 to stride 16 costs ~0.96 GMAC at 640x480 and the whole
  pipeline must keep 30 FPS on two cores; boxes and strides are reported in network-input pixels,
  so decoders never see the internal scale;
* the detection head is shared across levels, so it normalises with GroupNorm (statistics per
  image, the same on every level and at batch size 1), not BatchNorm (FCOS/GFL practice);
* the class score is trained towards the IoU of the predicted box (quality focal loss), so one
  number ranks detections and NMS keeps the best-localised box; there is no centerness branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .efficientnet_lite import EfficientNetLite0
from .layers import ConvBNAct, SeparableBlock

__all__ = ["DetectionHead", "SegmentationHead", "TaskNet", "ycbcr_to_imagenet_rgb"]

#: OpenCV's full-range BT.601 YCrCb -> RGB, applied to (Y, Cb - 0.5, Cr - 0.5) in [0, 1] units.
_YCBCR_TO_RGB = ((1.0, 0.0, 1.403), (1.0, -0.344, -0.714), (1.0, 1.773, 0.0))


def ycbcr_to_imagenet_rgb(x: Tensor) -> Tensor:
    """[N,3,H,W] (Y, Cb, Cr) in [0, 1] -> RGB normalised as the ImageNet weights expect,
    (255·rgb − 127) / 128 (the EfficientNet-Lite TF recipe)."""
    m = torch.tensor(_YCBCR_TO_RGB, dtype=x.dtype, device=x.device)
    offset = torch.tensor((0.0, 0.5, 0.5), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    rgb = torch.einsum("ij,njhw->nihw", m, x - offset)
    return (rgb * 255.0 - 127.0) / 128.0


class SegmentationHead(nn.Module):
    """Pyramid feature at stride 4 (of the task input) -> class logits at that stride."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.mix = SeparableBlock(width, width)
        self.classify = nn.Conv2d(width, num_classes, 1)

    def forward(self, p4: Tensor) -> Tensor:
        return self.classify(self.mix(p4))


class _SepGN(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1 + GroupNorm + ReLU: one tower layer of the shared head."""

    def __init__(self, width: int, groups: int) -> None:
        super().__init__(
            nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False),
            nn.Conv2d(width, width, 1, bias=False),
            nn.GroupNorm(groups, width),
            nn.ReLU(inplace=True),
        )


class DetectionHead(nn.Module):
    """Shared head over pyramid levels; returns [N, A, 4 + K]: l, t, r, b in input pixels, K logits.

    Args:
        width: channels of the pyramid features.
        num_classes: K.
        strides: level strides in task-input pixels.
        depth: tower layers.
        groups: GroupNorm groups.
    """

    def __init__(
        self, width: int, num_classes: int, strides: tuple[int, ...], depth: int = 2, groups: int = 16
    ) -> None:
        super().__init__()
        self.strides = strides
        self.tower = nn.Sequential(*(_SepGN(width, groups) for _ in range(depth)))
        self.box = nn.Conv2d(width, 4, 1)
        self.cls = nn.Conv2d(width, num_classes, 1)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.constant_(self.cls.bias, -4.6)  # prior 1% foreground: a stable focal-loss start
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.zeros_(self.box.bias)
        self.log_scales = nn.Parameter(torch.zeros(len(strides)))

    def forward(self, levels: tuple[Tensor, ...], out_scale: float = 1.0) -> Tensor:
        outs = []
        for i, (p, s) in enumerate(zip(levels, self.strides, strict=True)):
            t = self.tower(p)
            # exp keeps distances positive; the clamp stops a diverging step from producing inf.
            ltrb = torch.exp((self.box(t) + self.log_scales[i]).clamp(max=8.0)) * (s * out_scale)
            outs.append(torch.cat((ltrb, self.cls(t)), dim=1).flatten(2).transpose(1, 2))
        return torch.cat(outs, dim=1)


class TaskNet(nn.Module):
    """Task image [N,3,H,W] (Y, Cb, Cr in [0, 1]) -> (seg logits at ``seg_stride``, detections).

    Args:
        num_seg_classes, num_det_classes: output classes.
        task_scale: the branch runs on the input average-pooled by this factor (1 or 2).
        width: channels of the pyramid and heads.
        det_levels: pyramid strides (of the task input) the detection head reads, a subset of
            4, 8, 16. Adding 4 gives small objects (distant persons) a finer grid for the cost of
            the head on the stride-4 feature the segmentation head computes anyway.
        pretrained: load the ImageNet weights into the backbone (training start only; checkpoints
            carry all weights).
    """

    def __init__(
        self,
        num_seg_classes: int = 9,
        num_det_classes: int = 3,
        task_scale: int = 2,
        width: int = 64,
        det_levels: tuple[int, ...] = (8, 16),
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if task_scale not in (1, 2):
            raise ValueError(f"task_scale must be 1 or 2, got {task_scale}")
        det_levels = tuple(int(s) for s in det_levels)
        if not det_levels or list(det_levels) != sorted(set(det_levels)) or not set(det_levels) <= {4, 8, 16}:
            raise ValueError(f"det_levels must be increasing strides from 4, 8, 16, got {det_levels}")
        self.task_scale = task_scale
        self.backbone = EfficientNetLite0()
        if pretrained:
            self.backbone.load_imagenet()
        w4, w8, w16 = self.backbone.widths
        self.lat4, self.lat8, self.lat16 = (
            ConvBNAct(w4, width, 1),
            ConvBNAct(w8, width, 1),
            ConvBNAct(w16, width, 1),
        )
        self.smooth8 = SeparableBlock(width, width)
        self.seg = SegmentationHead(width, num_seg_classes)
        self.det = DetectionHead(width, num_det_classes, strides=det_levels)

    @property
    def det_strides(self) -> tuple[int, ...]:
        """Detection strides in network-input pixels (what the decoder lays anchor points on)."""
        return tuple(s * self.task_scale for s in self.det.strides)

    @property
    def seg_stride(self) -> int:
        return 4 * self.task_scale

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pyramid features at strides 4, 8, 16 of the task input."""
        if self.task_scale > 1:
            x = F.avg_pool2d(x, self.task_scale)
        c4, c8, c16 = self.backbone(ycbcr_to_imagenet_rgb(x))
        p16 = self.lat16(c16)
        p8 = self.smooth8(self.lat8(c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest"))
        p4 = self.lat4(c4) + F.interpolate(p8, size=c4.shape[-2:], mode="bilinear", align_corners=False)
        return p4, p8, p16

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p4, p8, p16 = self.forward_features(x)
        pyramid = {4: p4, 8: p8, 16: p16}
        levels = tuple(pyramid[s] for s in self.det.strides)
        return self.seg(p4), self.det(levels, out_scale=float(self.task_scale))
