"""Per-pixel discriminator (1x1 convolutions): the lower-level "realism" constraint of BDLFusion.

It scores each pixel of a fused image against a target image (the per-pixel max of the sources,
which carries both modalities' salient intensities); 1x1 kernels keep it a per-pixel intensity
critic that cannot push texture artefacts into the fused image.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PixelDiscriminator"]


class PixelDiscriminator(nn.Module):
    """[N,C,H,W] image in [0, 1] -> [N,1,H,W] realism logits."""

    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
