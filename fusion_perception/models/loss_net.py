"""Loss net G of the learnable-loss schemes: two sources -> per-pixel weights of the fusion loss.

TDFusion (Bai et al., CVPR 2025, "Task-driven image fusion with learnable fusion loss") and ReFusion
(Bai et al., IJCV 2024, "ReFusion: Learning image fusion from reconstruction with learnable loss via
meta-learning") replace the hand-set pixel weights of the fusion loss by the output of a small
network trained by meta-learning (``training/meta.py``). TDFusion's released loss net is a two-stream
Restormer that outputs a softmax over 2 channels weighting the intensity term only. This one differs
on purpose:

* **Two shares per pixel**: one for the intensity term, one for the gradient term, each a softmax
  over the two sources. The gradient term is where a hand-set "max" rule most often picks noise.
* **Bounded**: share = eps + (1 − 2·eps)·softmax, so every share lies in [eps, 1 − eps] and the two
  sum to 1. No source can be switched off everywhere, and the weighted loss stays
  ≥ eps·(its value with equal weights), so G cannot drive L_f to zero.
* **Swap-equivariant by construction**: one shared scorer rates each source given the other,
  score_i = s(x_i, x_j), so G(b, a) is exactly G(a, b) with the sources swapped. TDFusion obtains
  this only approximately, by feeding swapped pairs as augmentation; here that augmentation still
  matters for the fusion net (which is not symmetric) but G needs no data to learn it. G tells the
  modalities apart from content (IR statistics differ), which is also what lets one G serve
  multi-focus or multi-exposure pairs, where order means nothing (ReFusion).
* **Reduced resolution**: scores at 1/``scale`` (adaptive average pool, any input size), shares
  upsampled bilinearly. Bilinear upsampling is a convex combination of neighbours, so the bounds
  and the sum-to-one survive it exactly. The weights are smooth maps; full resolution buys nothing.
* **Near-neutral start**: the output layer starts near zero (std 1e-2, bias 0), so every share is
  0.5 to within ~0.01 (the hand-set equal-weight loss) and meta-learning departs from a known loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ImageShapeError

__all__ = ["LossNet", "LossWeights"]


class LossWeights(NamedTuple):
    """Per-pixel shares of G. Channel 0 belongs to G's first input (IR), channel 1 to the second.

    Attributes:
        intensity: [N,2,H,W], each entry in [eps, 1 − eps], summing to 1 over dim 1.
        gradient: [N,2,H,W], same bounds.
    """

    intensity: Tensor
    gradient: Tensor

    def swapped(self) -> LossWeights:
        """The shares with the two sources exchanged (what G returns for the swapped pair)."""
        return LossWeights(self.intensity.flip(1), self.gradient.flip(1))


class LossNet(nn.Module):
    """G: (IR, visible Y) [N,1,H,W] each in [0, 1] -> ``LossWeights`` at full resolution.

    Args:
        width: channels of the scorer.
        scale: scores are computed at 1/scale resolution.
        dilations: dilation of each 3x3 layer after the first (context ~ scale·(1 + 2·Σd) pixels).
        eps: lower bound of every share; must be in (0, 0.5).

    >>> g = LossNet(width=8)
    >>> w = g(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    >>> tuple(w.intensity.shape), round(float(w.intensity.sum(1).mean()), 6)
    ((1, 2, 32, 32), 1.0)
    """

    def __init__(
        self, width: int = 16, scale: int = 4, dilations: tuple[int, ...] = (2, 4), eps: float = 0.05
    ) -> None:
        super().__init__()
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.scale = scale
        self.eps = eps
        layers: list[nn.Module] = [nn.Conv2d(4, width, 3, padding=1), nn.PReLU(width)]
        for d in dilations:
            layers += [nn.Conv2d(width, width, 3, padding=d, dilation=d), nn.PReLU(width)]
        self.features = nn.Sequential(*layers)
        self.score = nn.Conv2d(width, 2, 1)  # channel 0: intensity score, 1: gradient score
        # Near-neutral start: small, not zero, weights, so every layer gets a meta-gradient from
        # the first step (a zero output layer would leave the trunk without one until it grew).
        nn.init.normal_(self.score.weight, std=1e-2)
        nn.init.zeros_(self.score.bias)

    def _scores(self, own: Tensor, other: Tensor, size: tuple[int, int]) -> Tensor:
        """Scores [N,2,h,w] of ``own`` given ``other``: the shared half of the siamese scorer."""
        # Local detail |x − mean3x3(x)| at full resolution, pooled: edge energy the pooled image lost.
        detail = (own - F.avg_pool2d(own, 3, 1, 1, count_include_pad=False)).abs()
        detail_o = (other - F.avg_pool2d(other, 3, 1, 1, count_include_pad=False)).abs()
        x = F.adaptive_avg_pool2d(torch.cat((own, other, detail, detail_o), dim=1), size)
        return self.score(self.features(x))

    def forward(self, ir: Tensor, vis_y: Tensor) -> LossWeights:
        if ir.dim() != 4 or ir.shape[1] != 1 or ir.shape != vis_y.shape:
            raise ImageShapeError(
                f"LossNet expects two [N,1,H,W] images of one shape, got {tuple(ir.shape)} and "
                f"{tuple(vis_y.shape)}"
            )
        h, w = ir.shape[-2:]
        low = (-(-h // self.scale), -(-w // self.scale))
        n = ir.shape[0]
        # Both sources through the one scorer in a single batch: [s(ir, vis); s(vis, ir)].
        scores = self._scores(torch.cat((ir, vis_y)), torch.cat((vis_y, ir)), low)
        s_ir, s_vis = scores[:n], scores[n:]
        shares = torch.softmax(torch.stack((s_ir, s_vis), dim=1), dim=1)  # [N, source, term, h, w]
        shares = self.eps + (1.0 - 2.0 * self.eps) * shares
        full = F.interpolate(shares.flatten(1, 2), size=(h, w), mode="bilinear", align_corners=False)
        full = full.unflatten(1, (2, 2))
        return LossWeights(intensity=full[:, :, 0], gradient=full[:, :, 1])
