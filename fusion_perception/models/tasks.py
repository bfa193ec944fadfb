"""Task network over the fused image: a light shared backbone, a segmentation head and an
anchor-free detection head (FCOS-style: per-cell class logits, centerness and l/t/r/b distances).

The seeds trained SegFormer-b0 / YOLOv8-n (TDFusion) or FCOS with a ResNet-50 (BDLFusion); those
cost 10-100x more than a camera-rate CPU budget allows, and need pre-training we cannot ship. This
backbone is MobileNet-like (depthwise-separable blocks, strides 4/8/16), trained from scratch on a
few hundred pairs. ``forward_features`` / heads are separate so both heads share one backbone pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ConvBNAct, SeparableBlock

__all__ = ["DetectionHead", "SegmentationHead", "TaskNet"]


class Backbone(nn.Module):
    """3-channel fused image -> features at strides 4, 8 and 16."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 96)) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = ConvBNAct(3, w0, 3, 2)
        self.stage4 = nn.Sequential(SeparableBlock(w0, w1, 2), SeparableBlock(w1, w1))
        self.stage8 = nn.Sequential(SeparableBlock(w1, w2, 2), SeparableBlock(w2, w2), SeparableBlock(w2, w2))
        self.stage16 = nn.Sequential(
            SeparableBlock(w2, w3, 2), SeparableBlock(w3, w3), SeparableBlock(w3, w3)
        )
        self.widths = (w1, w2, w3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c4 = self.stage4(self.stem(x))
        c8 = self.stage8(c4)
        c16 = self.stage16(c8)
        return c4, c8, c16


class SegmentationHead(nn.Module):
    """Features at strides 4/8/16 -> class logits at stride 4."""

    def __init__(self, widths: tuple[int, int, int], num_classes: int, width: int = 48) -> None:
        super().__init__()
        self.lat4, self.lat8, self.lat16 = (ConvBNAct(w, width, 1) for w in widths)
        self.mix = SeparableBlock(width, width)
        self.classify = nn.Conv2d(width, num_classes, 1)

    def forward(self, c4: Tensor, c8: Tensor, c16: Tensor) -> Tensor:
        size = c4.shape[-2:]
        x = self.lat4(c4) + F.interpolate(self.lat8(c8), size=size, mode="bilinear", align_corners=False)
        x = x + F.interpolate(self.lat16(c16), size=size, mode="bilinear", align_corners=False)
        return self.classify(self.mix(x))


class DetectionHead(nn.Module):
    """Shared head over strides 8 and 16; returns [N, A, 5 + K] (ltrb px, centerness, classes)."""

    strides = (8, 16)

    def __init__(self, widths: tuple[int, int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.lat8 = ConvBNAct(widths[0], width, 1)
        self.lat16 = ConvBNAct(widths[1], width, 1)
        self.tower = nn.Sequential(SeparableBlock(width, width), SeparableBlock(width, width))
        self.box = nn.Conv2d(width, 4, 1)
        self.centerness = nn.Conv2d(width, 1, 1)
        self.cls = nn.Conv2d(width, num_classes, 1)
        nn.init.constant_(self.cls.bias, -4.6)  # prior 1% foreground: stable focal-loss start
        self.log_scales = nn.Parameter(torch.zeros(len(self.strides)))

    def forward(self, c8: Tensor, c16: Tensor) -> Tensor:
        p16 = self.lat16(c16)
        p8 = self.lat8(c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest")
        levels = []
        for i, (p, s) in enumerate(zip((p8, p16), self.strides, strict=True)):
            t = self.tower(p)
            ltrb = torch.exp((self.box(t) + self.log_scales[i]).clamp(max=8.0)) * s
            out = torch.cat((ltrb, self.centerness(t), self.cls(t)), dim=1)
            levels.append(out.flatten(2).transpose(1, 2))
        return torch.cat(levels, dim=1)


class TaskNet(nn.Module):
    """Fused image (3 channels: fused Y, visible Cb, Cr in [0, 1]) -> (seg logits, raw detections)."""

    def __init__(self, num_seg_classes: int = 9, num_det_classes: int = 3) -> None:
        super().__init__()
        self.backbone = Backbone()
        w4, w8, w16 = self.backbone.widths
        self.seg = SegmentationHead((w4, w8, w16), num_seg_classes)
        self.det = DetectionHead((w8, w16), num_det_classes)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.backbone(x - 0.5)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c4, c8, c16 = self.forward_features(x)
        return self.seg(c4, c8, c16), self.det(c8, c16)
