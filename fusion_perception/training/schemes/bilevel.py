"""``scheme: bilevel``: BDLFusion's dual-task scheme (Liu et al., IJCAI 2023).

Lower level (every iteration): the task net on the detached fused image (``Nets.lower_step``) and,
when ``bilevel_modules`` lists ``disc``, the discriminator (``lower_step`` here). Upper level
(every ``upper_every`` iterations): the fusion net steps on ∇θ L_f plus the aggregated first-order
hypergradients of the lower modules (``training/bilevel.py``), once ``warmup_steps`` have passed.

The task net's heads share backbone and neck and step on l_seg + l_det together, so segmentation
and detection get their hypergradients through that one lower problem (``shared_hypergradients``:
c_m against the total lower loss over all task-net parameters); the discriminator is a lower
problem of its own. Upper objectives F_m are evaluated on held-out pairs (``TrainData.held_out``),
so c is the response of pairs the lower level did not just fit. Logged per module: F and f, c, the
norms of ∇θF and of the correction and their cosine, the aggregation weight.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...models.deployed import modality_input
from ...models.discriminator import PixelDiscriminator
from ..bilevel import Hypergradient, aggregate, flat_grad, hypergradient, shared_hypergradients
from ..losses import discriminator_loss, generator_adversarial_loss, intensity_target
from .base import Batch, SchemeContext
from .plain import PlainScheme

__all__ = ["BilevelScheme"]


def _critic_input(y: Tensor, visible: Tensor) -> Tensor:
    """What the discriminator judges: a Y image with the visible chroma."""
    return torch.cat((y, visible[:, 1:3]), dim=1)


class BilevelScheme(PlainScheme):
    """F steps along ∇θ L_f + aggregate(h_m) over the lower modules m of ``bilevel_modules``."""

    name = "bilevel"
    uses_held_out = True  # the upper objectives F_m are evaluated on held-out pairs

    def __init__(self, ctx: SchemeContext) -> None:
        super().__init__(ctx)
        self.disc: PixelDiscriminator | None = None
        self.opt_disc: torch.optim.Optimizer | None = None
        if "disc" in self.cfg.bilevel_modules and self.cfg.trains_fusion:
            self.disc = PixelDiscriminator().to(ctx.device)
            self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=self.cfg.lower_lr, betas=(0.5, 0.999))

    def _disc_loss(self, disc: nn.Module, batch: Batch, fused: Tensor) -> Tensor:
        """The discriminator's own loss: the intensity target is real, the fused image fake."""
        ir, vis = batch["ir"], batch["visible"]
        real = _critic_input(intensity_target(ir, vis[:, :1], self.cfg.loss.intensity_target), vis)
        return discriminator_loss(disc(real), disc(_critic_input(fused, vis)))

    def lower_step(self, batch: Batch, fused: Tensor | None) -> dict[str, float]:
        if self.disc is None or self.opt_disc is None or fused is None:
            return {}
        loss = self._disc_loss(self.disc, batch, fused)
        self.opt_disc.zero_grad(set_to_none=False)
        loss.backward()
        self.ctx.sync([p.grad for p in self.disc.parameters()])
        self.opt_disc.step()
        return {"disc": loss.item()}

    def step(self, batch: Batch, it: int) -> dict[str, float]:
        theta = list(self.nets.fusion.parameters())
        objective = self.fusion_objective(batch)
        grad = flat_grad(objective.loss, theta)
        logs = {**objective.logs, "norm_grad_fusion": float(grad.norm())}
        if it >= self.cfg.warmup_steps:
            combined, hyper_logs = self._hypergradient(batch, objective.fused, theta)
            grad = grad + combined
            logs.update(hyper_logs)
        self.nets.step_fusion(grad)
        return logs

    def _hypergradient(
        self, batch: Batch, fused: Tensor, theta: list[nn.Parameter]
    ) -> tuple[Tensor, dict[str, float]]:
        """The aggregate of the lower modules' hypergradients, and what to log about each."""
        cfg, nets = self.cfg, self.nets
        ir, vis = batch["ir"], batch["visible"]
        held = self.data.held_out()
        fused_v = nets.fusion(held["ir"], held["visible"][:, :1])
        nets.tasks.eval()  # BN statistics are the lower level's, not perturbed by the probe
        seg_t, det_t = nets.task_losses(modality_input("fused", ir, vis, fused), batch)
        seg_v, det_v = nets.task_losses(modality_input("fused", held["ir"], held["visible"], fused_v), held)
        lower = {"seg": seg_t, "det": det_t}
        upper = {"seg": seg_v, "det": det_v}
        kw = {"correction": cfg.hypergradient, "lower_lr": cfg.lower_lr}
        results: dict[str, Hypergradient] = {}
        task_uppers = {name: upper[name] for name in ("seg", "det") if name in cfg.bilevel_modules}
        if task_uppers:  # one lower problem: the task net on l_seg + l_det, all of its parameters
            results.update(
                shared_hypergradients(task_uppers, seg_t + det_t, theta, list(nets.tasks.parameters()), **kw)
            )
        if self.disc is not None:
            upper["disc"] = cfg.loss.adversarial * generator_adversarial_loss(
                self.disc(_critic_input(fused_v, held["visible"]))
            )
            lower["disc"] = self._disc_loss(self.disc, batch, fused)
            results["disc"] = hypergradient(
                upper["disc"], lower["disc"], theta, list(self.disc.parameters()), **kw
            )
        logs: dict[str, float] = {}
        for name in cfg.bilevel_modules:
            _, c, stats = results[name]
            logs.update({f"F_{name}": upper[name].item(), f"f_{name}": lower[name].item(), f"c_{name}": c})
            logs.update({f"{k}_{name}": v for k, v in stats.items()})
        combined, weights = aggregate(
            [results[n][0] for n in cfg.bilevel_modules], cfg.aggregation, generator=self.data.gen
        )
        logs.update({f"w_{n}": float(w) for n, w in zip(cfg.bilevel_modules, weights, strict=True)})
        logs["norm_hyper"] = float(combined.norm())
        nets.train_mode()
        return combined, logs

    def modules(self) -> dict[str, nn.Module]:
        return {} if self.disc is None else {"disc": self.disc}

    def state_dict(self) -> dict[str, Any]:
        if self.disc is None or self.opt_disc is None:
            return {}
        return {"disc": self.disc.state_dict(), "opt_disc": self.opt_disc.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.disc is None or self.opt_disc is None:
            super().load_state_dict(state)
            return
        if "disc" not in state:
            raise ValueError("checkpoint holds no discriminator, but bilevel_modules lists disc")
        self.disc.load_state_dict(state["disc"])
        self.opt_disc.load_state_dict(state["opt_disc"])
