"""Meta-learning of the fusion loss: the TDFusion and ReFusion schemes (DESIGN.md section 4).

TDFusion (Bai et al., 2024, "Task-driven image fusion with learnable fusion loss") and ReFusion
(Bai et al., IJCV 2024, "ReFusion: Learning image fusion from reconstruction with learnable loss via
meta-learning") train the loss net G (parameters φ) that weights the fusion loss L_f(θ; φ) of the
fusion net F_θ. A meta step asks: if F took one SGD step on the loss G proposes,

    θ'(φ) = θ − α ∇θ L_f(θ; φ),

would the fused image F_θ'(x) be better for the outer objective L_out (the task loss for TDFusion,
how well a reconstruction net recovers both sources for ReFusion)? G then steps along

    dL_out/dφ = ∂φ L_out(θ') − α · ∂²_φθ L_f(θ; φ) · v,        v = ∇θ' L_out(θ').

Three ways to compute it (``meta_gradient(mode=...)``):

* ``exact``: backprop through the virtual step (``create_graph=True``): second-order autograd,
  the graph of ∇θ L_f kept in memory. What TDFusion's released ``train.py`` does.
* ``finite_difference``: the DARTS approximation (Liu et al., ICLR 2019) of the mixed term,

      ∂²_φθ L_f · v ≈ [∇φ L_f(θ⁺; φ) − ∇φ L_f(θ⁻; φ)] / (2ε),   θ± = θ ± ε v,

  hence dL_out/dφ ≈ ∂φ L_out − α [∇φ L_f(θ⁺) − ∇φ L_f(θ⁻)] / (2ε) (note the minus sign: it comes
  from θ' = θ − α∇θ L_f). Only first derivatives are taken; F runs forward twice at θ±
  *without* a graph (θ± are constants, the φ-dependence is all in G's weights), so nothing of F's
  second-order graph is ever built and F's first-order graph at θ is freed right after the
  virtual step (about half the extra memory of ``exact`` on GuidedFusionNet, same time). With
  ε = ``fd_eps`` / ||v|| the probe has a fixed length in parameter space and the error of the
  central difference is O(fd_eps²) (third derivatives of L_f along v) where L_f is smooth;
  ``test/test_meta_loss.py`` checks both the tolerance and the rate.
* ``first_order``: drop the second-order term, keep ∂φ L_out at θ' = const. In MAML or DARTS
  (ξ = 0) that is a usable approximation because the meta-parameters enter the outer loss
  directly; here φ reaches L_out *only* through θ', so the first-order meta-gradient of both
  schemes is exactly zero. It exists to state that relation (exact = first_order + mixed term;
  tested) and for outer objectives that do depend on φ; ``MetaConfig`` refuses it for training.
  The cheap variant of this project is therefore ``finite_difference``: first-order in cost
  (gradients only), second-order in what it estimates.

What the seeds' code also taught (HaowenBai/TDFusion ``train.py``, ``utils.py``, ``nets/ReFusion.py``;
HaowenBai/ReFusion ships inference code only, so ReFusion's training side here follows the paper):
meta-gradients are O(α) small, so the seed's loss-net Adam uses eps = 1e-10 and its G update
divides by max|grad| (a scale-free step); G's Adam here uses the same eps. The modality order is
swapped as augmentation (there: the batch is doubled with both orders; here: each sample is
swapped with probability ``swap_prob``, same batch size). The virtual step is plain SGD with the
fusion net's learning rate, the inner and outer objectives are evaluated on consecutive batches,
and G is trained in phases (200 meta steps, then an epoch of F and T with G frozen) rather than
interleaved every k steps. TDFusion also advances the task net by one step before the outer
evaluation and then restores it; that belongs to the caller's ``outer_fn`` if wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..models.loss_net import LossNet, LossWeights
from ..models.reconstruction import ReconstructionNet
from .learned_loss import learned_fusion_loss, reconstruction_loss
from .meta_config import MetaConfig

__all__ = [
    "META_MODES",
    "MetaGradient",
    "MetaLossScheme",
    "fusion_parameters",
    "meta_gradient",
    "swap_sources",
    "virtual_step",
]

MetaMode = Literal["exact", "finite_difference", "first_order"]
META_MODES: tuple[str, ...] = ("exact", "finite_difference", "first_order")
#: Adam eps of G: meta-gradients scale with α (~1e-3), so the default 1e-8 would dominate them.
_META_ADAM_EPS = 1e-10

Batch = Mapping[str, Any]
OuterFn = Callable[[Tensor, Batch], Tensor]
SyncFn = Callable[[list[Tensor]], None]


@dataclass(frozen=True)
class MetaGradient:
    """Result of ``meta_gradient``: one gradient per meta-parameter, and the two loss values."""

    grads: list[Tensor]
    inner: float  # L_f(θ; φ)
    outer: float  # L_out(θ'(φ))


def fusion_parameters(module: nn.Module) -> dict[str, Tensor]:
    """The trainable parameters of ``module`` by name: θ for ``torch.func.functional_call``."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def _grads(
    loss: Tensor, params: Sequence[Tensor], *, create_graph: bool = False, retain_graph: bool = True
) -> list[Tensor]:
    """d loss / d params, zeros for parameters the loss does not reach. Keeps the graph by default
    (G's forward is shared by several losses of one meta step)."""
    grads = torch.autograd.grad(
        loss, list(params), retain_graph=retain_graph, create_graph=create_graph, allow_unused=True
    )
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def _apply_grads(
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


def virtual_step(
    params: Mapping[str, Tensor], loss: Tensor, lr: float, *, create_graph: bool
) -> dict[str, Tensor]:
    """θ' = θ − lr · ∇θ loss, one plain SGD step that leaves the real parameters untouched.

    Args:
        params: θ by name (the tensors ``loss`` was computed from).
        loss: scalar; may also depend on other tensors (G's weights).
        lr: α.
        create_graph: keep θ' differentiable in everything ``loss`` depends on (second order); if
            False, θ' is returned detached and the part of ``loss``'s graph that leads to θ is
            freed (parts that do not, such as G's forward, stay usable).
    """
    grads = _grads(loss, list(params.values()), create_graph=create_graph, retain_graph=create_graph)
    with torch.set_grad_enabled(create_graph):
        return {name: p - lr * g for (name, p), g in zip(params.items(), grads, strict=True)}


def _finite_difference(
    fusion: nn.Module,
    theta: Mapping[str, Tensor],
    v: Sequence[Tensor],
    inputs: Sequence[Tensor],
    inner_loss: Callable[[Tensor], Tensor],
    meta_params: Sequence[Tensor],
    lr: float,
    fd_eps: float,
) -> list[Tensor]:
    """−α ∂²_φθ L_f · v by a central difference along v (DARTS); see the module docstring.

    ``inner_loss`` may be just the φ-dependent part of L_f: the other terms have no ∇φ.
    """
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in v))
    if float(norm) == 0.0:
        return [torch.zeros_like(p) for p in meta_params]
    step = fd_eps / float(norm)
    with torch.no_grad():
        plus = {n: p + step * g for (n, p), g in zip(theta.items(), v, strict=True)}
        minus = {n: p - step * g for (n, p), g in zip(theta.items(), v, strict=True)}
        fused_plus = functional_call(fusion, plus, tuple(inputs))
        fused_minus = functional_call(fusion, minus, tuple(inputs))
    # One backward through G: ∇φ of the difference is the difference of the ∇φ.
    diff = _grads(inner_loss(fused_plus) - inner_loss(fused_minus), meta_params)
    return [-lr * d / (2.0 * step) for d in diff]


