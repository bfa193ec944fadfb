"""Source reconstruction net of ReFusion (Bai et al., IJCV 2024, "ReFusion: Learning image fusion
from reconstruction with learnable loss via meta-learning"): fused Y -> (IR, visible Y).

How well both sources can be recovered from the fused image is ReFusion's label-free measure of
how much of each source the fused image kept; the loss net G is meta-trained to minimise it. The
net only has to be good enough to tell "this detail is in the fused image" from "it is lost", so it
is small: a trunk at half resolution for context, and two full-resolution heads that see the fused
image itself for detail. Each head predicts a residual on the fused image and starts at zero, so
the untrained net returns the fused image for both sources.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ImageShapeError

__all__ = ["ReconstructionNet"]


class ReconstructionNet(nn.Module):
    """Fused Y [N,1,H,W] in [0, 1] -> (IR estimate, visible-Y estimate), each [N,1,H,W].

    Outputs are not clamped (a clamp would stop gradients where the estimate overshoots).

    Args:
        width: channels of the trunk.
        dilations: dilation of each 3x3 trunk layer at half resolution.
    """

    def __init__(self, width: int = 16, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, stride=2, padding=1), nn.PReLU(width)]
        for d in dilations:
            layers += [nn.Conv2d(width, width, 3, padding=d, dilation=d), nn.PReLU(width)]
        self.trunk = nn.Sequential(*layers)
        self.head_ir = nn.Conv2d(width + 1, 1, 3, padding=1)
        self.head_vis = nn.Conv2d(width + 1, 1, 3, padding=1)
        for head in (self.head_ir, self.head_vis):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, fused: Tensor) -> tuple[Tensor, Tensor]:
        if fused.dim() != 4 or fused.shape[1] != 1:
            raise ImageShapeError(f"ReconstructionNet expects [N,1,H,W], got {tuple(fused.shape)}")
        feats = F.interpolate(self.trunk(fused), size=fused.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat((feats, fused), dim=1)
        return fused + self.head_ir(x), fused + self.head_vis(x)
