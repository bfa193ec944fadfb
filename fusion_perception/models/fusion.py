"""Guided fusion network: IR + visible Y -> fused Y.

The published fusion nets (BDLFusion: conv + dilated residual dense blocks, ~0.42 M parameters) run
every layer at full resolution, ~2 FPS at 640x480 on a 2-core CPU. Here the network predicts, at
1/``scale`` resolution (1/8 by default), a local affine model per pixel,

    fused = a * IR + b * VIS_Y + c,

whose coefficient maps are bilinearly upsampled and applied at full resolution (the guided
upsampling idea of HDRNet / deep guided filters: coefficients are smooth, edges come from the
full-resolution sources). A tiny full-resolution refinement adds back detail the smooth
coefficients cannot express. Dilated residual blocks give the low-resolution branch the context
(~200 px at full resolution) to decide which source carries the salient content.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GuidedFusionNet"]


class _DilatedResidual(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.PReLU(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class GuidedFusionNet(nn.Module):
    """IR and visible Y ([N,1,H,W] each, [0, 1]) -> fused Y [N,1,H,W] in [0, 1].

    Args:
        width: channels of the low-resolution branch.
        scale: downsampling factor of the low-resolution branch (H and W must be multiples).
        dilations: dilation of each residual block.
        refine_width: channels of the full-resolution refinement (0 disables it).
    """

    def __init__(
        self, width: int = 32, scale: int = 8, dilations: tuple[int, ...] = (1, 2, 4), refine_width: int = 4
    ) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(4, width, 3, padding=1), nn.PReLU(width))
        self.blocks = nn.Sequential(*(_DilatedResidual(width, d) for d in dilations))
        self.coeffs = nn.Conv2d(width, 3, 1)
        # Start as average fusion: a = b = 0.5, c = 0.
        nn.init.zeros_(self.coeffs.weight)
        with torch.no_grad():
            self.coeffs.bias.copy_(torch.tensor([0.5, 0.5, 0.0]))
        self.refine = (
            nn.Sequential(
                nn.Conv2d(3, refine_width, 3, padding=1), nn.ReLU(), nn.Conv2d(refine_width, 1, 3, padding=1)
            )
            if refine_width
            else None
        )
        if self.refine is not None:
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)

    def forward(self, ir: Tensor, vis_y: Tensor) -> Tensor:
        x = torch.cat((ir, vis_y), dim=1)
        low = F.avg_pool2d(x, self.scale)
        # Local contrast of each source tells the branch where detail lives.
        contrast = (low - F.avg_pool2d(low, 3, 1, 1)).abs()
        feats = self.blocks(self.head(torch.cat((low, contrast), dim=1)))
        a, b, c = F.interpolate(
            self.coeffs(feats), size=ir.shape[-2:], mode="bilinear", align_corners=False
        ).unbind(1)
        fused = a.unsqueeze(1) * ir + b.unsqueeze(1) * vis_y + c.unsqueeze(1)
        if self.refine is not None:
            fused = fused + self.refine(torch.cat((ir, vis_y, fused), dim=1))
        return fused.clamp(0.0, 1.0)