def meta_gradient(
    fusion: nn.Module,
    inputs: Sequence[Tensor],
    inner_loss: Callable[[Tensor], Tensor],
    outer_loss: Callable[[Tensor], Tensor],
    meta_params: Sequence[Tensor],
    *,
    lr: float,
    mode: MetaMode = "exact",
    fd_eps: float | None = None,
    outer_inputs: Sequence[Tensor] | None = None,
    probe_loss: Callable[[Tensor], Tensor] | None = None,
) -> MetaGradient:
    """dL_out(θ'(φ))/dφ through one virtual step of ``fusion``; model-agnostic.

    Args:
        fusion: F; its trainable parameters are θ (never modified here, no ``.grad`` touched).
        inputs: F's positional inputs for the inner loss, e.g. (IR, visible Y).
        inner_loss: fused -> L_f(fused; φ), differentiable in φ (it holds G's output).
        outer_loss: fused' -> L_out, the outer objective on F_θ'(outer_inputs).
        meta_params: φ, the tensors to differentiate (G's parameters).
        lr: α of the virtual step.
        mode: ``exact`` | ``finite_difference`` | ``first_order`` (module docstring).
        fd_eps: parameter-space probe length of ``finite_difference`` (required there; see
            ``MetaConfig.fd_eps``).
        outer_inputs: F's inputs for the outer objective (a held-out batch); default ``inputs``.
        probe_loss: what ``finite_difference`` evaluates at θ±: ``inner_loss`` without the terms
            that do not depend on φ (their ∇φ is zero, so the result is the same, cheaper);
            default ``inner_loss``.
    """
    if mode not in META_MODES:
        raise ValueError(f"mode must be one of {META_MODES}, got {mode!r}")
    if mode == "finite_difference" and not (fd_eps is not None and fd_eps > 0):
        raise ValueError(f"mode 'finite_difference' needs fd_eps > 0, got {fd_eps}")
    meta_params = list(meta_params)
    theta = fusion_parameters(fusion)
    exact = mode == "exact"
    l_in = inner_loss(functional_call(fusion, theta, tuple(inputs)))
    theta_prime = virtual_step(theta, l_in, lr, create_graph=exact)
    if not exact:
        theta_prime = {n: t.requires_grad_() for n, t in theta_prime.items()}
    fused_prime = functional_call(
        fusion, theta_prime, tuple(inputs if outer_inputs is None else outer_inputs)
    )
    l_out = outer_loss(fused_prime)
    if exact:
        grads = _grads(l_out, meta_params)
    else:
        leaves = list(theta_prime.values())
        both = _grads(l_out, leaves + meta_params)
        v, grads = both[: len(leaves)], both[len(leaves) :]
        if mode == "finite_difference" and fd_eps is not None:
            probe = inner_loss if probe_loss is None else probe_loss
            second = _finite_difference(fusion, theta, v, inputs, probe, meta_params, lr, fd_eps)
            grads = [d + s for d, s in zip(grads, second, strict=True)]
    return MetaGradient([g.detach() for g in grads], float(l_in.detach()), float(l_out.detach()))


