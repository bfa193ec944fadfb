"""Settings of the learnable-loss schemes (TDFusion, ReFusion): the ``meta:`` section of a training config.

Kept in its own module so ``config.py`` only has to hold a ``meta: MetaConfig`` field. The weights of
the fusion-loss terms are not here: the learned loss uses the same ``loss:`` weights as the hand-set
one (``config.LossConfig``), so each weight has one default; the meta schemes' YAMLs override
``loss.intensity`` for the squared intensity term. See ``meta.py`` for what each setting does to the
meta step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MetaConfig"]

_MODES = ("exact", "finite_difference")
_NORMS = ("l2", "l1")


@dataclass
class MetaConfig:
    """Meta-learning of the loss net G, the form of the learned fusion loss, ReFusion's reconstruction net.

    Attributes:
        mode: how the meta-gradient through the virtual step is computed: ``exact`` (second-order
            backprop through θ' = θ − α∇θ L_f, as TDFusion does) or ``finite_difference`` (the
            DARTS central difference: first derivatives only, no graph through the virtual step).
            ``first_order`` (drop the second-order term) exists in ``meta.meta_gradient`` but is
            refused here: G reaches the outer objective only through that term, so its
            meta-gradient would be identically zero. Measured with GuidedFusionNet, batch 4 of
            256x224, one thread (benchmarks/bench_meta_step.py): both take 1.6-3x an ordinary
            fusion step; ``finite_difference`` needs about half the extra memory (ReFusion 117 vs
            213 MiB, TDFusion 91 vs 194 MiB) and is as fast or faster, at a 1-2% error.
        inner_lr: α of the virtual SGD step (TDFusion uses the fusion net's learning rate).
        meta_lr: Adam learning rate of G.
        meta_every: a meta step every k training iterations.
        swap_orders: feed every pair in both source orders, (IR, visible Y) and (visible Y, IR),
            doubling the batch, in the meta step (virtual step and outer objective) *and* in the
            fusion net's own update, as TDFusion's released training does in both of its phases:
            G then learns the loss for the inputs the fusion net really trains on. The task net's
            lower step keeps the deployed order (it only ever sees F(IR, visible) at run time).
        fd_eps: parameter-space length of the finite-difference probe; the step along the outer
            gradient v is fd_eps / ||v|| (DARTS uses 0.01). Error: O(fd_eps²) where L_f is smooth;
            ReLU/clamp kinks of a real fusion net make it closer to O(fd_eps). Measured on
            GuidedFusionNet (64x64, float32): relative error 2.8% at 0.01, 1.0% at 1e-3, 0.07% at 1e-4.
        share_eps: every per-pixel share of G lies in [share_eps, 1 − share_eps].
        intensity_norm: ``l2`` (w·(F−S)², minimiser the per-pixel blend Σ w_s·S, TDFusion's
            squared form) or ``l1`` (w·|F−S|, minimiser the source with the larger share).
        loss_net_width, loss_net_scale: channels and downsampling factor of G.
        recon_width: channels of the ReFusion reconstruction net.
        recon_lr: Adam learning rate of the reconstruction net.
        recon_pretrain_steps: ReFusion: steps of the reconstruction net, before the first
            iteration, on random per-sample blends a·IR + (1 − a)·visible Y of training pairs.
            A fresh reconstruction net returns its input for both sources, so its L1 term is the
            same for every blend between them (|F − IR| + |F − VIS| = |IR − VIS|) and the outer
            objective would give G nothing but SSIM to learn from; a net that has learned to
            undo blends makes the L1 term depend on the blend from the first meta step.
    """

    mode: Literal["exact", "finite_difference"] = "exact"
    inner_lr: float = 1e-3
    meta_lr: float = 1e-3
    meta_every: int = 2
    swap_orders: bool = True
    fd_eps: float = 1e-3
    share_eps: float = 0.05
    intensity_norm: Literal["l2", "l1"] = "l2"
    loss_net_width: int = 16
    loss_net_scale: int = 4
    recon_width: int = 16
    recon_lr: float = 1e-3
    recon_pretrain_steps: int = 50

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range value (keys as in the YAML ``meta:``)."""
        if self.mode not in _MODES:
            hint = " (its meta-gradient is identically zero for G)" if self.mode == "first_order" else ""
            raise ValueError(f"meta.mode must be one of {_MODES}, got {self.mode!r}{hint}")
        if self.intensity_norm not in _NORMS:
            raise ValueError(f"meta.intensity_norm must be one of {_NORMS}, got {self.intensity_norm!r}")
        for name in ("inner_lr", "meta_lr", "fd_eps", "recon_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"meta.{name} must be > 0, got {getattr(self, name)}")
        for name in ("meta_every", "loss_net_width", "loss_net_scale", "recon_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"meta.{name} must be >= 1, got {getattr(self, name)}")
        if self.recon_pretrain_steps < 0:
            raise ValueError(f"meta.recon_pretrain_steps must be >= 0, got {self.recon_pretrain_steps}")
        if not 0.0 < self.share_eps < 0.5:
            raise ValueError(f"meta.share_eps must be in (0, 0.5), got {self.share_eps}")
