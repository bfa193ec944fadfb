"""``scheme: tdfusion`` and ``scheme: refusion``: the fusion loss weighted per pixel by a meta-learned G.

TDFusion (Bai et al., CVPR 2025) and ReFusion (Bai et al., IJCV 2024) differ only in the outer
objective G is meta-learned on: the task net's loss on the virtually stepped fusion net's image
(TDFusion) or how well a reconstruction net recovers both sources from it (ReFusion). Per upper
step (the math in ``training/meta.py``, G and R in ``training/loss_learner.py``):

1. every ``meta.meta_every`` upper steps after ``warmup_steps``: a meta step of G, its outer
   objective on held-out pairs like the bi-level F;
2. F steps on L_f with G frozen (both source orders with ``meta.swap_orders``, as in step 1);
3. ReFusion: R steps on the detached fused image.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ...models.deployed import modality_input
from ..bilevel import flat_grad
from ..loss_learner import LossNetLearner, Reconstructor
from .base import Batch, FusionObjective, Scheme, SchemeContext

__all__ = ["LearnedLossScheme", "ReFusionScheme", "TDFusionScheme"]


class LearnedLossScheme(Scheme):
    """What TDFusion and ReFusion share: G, its meta step, the learned L_f; the outer objective differs."""

    def __init__(self, ctx: SchemeContext) -> None:
        super().__init__(ctx)
        self.learner = LossNetLearner(self.cfg.meta, self.cfg.loss, device=ctx.device)

    @abstractmethod
    def outer(self, fused_prime: Tensor, targets: Batch) -> Tensor:
        """The outer objective on F_θ'(x) of a held-out batch; ``targets`` matches it sample for sample."""

    def after_fusion_objective(self, objective: FusionObjective) -> dict[str, float]:
        """Hook after L_f is formed, before F steps (ReFusion: R's step); nothing by default."""
        return {}

    def fusion_inputs(self, batch: Batch) -> tuple[Tensor, Tensor, Batch]:
        return self.learner.fusion_inputs(batch)

    def fusion_loss(self, fused: Tensor, first: Tensor, second: Tensor) -> tuple[Tensor, dict[str, float]]:
        return self.learner.fusion_loss(fused, first, second)

    def _meta_due(self, it: int) -> bool:
        cfg = self.cfg
        return it >= cfg.warmup_steps and (it // cfg.upper_every) % cfg.meta.meta_every == 0

    def step(self, batch: Batch, it: int) -> dict[str, float]:
        meta_logs: dict[str, float] = {}
        if self._meta_due(it):
            self.nets.tasks.eval()  # the outer forward must not move the lower level's BN statistics
            meta_logs = self.learner.meta_step(
                self.nets.fusion, batch, self.outer, outer_batch=self.data.held_out(), sync=self.ctx.sync
            )
            self.nets.train_mode()
        objective = self.fusion_objective(batch)
        logs = {**objective.logs, **meta_logs, **self.after_fusion_objective(objective)}
        grad = flat_grad(objective.loss, list(self.nets.fusion.parameters()))
        logs["norm_grad_fusion"] = float(grad.norm())  # this rank's, before the sync
        self.nets.step_fusion(grad)
        return logs

    def dump_weight_maps(self, out_dir: Path, count: int = 4) -> list[Path]:
        """G's weight maps on the first ``count`` validation pairs (whole images), one PNG each."""
        samples = self.data.val_samples(count)
        return self.learner.dump_weight_maps([(s.name, s.ir, s.visible[:1]) for s in samples], out_dir)

    def modules(self) -> dict[str, nn.Module]:
        return {"loss_net": self.learner.loss_net}

    def state_dict(self) -> dict[str, Any]:
        return {"loss_net": self.learner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["loss_net"])


class TDFusionScheme(LearnedLossScheme):
    """G meta-learned on the task loss (segmentation + detection) of the task net on F_θ'(x)."""

    name = "tdfusion"

    def outer(self, fused_prime: Tensor, targets: Batch) -> Tensor:
        x = modality_input("fused", targets["ir"], targets["visible"], fused_prime)
        seg, det = self.nets.task_losses(x, targets)
        return seg + det


class ReFusionScheme(LearnedLossScheme):
    """G meta-learned on how well the reconstruction net R recovers both sources from F_θ'(x).

    R is pre-trained for ``meta.recon_pretrain_steps`` on blends of training pairs when the scheme
    is built (a resumed run overwrites it from the checkpoint), so the outer objective's L1 term
    depends on the blend from the first meta step.
    """

    name = "refusion"

    def __init__(self, ctx: SchemeContext) -> None:
        super().__init__(ctx)
        self.recon = Reconstructor(self.cfg.meta, device=ctx.device)
        pretrain = (self.data.batch(self.data.train_set) for _ in range(self.cfg.meta.recon_pretrain_steps))
        self.recon.pretrain(pretrain, self.data.gen, sync=ctx.sync)

    def outer(self, fused_prime: Tensor, targets: Batch) -> Tensor:
        return self.recon.objective(fused_prime, targets)

    def after_fusion_objective(self, objective: FusionObjective) -> dict[str, float]:
        return self.recon.step(objective.fused, objective.targets, sync=self.ctx.sync)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "recon": self.recon.net}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "recon": self.recon.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.recon.load_state_dict(state["recon"])