def swap_sources(
    a: Tensor, b: Tensor, prob: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Exchange ``a`` and ``b`` ([N,...] each) per sample with probability ``prob``.

    Returns:
        (first, second, swapped) with ``swapped`` a bool [N] on the generator's device.

    Raises:
        ValueError: ``prob`` > 0 without a generator (the draw must be reproducible on resume).
    """
    n = a.shape[0]
    if prob <= 0.0:
        return a, b, torch.zeros(n, dtype=torch.bool)
    if generator is None:
        raise ValueError("swap_prob > 0 needs a torch.Generator, so that a resumed run draws the same swaps")
    swapped = torch.rand(n, generator=generator, device=generator.device) < prob
    m = swapped.to(a.device).view(n, *([1] * (a.dim() - 1)))
    return torch.where(m, b, a), torch.where(m, a, b), swapped


def _sources(batch: Batch) -> tuple[Tensor, Tensor]:
    """(IR, visible Y) of a trainer batch: ``ir`` [N,1,H,W], ``visible`` [N,3,H,W] (Y first)."""
    return batch["ir"], batch["visible"][:, :1]


def _in_ir_order(weights: LossWeights, swapped: Tensor) -> LossWeights:
    """Shares with channel 0 = IR again for the samples that were fed swapped."""
    m = swapped.to(weights.intensity.device).view(-1, 1, 1, 1)
    return LossWeights(*(torch.where(m, w.flip(1), w) for w in weights))


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


class MetaLossScheme:
    """G, its optimiser and (ReFusion) the reconstruction net R with its optimiser.

    One training iteration of either scheme, as the trainer should run it:

    1. every ``cfg.meta_every`` iterations: ``meta_step(fusion, batch, outer_fn, ...)`` (G only);
    2. the fusion net: ``loss, logs = fusion_loss(fused, ir, vis_y)`` (G frozen), its own step;
    3. TDFusion: the task net on the detached fused image (the trainer's lower step);
       ReFusion: ``reconstruction_step(fused, batch)`` (R on the detached fused image).

    Args:
        cfg: the ``meta:`` section (validated here).
        scheme: ``tdfusion`` (outer objective supplied by the caller) or ``refusion`` (owns R and
            its reconstruction objective).
        device: where G (and R) live.
    """

    def __init__(
        self, cfg: MetaConfig, *, scheme: Literal["tdfusion", "refusion"], device: torch.device | str = "cpu"
    ) -> None:
        cfg.validate()
        if scheme not in ("tdfusion", "refusion"):
            raise ValueError(f"scheme must be 'tdfusion' or 'refusion', got {scheme!r}")
        self.cfg = cfg
        self.scheme = scheme
        self.loss_net = LossNet(width=cfg.loss_net_width, scale=cfg.loss_net_scale, eps=cfg.share_eps).to(
            device
        )
        self.opt_loss = torch.optim.Adam(self.loss_net.parameters(), lr=cfg.meta_lr, eps=_META_ADAM_EPS)
        self.recon: ReconstructionNet | None = None
        self.opt_recon: torch.optim.Optimizer | None = None
        if scheme == "refusion":
            self.recon = ReconstructionNet(width=cfg.recon_width).to(device)
            self.opt_recon = torch.optim.Adam(self.recon.parameters(), lr=cfg.recon_lr)
        self.meta_steps = 0

    def to(self, *args: Any, **kwargs: Any) -> MetaLossScheme:
        """Move/cast G and R like ``nn.Module.to`` (call before the first step)."""
        self.loss_net.to(*args, **kwargs)
        if self.recon is not None:
            self.recon.to(*args, **kwargs)
        return self

    # ------------------------------------------------------------------ objectives
    def weights(self, ir: Tensor, vis_y: Tensor) -> LossWeights:
        """G's shares for a pair, without a graph."""
        with torch.no_grad():
            return self.loss_net(ir, vis_y)

    def fusion_loss(self, fused: Tensor, ir: Tensor, vis_y: Tensor) -> tuple[Tensor, dict[str, float]]:
        """L_f(fused; G) for the fusion net's ordinary update; G is frozen (no graph to φ).

        Same log keys as ``losses.fusion_loss`` (``intensity``, ``gradient``, ``ssim``).
        """
        return learned_fusion_loss(fused, ir, vis_y, self.weights(ir, vis_y), self.cfg)

    def reconstruction_objective(self, fused: Tensor, batch: Batch) -> Tensor:
        """ReFusion's outer objective: R(fused) against the batch's IR and visible Y.

        Targets are always in modality order, also when ``fused`` came from swapped inputs: R must
        recover *the IR image*, whatever order F saw the sources in.
        """
        if self.recon is None:
            raise RuntimeError("the reconstruction objective belongs to the refusion scheme")
        ir, vis_y = _sources(batch)
        ir_hat, vis_hat = self.recon(fused)
        return reconstruction_loss(ir_hat, vis_hat, ir, vis_y)

    # ------------------------------------------------------------------ steps
    def meta_step(
        self,
        fusion: nn.Module,
        batch: Batch,
        outer_fn: OuterFn | None = None,
        *,
        outer_batch: Batch | None = None,
        generator: torch.Generator | None = None,
        sync: SyncFn | None = None,
    ) -> dict[str, float]:
        """One step of G along the meta-gradient; F, the task net and R are left unchanged.

        Args:
            fusion: F (called as ``fusion(ir, vis_y)``); its parameters are only read.
            batch: ``ir`` [N,1,H,W] and ``visible`` [N,3,H,W] (Y first) for the virtual step.
            outer_fn: ``(fused_prime, batch) -> scalar`` outer objective; ``None`` for refusion
                means ``reconstruction_objective``. For TDFusion, the weighted segmentation +
                detection loss of the task net on ``fused_prime`` (Cb/Cr from ``batch``).
            outer_batch: batch of the outer objective (a held-out batch, as TDFusion takes the
                next batch); default ``batch``.
            generator: draws the per-sample modality swaps (required when ``swap_prob`` > 0).
            sync: called on the list of G's gradients before the step (e.g. all-reduce under DDP).

        Returns:
            ``meta_inner`` L_f(θ), ``meta_outer`` L_out(θ') before G's step, ``meta_grad_norm``,
            ``meta_swapped`` (fraction of swapped samples) and the share statistics
            ``w_{int,grad}_ir_{mean,std,min,max}`` of this batch.
        """
        if outer_fn is None:
            if self.recon is None:
                raise ValueError("the tdfusion scheme needs an outer_fn (the task loss)")
            outer_fn = self.reconstruction_objective
        cfg = self.cfg
        a, b, swapped = swap_sources(*_sources(batch), cfg.swap_prob, generator)
        if outer_batch is None:
            outer_batch, outer_inputs = batch, (a, b)
        else:
            oa, ob, _ = swap_sources(*_sources(outer_batch), cfg.swap_prob, generator)
            outer_inputs = (oa, ob)
        weights = self.loss_net(a, b)
        phi = list(self.loss_net.parameters())
        target = outer_batch
        weighted_only = replace(cfg, ssim=0.0)  # SSIM is not weighted by G: no ∇φ, skip it at θ±
        result = meta_gradient(
            fusion,
            (a, b),
            lambda fused: learned_fusion_loss(fused, a, b, weights, cfg)[0],
            lambda fused: outer_fn(fused, target),
            phi,
            lr=cfg.inner_lr,
            mode=cfg.mode,
            fd_eps=cfg.fd_eps,
            outer_inputs=outer_inputs,
            probe_loss=lambda fused: learned_fusion_loss(fused, a, b, weights, weighted_only)[0],
        )
        grads = result.grads
        _apply_grads(phi, grads, self.opt_loss, sync)
        self.meta_steps += 1
        return {
            "meta_inner": result.inner,
            "meta_outer": result.outer,
            "meta_grad_norm": float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))),
            "meta_swapped": float(swapped.float().mean()),
            **_share_stats(_in_ir_order(weights, swapped)),
        }

    def outer_value(self, fusion: nn.Module, batch: Batch, outer_fn: OuterFn | None = None) -> float:
        """L_out(θ'(φ)) with the current G and no swap: what ``meta_step`` lowers (for tests, logs)."""
        outer_fn = self.reconstruction_objective if outer_fn is None else outer_fn
        ir, vis_y = _sources(batch)
        weights = self.loss_net(ir, vis_y)
        theta = fusion_parameters(fusion)
        l_in = learned_fusion_loss(functional_call(fusion, theta, (ir, vis_y)), ir, vis_y, weights, self.cfg)[
            0
        ]
        theta_prime = virtual_step(theta, l_in, self.cfg.inner_lr, create_graph=False)
        with torch.no_grad():
            return float(outer_fn(functional_call(fusion, theta_prime, (ir, vis_y)), batch))

    def reconstruction_step(
        self, fused: Tensor, batch: Batch, *, sync: SyncFn | None = None
    ) -> dict[str, float]:
        """ReFusion: one step of R on the *detached* fused image; returns ``{"recon": loss}``."""
        if self.recon is None or self.opt_recon is None:
            raise RuntimeError("reconstruction_step belongs to the refusion scheme")
        loss = self.reconstruction_objective(fused.detach(), batch)
        params = list(self.recon.parameters())
        _apply_grads(params, _grads(loss, params), self.opt_recon, sync)
        return {"recon": float(loss.detach())}

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
        """Everything needed for a bit-exact resume (the swap generator belongs to the caller)."""
        state: dict[str, Any] = {
            "scheme": self.scheme,
            "loss_net": self.loss_net.state_dict(),
            "opt_loss": self.opt_loss.state_dict(),
            "meta_steps": self.meta_steps,
        }
        if self.recon is not None and self.opt_recon is not None:
            state["recon"] = self.recon.state_dict()
            state["opt_recon"] = self.opt_recon.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("scheme") != self.scheme:
            raise ValueError(
                f"checkpoint holds a {state.get('scheme')!r} loss scheme, this run is {self.scheme!r}"
            )
        self.loss_net.load_state_dict(state["loss_net"])
        self.opt_loss.load_state_dict(state["opt_loss"])
        if self.recon is not None and self.opt_recon is not None:
            self.recon.load_state_dict(state["recon"])
            self.opt_recon.load_state_dict(state["opt_recon"])
        self.meta_steps = int(state["meta_steps"])
