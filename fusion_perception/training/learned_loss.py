"""The learned fusion loss L_f(F; G) of TDFusion and ReFusion, and ReFusion's reconstruction objective.

The hand-set loss (``losses.fusion_loss``) pulls the fused image F towards one fixed target (max of
the sources, max of their gradients). Here the loss net G chooses, per pixel, how much each source
counts (``models/loss_net.py``); with shares w_s, w'_s ∈ [eps, 1 − eps] summing to 1 over the
sources s ∈ {IR, VIS}:

    L_f = λ_int · mean_p Σ_s w_s(p) · ρ(F(p) − S(p))
        + λ_grad · mean_p Σ_s w'_s(p) · |∇F(p) − ∇S(p)|
        + λ_ssim · (1 − ½ (SSIM(F, IR) + SSIM(F, VIS))),

with ∇ the Sobel magnitude (``losses.sobel_magnitude``), ρ(r) = r² (``l2``) or |r| (``l1``), and
the λ from ``LossConfig``, the same weights the hand-set loss uses.

Why these forms:

* ``l2`` intensity: the per-pixel minimiser is the blend Σ_s w_s·S, so G's intensity share *is* the
  target image's mixing map, and the optimum moves smoothly with G (a well-conditioned
  meta-gradient). TDFusion's ``Fusionloss_int`` is MSE(w_A·(A − F)) + MSE(w_B·(B − F)), i.e.
  weights squared: its blend ratio is w_A² / (w_A² + w_B²) and the total weight w_A² + w_B²
  varies per pixel. Used linearly, the share *is* the blend ratio and every pixel counts the
  same; the set of reachable blends is the same.
* ``l1`` gradient: the minimiser of Σ_s w'_s·|g − g_s| is the gradient of the source with the larger
  share (a weighted median), so G can express the hand-set "keep the stronger edge" rule exactly,
  or overrule it where that edge is noise. TDFusion leaves its gradient term unweighted (signed
  Sobel x/y, max-abs target); weighting it too is this project's extension.
* SSIM keeps a fixed weight: it compares structure, not a per-pixel quantity G could weight.

Every term is a mean over pixels, so weights do not depend on the crop size.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from ..models.loss_net import LossWeights
from .config import LossConfig
from .losses import sobel_magnitude, ssim

__all__ = ["learned_fusion_loss", "reconstruction_loss"]


def learned_fusion_loss(
    fused: Tensor,
    ir: Tensor,
    vis_y: Tensor,
    weights: LossWeights,
    loss: LossConfig,
    norm: Literal["l2", "l1"] = "l2",
) -> tuple[Tensor, dict[str, float]]:
    """L_f for [N,1,H,W] tensors in [0, 1] and G's ``weights`` (channel 0 = ``ir``'s share).

    Differentiable in ``fused`` and in ``weights`` (detach the weights to train only F).

    Args:
        loss: term weights ``intensity``, ``gradient``, ``ssim`` (an ``ssim`` of 0 skips SSIM).
        norm: ρ of the intensity term, ``MetaConfig.intensity_norm``.

    Returns:
        (loss, per-term values for logging: ``intensity``, ``gradient``, ``ssim``).
    """
    r_ir, r_vis = fused - ir, fused - vis_y
    if norm == "l2":
        r_ir, r_vis = r_ir * r_ir, r_vis * r_vis
    else:
        r_ir, r_vis = r_ir.abs(), r_vis.abs()
    w = weights.intensity
    l_int = (w[:, 0:1] * r_ir + w[:, 1:2] * r_vis).mean()
    g_f = sobel_magnitude(fused)
    wg = weights.gradient
    l_grad = (
        wg[:, 0:1] * (g_f - sobel_magnitude(ir)).abs() + wg[:, 1:2] * (g_f - sobel_magnitude(vis_y)).abs()
    ).mean()
    total = loss.intensity * l_int + loss.gradient * l_grad
    terms = {"intensity": float(l_int.detach()), "gradient": float(l_grad.detach())}
    if loss.ssim > 0:
        l_ssim = 1.0 - 0.5 * (ssim(fused, ir) + ssim(fused, vis_y))
        total = total + loss.ssim * l_ssim
        terms["ssim"] = float(l_ssim.detach())
    return total, terms


def reconstruction_loss(ir_hat: Tensor, vis_hat: Tensor, ir: Tensor, vis_y: Tensor) -> Tensor:
    """ReFusion's outer objective: how well both sources were recovered, [N,1,H,W] each.

    Mean over the two sources of L1 + (1 − SSIM): L1 for intensities, SSIM for the structure (the
    detail the fused image must keep so that it can be recovered at all).
    """
    total = ir.new_zeros(())
    for estimate, source in ((ir_hat, ir), (vis_hat, vis_y)):
        total = total + F.l1_loss(estimate, source) + (1.0 - ssim(estimate, source))
    return 0.5 * total
