"""The learned loss's trainable parts: the loss net G with its meta step, ReFusion's reconstruction net R.

Both stand apart from the trainer, so they are tested alone (``test/test_meta_loss.py``); the
schemes of ``schemes/learned.py`` call them once per upper step:

1. every ``meta.meta_every`` upper steps: ``LossNetLearner.meta_step`` (G only; F, T, R untouched);
2. the fusion net steps on ``LossNetLearner.fusion_loss`` (G frozen);
3. ReFusion: ``Reconstructor.step`` (R on the detached fused image).

With ``meta.swap_orders`` every batch reaches the fusion net in both source orders
(``meta.both_orders``), in the meta step and in the fusion net's update alike, so G is meta-learned
for the inputs the fusion net actually trains on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..models.loss_net import LossNet, LossWeights
from ..models.reconstruction import ReconstructionNet
from .config import LossConfig
from .learned_loss import learned_fusion_loss, reconstruction_loss
from .meta import (
    Batch,
    MetaGradient,
    both_orders,
    fusion_parameters,
    grads_of,
    meta_gradient,
    repeat_batch,
    virtual_step,
)
from .meta_config import MetaConfig

__all__ = ["LossNetLearner", "OuterFn", "Reconstructor", "SyncFn", "apply_grads", "sources"]

#: Adam eps of G: meta-gradients scale with α (~1e-3), so the default 1e-8 would dominate them.
_META_ADAM_EPS = 1e-10

OuterFn = Callable[[Tensor, Batch], Tensor]
SyncFn = Callable[[list[Tensor]], None]


def sources(batch: Batch) -> tuple[Tensor, Tensor]:
    """(IR, visible Y) of a trainer batch: ``ir`` [N,1,H,W], ``visible`` [N,3,H,W] (Y first)."""
    return batch["ir"], batch["visible"][:, :1]


def apply_grads(
    params: Sequence[Tensor], grads: list[Tensor], opt: torch.optim.Optimizer, sync: SyncFn | None
) -> None:
    """Hand ``grads`` to ``sync`` (e.g. all-reduce under DDP), set them as ``.grad``, take one ``opt`` step.

    G's meta step and R's step both get their gradients as lists from ``torch.autograd.grad`` rather
    than ``.backward()``; this is the one place such a list reaches an optimizer, so both steps sync
    and apply it the same way.
    """
    if sync is not None:
        sync(grads)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt.step()
    opt.zero_grad(set_to_none=True)


def _share_stats(weights: LossWeights) -> dict[str, float]:
    """mean/std/min/max of the IR shares (the visible share is exactly 1 − IR share)."""
    stats: dict[str, float] = {}
    for term, w in zip(("int", "grad"), weights, strict=True):
        ir = w[:, 0].detach().float()
        stats.update(
            {
                f"w_{term}_ir_mean": float(ir.mean()),
                f"w_{term}_ir_std": float(ir.std()) if ir.numel() > 1 else 0.0,
                f"w_{term}_ir_min": float(ir.min()),
                f"w_{term}_ir_max": float(ir.max()),
            }
        )
    return stats


def _to_u8(x: Tensor) -> np.ndarray:
    return (x.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


class LossNetLearner:
    """G, its Adam and its meta step; the learned L_f the fusion net trains on.

    Args:
        cfg: the ``meta:`` section (validated here).
        loss: the term weights of L_f (``loss:``, shared with the hand-set loss).
        device: where G lives.
    """

    def __init__(self, cfg: MetaConfig, loss: LossConfig, *, device: torch.device | str = "cpu") -> None:
        cfg.validate()
        self.cfg = cfg
        self.loss = loss
        self.loss_net = LossNet(width=cfg.loss_net_width, scale=cfg.loss_net_scale, eps=cfg.share_eps).to(
            device
        )
        self.opt = torch.optim.Adam(self.loss_net.parameters(), lr=cfg.meta_lr, eps=_META_ADAM_EPS)
        self.meta_steps = 0

    def to(self, *args: Any, **kwargs: Any) -> LossNetLearner:
        """Move/cast G like ``nn.Module.to`` (call before the first step)."""
        self.loss_net.to(*args, **kwargs)
        return self

    # ------------------------------------------------------------------ objectives
    def fusion_inputs(self, batch: Batch) -> tuple[Tensor, Tensor, Batch]:
        """(first, second, targets): the fusion net's two inputs for ``batch`` and the batch whose
        labels and modality-ordered sources match them, sample for sample. With ``swap_orders`` the
        inputs hold both orders and ``targets`` is the batch twice over."""
        ir, vis_y = sources(batch)
        if not self.cfg.swap_orders:
            return ir, vis_y, batch
        first, second = both_orders(ir, vis_y)
        return first, second, repeat_batch(batch)

    def weights(self, first: Tensor, second: Tensor) -> LossWeights:
        """G's shares for the fusion net's inputs, without a graph (channel 0: ``first``'s share)."""
        with torch.no_grad():
            return self.loss_net(first, second)

    def fusion_loss(self, fused: Tensor, first: Tensor, second: Tensor) -> tuple[Tensor, dict[str, float]]:
        """L_f(fused; G) for the fusion net's ordinary update, in the order F saw its inputs; G frozen.

        Same log keys as ``losses.fusion_loss`` (``intensity``, ``gradient``, ``ssim``).
        """
        return learned_fusion_loss(
            fused, first, second, self.weights(first, second), self.loss, self.cfg.intensity_norm
        )

    # ------------------------------------------------------------------ meta step
    def meta_gradient(
        self, fusion: nn.Module, batch: Batch, outer_fn: OuterFn, *, outer_batch: Batch | None = None
    ) -> tuple[MetaGradient, LossWeights]:
        """dL_out(θ'(φ))/dφ for the current G, without stepping it; also G's shares on ``batch``.

        Args:
            fusion: F (called as ``fusion(first, second)``); its parameters are only read.
            batch: ``ir`` [N,1,H,W] and ``visible`` [N,3,H,W] (Y first) for the virtual step.
            outer_fn: ``(fused_prime, targets) -> scalar``: the outer objective on F_θ' of the outer
                batch, ``targets`` that batch as ``fusion_inputs`` returns it (labels, sources).
            outer_batch: batch of the outer objective (held-out pairs); default ``batch``.
        """
        cfg = self.cfg
        first, second, _ = self.fusion_inputs(batch)
        outer_first, outer_second, targets = self.fusion_inputs(batch if outer_batch is None else outer_batch)
        weights = self.loss_net(first, second)

        def inner(fused: Tensor, terms: LossConfig = self.loss) -> Tensor:
            return learned_fusion_loss(fused, first, second, weights, terms, cfg.intensity_norm)[0]

        weighted_only = replace(self.loss, ssim=0.0)  # SSIM is not weighted by G: no ∇φ, skip it at θ±
        result = meta_gradient(
            fusion,
            (first, second),
            inner,
            lambda fused: outer_fn(fused, targets),
            list(self.loss_net.parameters()),
            lr=cfg.inner_lr,
            mode=cfg.mode,
            fd_eps=cfg.fd_eps,
            outer_inputs=(outer_first, outer_second),
            probe_loss=lambda fused: inner(fused, weighted_only),
        )
        return result, weights

    def meta_step(
        self,
        fusion: nn.Module,
        batch: Batch,
        outer_fn: OuterFn,
        *,
        outer_batch: Batch | None = None,
        sync: SyncFn | None = None,
    ) -> dict[str, float]:
        """One step of G along the meta-gradient (``meta_gradient``); F, the task net and R unchanged.

        Returns:
            ``meta_inner`` L_f(θ), ``meta_outer`` L_out(θ') before G's step, ``meta_grad_norm`` and
            the statistics ``w_{int,grad}_ir_{mean,std,min,max}`` of G's IR shares on ``batch``.
        """
        result, weights = self.meta_gradient(fusion, batch, outer_fn, outer_batch=outer_batch)
        apply_grads(list(self.loss_net.parameters()), result.grads, self.opt, sync)
        self.meta_steps += 1
        n = batch["ir"].shape[0]  # the first n samples are in IR-first order
        return {
            "meta_inner": result.inner,
            "meta_outer": result.outer,
            "meta_grad_norm": float(torch.sqrt(sum((g.double() ** 2).sum() for g in result.grads))),
            **_share_stats(LossWeights(weights.intensity[:n], weights.gradient[:n])),
        }

    def outer_value(self, fusion: nn.Module, batch: Batch, outer_fn: OuterFn) -> float:
        """L_out(θ'(φ)) with the current G on one batch: what ``meta_step`` lowers (tests, benchmarks)."""
        first, second, targets = self.fusion_inputs(batch)
        weights = self.loss_net(first, second)
        theta = fusion_parameters(fusion)
        fused = functional_call(fusion, theta, (first, second))
        l_in = learned_fusion_loss(fused, first, second, weights, self.loss, self.cfg.intensity_norm)[0]
        theta_prime = virtual_step(theta, l_in, self.cfg.inner_lr, create_graph=False)
        with torch.no_grad():
            return float(outer_fn(functional_call(fusion, theta_prime, (first, second)), targets))

    # ------------------------------------------------------------------ inspection
    def weight_stats(self, ir: Tensor, vis_y: Tensor) -> dict[str, float]:
        """mean/std/min/max of G's IR shares on a batch (visible share = 1 − IR share)."""
        return _share_stats(self.weights(ir, vis_y))

    def dump_weight_maps(
        self, pairs: Iterable[tuple[str, Tensor, Tensor]], out_dir: Path | str
    ) -> list[Path]:
        """Write one PNG per pair: IR | visible Y | IR share of the intensity term | IR share of the
        gradient term, side by side, 8-bit grey (share = pixel / 255; the visible share is 1 − it).

        Args:
            pairs: (name, IR, visible Y), images [1,H,W] or [H,W] in [0, 1] (e.g. from a
                ``PairFolder`` sample: ``(s.name, s.ir, s.visible[:1])``).
            out_dir: created if missing.

        Returns:
            The files written, ``<out_dir>/<name>_loss_weights.png``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        device = next(self.loss_net.parameters()).device
        dtype = next(self.loss_net.parameters()).dtype
        written = []
        for name, ir, vis_y in pairs:
            ir4 = ir.reshape(1, 1, *ir.shape[-2:]).to(device, dtype)
            vis4 = vis_y.reshape(1, 1, *vis_y.shape[-2:]).to(device, dtype)
            w = self.weights(ir4, vis4)
            tiles = [_to_u8(t[0, 0]) for t in (ir4, vis4, w.intensity[:, :1], w.gradient[:, :1])]
            gap = np.full((tiles[0].shape[0], 4), 255, np.uint8)
            panel = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
            path = out / f"{name}_loss_weights.png"
            if not cv2.imwrite(str(path), panel):
                raise OSError(f"could not write {path}")
            written.append(path)
        return written

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """G, its optimiser and the meta-step count: everything a bit-exact resume needs."""
        return {
            "loss_net": self.loss_net.state_dict(),
            "opt_loss": self.opt.state_dict(),
            "meta_steps": self.meta_steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loss_net.load_state_dict(state["loss_net"])
        self.opt.load_state_dict(state["opt_loss"])
        self.meta_steps = int(state["meta_steps"])


class Reconstructor:
    """ReFusion's reconstruction net R (``models/reconstruction.py``) and its Adam.

    Args:
        cfg: the ``meta:`` section (``recon_width``, ``recon_lr``).
        device: where R lives.
    """

    def __init__(self, cfg: MetaConfig, *, device: torch.device | str = "cpu") -> None:
        self.net = ReconstructionNet(width=cfg.recon_width).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.recon_lr)

    def to(self, *args: Any, **kwargs: Any) -> Reconstructor:
        """Move/cast R like ``nn.Module.to`` (call before the first step)."""
        self.net.to(*args, **kwargs)
        return self

    def objective(self, fused: Tensor, batch: Batch) -> Tensor:
        """ReFusion's outer objective: R(fused) against the batch's IR and visible Y.

        Targets are in modality order also when ``fused`` came from swapped inputs (``batch`` is then
        the doubled batch of ``LossNetLearner.fusion_inputs``): R must recover *the IR image*,
        whatever order F saw the sources in.
        """
        ir, vis_y = sources(batch)
        ir_hat, vis_hat = self.net(fused)
        return reconstruction_loss(ir_hat, vis_hat, ir, vis_y)

    def step(self, fused: Tensor, batch: Batch, *, sync: SyncFn | None = None) -> dict[str, float]:
        """One step of R on the *detached* fused image; returns ``{"recon": loss}``."""
        loss = self.objective(fused.detach(), batch)
        params = list(self.net.parameters())
        apply_grads(params, grads_of(loss, params), self.opt, sync)
        return {"recon": float(loss.detach())}

    def pretrain(
        self, batches: Iterable[Batch], generator: torch.Generator, *, sync: SyncFn | None = None
    ) -> float:
        """One step of R per batch on random per-sample blends a·IR + (1 − a)·visible Y, a ~ U(0, 1).

        Blends are the images G's shares pull the fusion net towards; an R that undoes them makes
        the outer objective's L1 term depend on the blend (see ``MetaConfig.recon_pretrain_steps``).

        Returns:
            The last step's reconstruction loss (nan without batches).
        """
        last = float("nan")
        for batch in batches:
            ir, vis_y = sources(batch)
            a = torch.rand(ir.shape[0], 1, 1, 1, generator=generator, device=generator.device)
            a = a.to(ir)
            last = self.step(a * ir + (1.0 - a) * vis_y, batch, sync=sync)["recon"]
        return last

    def state_dict(self) -> dict[str, Any]:
        return {"recon": self.net.state_dict(), "opt_recon": self.opt.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.net.load_state_dict(state["recon"])
        self.opt.load_state_dict(state["opt_recon"])
