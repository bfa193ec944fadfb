"""``scheme: plain``: the fusion net steps on the hand-set fusion loss alone.

The ablation baseline of the other schemes, and the scheme of the recipe's fusion-only and
task-only phases (``train_tasks: false``, ``freeze_fusion: true``).
"""

from __future__ import annotations

from torch import Tensor

from ..bilevel import flat_grad
from ..losses import fusion_loss
from .base import Batch, Scheme

__all__ = ["PlainScheme"]


class PlainScheme(Scheme):
    """F steps along ∇θ L_f, L_f the hand-set loss weighted by ``loss:``."""

    name = "plain"
    uses_held_out = False

    def fusion_loss(self, fused: Tensor, first: Tensor, second: Tensor) -> tuple[Tensor, dict[str, float]]:
        return fusion_loss(fused, first, second, self.cfg.loss)

    def step(self, batch: Batch, it: int) -> dict[str, float]:
        objective = self.fusion_objective(batch)
        grad = flat_grad(objective.loss, list(self.nets.fusion.parameters()))
        logs = {**objective.logs, "norm_grad_fusion": float(grad.norm())}  # this rank's, before the sync
        self.nets.step_fusion(grad)
        return logs
