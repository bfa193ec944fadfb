"""Meta-gradients of the learned fusion loss (TDFusion, ReFusion; docs/DESIGN.md "Training schemes").

TDFusion (Bai et al., CVPR 2025, "Task-driven image fusion with learnable fusion loss") and ReFusion
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

What TDFusion's released code also shows (HaowenBai/TDFusion ``train.py``, ``utils.py``,
``nets/ReFusion.py``; HaowenBai/ReFusion ships inference code only, so ReFusion's training side here
follows the paper): meta-gradients are O(α) small, so TDFusion's loss-net Adam uses eps = 1e-10
and its G update divides by max|grad| (a scale-free step); G's Adam here uses the same eps (Adam's
step is about its learning rate per parameter whatever the gradient's scale; what limits how far G
moves is measured in benchmarks/bench_meta_grad.py). The modality order is swapped as augmentation
with the batch doubled in both orders (``both_orders``), in the meta step and in the fusion net's own
update, as there in both phases. The virtual step is plain SGD with the fusion net's learning
rate, the inner and outer objectives are evaluated on consecutive batches, and G is trained in
phases (200 meta steps, then an epoch of F and T with G frozen) rather than interleaved every k
steps. TDFusion also advances the task net by one step before the outer evaluation and then
restores it; that belongs to the caller's ``outer_fn`` if wanted.

The objects that hold G (and ReFusion's reconstruction net) and run these steps are in
``loss_learner.py``; the schemes that call them in ``schemes/learned.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = [
    "META_MODES",
    "Batch",
    "MetaGradient",
    "both_orders",
    "fusion_parameters",
    "grads_of",
    "meta_gradient",
    "repeat_batch",
    "virtual_step",
]

MetaMode = Literal["exact", "finite_difference", "first_order"]
META_MODES: tuple[str, ...] = ("exact", "finite_difference", "first_order")

Batch = Mapping[str, Any]


@dataclass(frozen=True)
class MetaGradient:
    """Result of ``meta_gradient``: one gradient per meta-parameter, and the two loss values."""

    grads: list[Tensor]
    inner: float  # L_f(θ; φ)
    outer: float  # L_out(θ'(φ))


def fusion_parameters(module: nn.Module) -> dict[str, Tensor]:
    """The trainable parameters of ``module`` by name: θ for ``torch.func.functional_call``."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def grads_of(
    loss: Tensor, params: Sequence[Tensor], *, create_graph: bool = False, retain_graph: bool = True
) -> list[Tensor]:
    """d loss / d params, zeros for parameters the loss does not reach. Keeps the graph by default
    (G's forward is shared by several losses of one meta step)."""
    grads = torch.autograd.grad(
        loss, list(params), retain_graph=retain_graph, create_graph=create_graph, allow_unused=True
    )
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


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
    grads = grads_of(loss, list(params.values()), create_graph=create_graph, retain_graph=create_graph)
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
    diff = grads_of(inner_loss(fused_plus) - inner_loss(fused_minus), meta_params)
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
        grads = grads_of(l_out, meta_params)
    else:
        leaves = list(theta_prime.values())
        both = grads_of(l_out, leaves + meta_params)
        v, grads = both[: len(leaves)], both[len(leaves) :]
        if mode == "finite_difference" and fd_eps is not None:
            probe = inner_loss if probe_loss is None else probe_loss
            second = _finite_difference(fusion, theta, v, inputs, probe, meta_params, lr, fd_eps)
            grads = [d + s for d, s in zip(grads, second, strict=True)]
    return MetaGradient([g.detach() for g in grads], float(l_in.detach()), float(l_out.detach()))


def repeat_batch(batch: Batch) -> dict[str, Any]:
    """``batch`` twice over, in the same order: tensors concatenated on dim 0, lists concatenated.

    The labels and the visible image (whose chroma the task net sees) of a batch whose fusion-net
    inputs ``both_orders`` doubled.
    """
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, Tensor):
            out[key] = torch.cat((value, value))
        elif isinstance(value, list):
            out[key] = value + value
        else:
            out[key] = value
    return out


def both_orders(ir: Tensor, vis_y: Tensor) -> tuple[Tensor, Tensor]:
    """The fusion net's two inputs with every pair in both orders: ([IR; VIS], [VIS; IR]), [2N,1,H,W].

    Sample i + N is sample i with the sources exchanged (TDFusion's released training doubles its
    batches this way in both of its phases). Reconstruction targets and task labels stay in
    modality order: ``repeat_batch`` of the batch.
    """
    return torch.cat((ir, vis_y)), torch.cat((vis_y, ir))
