"""First-order hypergradients and their aggregation (BDLFusion, Liu et al., IJCAI 2023).

Bi-level problem: min_θ F(θ, ω*(θ)) with ω*(θ) = argmin_ω f(θ, ω). The implicit gradient is

    dF/dθ = ∇θF − ∇²θω f · (∇²ωω f)⁻¹ ∇ωF.

Inverting the lower-level Hessian is out of reach for networks. With the Gauss-Newton
approximation of both second-derivative blocks by outer products of first derivatives
(∇²ωω f ≈ ∇ωf ∇ωfᵀ, ∇²θω f ≈ ∇θf ∇ωfᵀ) and the pseudo-inverse, it collapses to

    h = ∇θF − c · ∇θf,     c = ⟨∇ωF, ∇ωf⟩ / ‖∇ωf‖²,

first-order only: five gradients, no Hessian-vector product. The released BDLFusion code writes the
correction as ∇θF + η·c·∇θf̃ with the lower-level learning rate η; ``scale`` here is that factor
(1 gives the Gauss-Newton form, exact when the lower problem is a scalar least-squares residual —
``test/test_bilevel.py`` checks it against the analytic hypergradient).

F and f must be evaluated on different batches (F on a held-out batch): on the same batch c = 1
and h vanishes identically.

Aggregation of the per-module hypergradients h_1..h_M ("dynamic weighted aggregation"):

* ``random``: weights softmax(z), z ~ N(0, I), fresh each step (the released code);
* ``normalized``: every h_m rescaled to the mean norm, then averaged (no module dominates by scale);
* ``min_norm``: the minimum-norm point of the convex hull of {h_m} (MGDA, Désidéri 2012): a
  direction d with ⟨d, h_m⟩ ≥ ‖d‖² for all m, i.e. no module's objective increases to first order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["AGGREGATORS", "aggregate", "flat_grad", "hypergradient", "min_norm_weights"]


def flat_grad(loss: Tensor, params: Sequence[Tensor], *, retain_graph: bool = True) -> Tensor:
    """Gradient of ``loss`` w.r.t. ``params`` as one flat vector (zeros where a param is unused)."""
    grads = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def hypergradient(
    upper: Tensor,
    lower: Tensor,
    theta: Sequence[Tensor],
    omega: Sequence[Tensor],
    *,
    scale: float = 1.0,
    eps: float = 1e-12,
) -> tuple[Tensor, float]:
    """First-order hypergradient of ``upper`` F(θ, ω) through a lower problem with loss ``lower`` f.

    Args:
        upper: F, evaluated on a held-out batch, differentiable in θ and ω.
        lower: f, the lower module's training loss on a training batch, differentiable in θ and ω.
        theta: upper-level parameters (the fusion net).
        omega: the lower module's parameters.
        scale: factor on the correction term (see module docstring).

    Returns:
        (flat hypergradient over θ, the scalar c).
    """
    # One backward pass per loss over θ and ω together: the task network is the costly part of
    # the graph, and splitting θ from ω would traverse it twice.
    params = [*theta, *omega]
    n_theta = sum(p.numel() for p in theta)
    g_upper = flat_grad(upper, params)
    g_lower = flat_grad(lower, params)
    g_omega_lower = g_lower[n_theta:]
    c = float(torch.dot(g_upper[n_theta:], g_omega_lower) / (g_omega_lower.pow(2).sum() + eps))
    return g_upper[:n_theta] - scale * c * g_lower[:n_theta], c


def min_norm_weights(grads: Sequence[Tensor]) -> Tensor:
    """Weights α on the simplex minimising ‖Σ α_m g_m‖², solved exactly.

    With M = 2-3 modules the QP is tiny: for every support S the minimiser on the affine hull is
    α_S ∝ G_S⁺1 (G the Gram matrix); the best feasible (α ≥ 0) candidate over all 2^M - 1 supports
    is the optimum. Exact, unlike Frank-Wolfe, whose O(1/k) convergence leaves visible error.
    """
    m = len(grads)
    if not 1 <= m <= 8:
        raise ValueError(f"min_norm_weights supports 1..8 gradients, got {m}")
    g = torch.stack([v.detach().double().cpu() for v in grads])
    gram = g @ g.t()
    best, best_val = None, float("inf")
    for mask in range(1, 2**m):
        support = [i for i in range(m) if mask >> i & 1]
        sub = gram[support][:, support]
        raw = torch.linalg.pinv(sub) @ torch.ones(len(support), dtype=g.dtype)
        total = raw.sum()
        if abs(float(total)) < 1e-15:
            continue
        alpha_s = raw / total
        if bool((alpha_s < -1e-12).any()):
            continue
        alpha = torch.zeros(m, dtype=g.dtype)
        alpha[support] = alpha_s.clamp(min=0)
        alpha /= alpha.sum()
        value = float(alpha @ gram @ alpha)
        if value < best_val - 1e-15:
            best, best_val = alpha, value
    if best is None:  # unreachable: every single-vector support is feasible
        raise RuntimeError("min-norm solver found no feasible support")
    return best.to(grads[0].dtype)


def aggregate(
    grads: Sequence[Tensor], rule: str, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Combine per-module hypergradients; returns (combined vector, weights used)."""
    if not grads:
        raise ValueError("aggregate needs at least one gradient")
    stacked = torch.stack(list(grads))
    if rule == "random":
        z = torch.randn(len(grads), generator=generator, dtype=stacked.dtype)
        weights = torch.softmax(z, dim=0).to(stacked.device)
    elif rule == "normalized":
        norms = stacked.norm(dim=1).clamp(min=1e-12)
        weights = norms.mean() / norms / len(grads)
    elif rule == "min_norm":
        weights = min_norm_weights(list(grads)).to(stacked.device)
    else:
        raise ValueError(f"unknown aggregation rule {rule!r}; choose from {AGGREGATORS}")
    return (weights[:, None] * stacked).sum(dim=0), weights


AGGREGATORS = ("random", "normalized", "min_norm")
