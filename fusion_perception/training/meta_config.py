"""Settings of the learnable-loss schemes (TDFusion, ReFusion): the ``meta:`` section of a training config.

Kept in its own module so ``config.py`` only has to hold a ``meta: MetaConfig`` field; every default
lives here, once. See ``meta.py`` for what each setting does to the meta step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MetaConfig"]

_MODES = ("exact", "finite_difference")
_NORMS = ("l2", "l1")


@dataclass
class MetaConfig:
    """Meta-learning of the loss net G and the weights of the learned fusion loss.

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
        swap_prob: per-sample probability of feeding the sources in swapped order (IR <-> visible
            Y) during the meta step, the TDFusion augmentation.
        fd_eps: parameter-space length of the finite-difference probe; the step along the outer
            gradient v is fd_eps / ||v|| (DARTS uses 0.01). Error: O(fd_eps²) where L_f is smooth;
            ReLU/clamp kinks of a real fusion net make it closer to O(fd_eps). Measured on
            GuidedFusionNet (64x64, float32): relative error 2.8% at 0.01, 1.0% at 1e-3, 0.07% at 1e-4.
        share_eps: every per-pixel share of G lies in [share_eps, 1 − share_eps].
        intensity, gradient, ssim: weights of the learned loss terms (``learned_loss.py``). At
            the neutral start (shares 0.5) on MSRS crops, average fusion scores intensity 0.018
            (``l2``; 0.10 with ``l1``) and gradient 0.087, so 5 x ``l2`` intensity and 4 x gradient
            match the hand-set ``LossConfig`` terms (1 x L1 intensity 0.10, 4 x gradient 0.10).
        intensity_norm: ``l2`` (w·(F−S)², minimiser the per-pixel blend Σ w_s·S, the seeds'
            squared form) or ``l1`` (w·|F−S|, minimiser the source with the larger share).
        loss_net_width, loss_net_scale: channels and downsampling factor of G.
        recon_width: channels of the ReFusion reconstruction net.
        recon_lr: Adam learning rate of the reconstruction net.
    """

    mode: Literal["exact", "finite_difference"] = "exact"
    inner_lr: float = 1e-3
    meta_lr: float = 1e-3
    meta_every: int = 2
    swap_prob: float = 0.5
    fd_eps: float = 1e-3
    share_eps: float = 0.05
    intensity: float = 5.0
    gradient: float = 4.0
    ssim: float = 1.0
    intensity_norm: Literal["l2", "l1"] = "l2"
    loss_net_width: int = 16
    loss_net_scale: int = 4
    recon_width: int = 16
    recon_lr: float = 1e-3

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
        if not 0.0 <= self.swap_prob <= 1.0:
            raise ValueError(f"meta.swap_prob must be in [0, 1], got {self.swap_prob}")
        if not 0.0 < self.share_eps < 0.5:
            raise ValueError(f"meta.share_eps must be in (0, 0.5), got {self.share_eps}")
        for name in ("intensity", "gradient", "ssim"):
            if getattr(self, name) < 0:
                raise ValueError(f"meta.{name} must be >= 0, got {getattr(self, name)}")
        if self.intensity + self.gradient == 0:
            raise ValueError("meta.intensity and meta.gradient are both 0: G would weight nothing")
