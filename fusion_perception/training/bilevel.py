"""First-order hypergradients and their aggregation (BDLFusion, Liu et al., IJCAI 2023).

Bi-level problem: min_θ F(θ, ω*(θ)) with ω*(θ) = argmin_ω f(θ, ω). The implicit gradient is

    dF/dθ = ∇θF − ∇²θω f · (∇²ωω f)⁻¹ ∇ωF.

Two first-order corrections are implemented (``CORRECTIONS``), each with c = ⟨∇ωF, ∇ωf⟩ / ‖∇ωf‖²:

* ``gauss_newton`` (derived here): approximate both second-derivative blocks by outer products of
  first derivatives (∇²ωω f ≈ ∇ωf ∇ωfᵀ / f·2, ∇²θω f ≈ ∇θf ∇ωfᵀ / f·2, exact for f = ½r² with
  a scalar residual r and r∇²r negligible) and take the pseudo-inverse:

      h = ∇θF − c · ∇θf.

  Exact on a scalar least-squares lower problem: ``test/test_bilevel.py`` checks it against the
  closed-form hypergradient.
* ``released`` (the BDLFusion code, ``architect_average2.py``: the implicit term is built from the
  loss −c·f and *subtracted* with the lower-level learning rate η):

      h = ∇θF + η · c · ∇θf.

  Opposite sign to the derivation and smaller by η; it reduces to ∇θF + O(η). Kept for
  reproduction; on the closed-form problem it does not match the hypergradient (tested and stated).

F and f must be evaluated on different batches (F on held-out pairs): on the same batch c = 1 and
the Gauss-Newton h vanishes identically.

Several upper objectives over one lower problem (``shared_hypergradients``). The task net's
segmentation and detection heads share backbone and neck, and its lower level steps on the sum
f = f_seg + f_det over all of its parameters ω. ω*(θ) is the minimiser of that sum, so every
task's hypergradient goes through the same lower problem: c_m = ⟨∇ωF_m, ∇ωf⟩ / ‖∇ωf‖² and
h_m = ∇θF_m − c_m ∇θf, with f the *total* lower loss and ω all of its parameters. Splitting it
per task (c_m from f_m over backbone + head m alone, as the released code does for its two
separate networks) models a lower level in which each task moves the shared weights on its own
loss alone, which is not the lower level that runs; ``test/test_bilevel.py`` shows the split form
missing the closed-form hypergradient of a shared quadratic lower level that the joint form hits.
Lower problems over disjoint parameters with their own losses (the discriminator) stay separate.

Aggregation of the per-module hypergradients h_1..h_M ("dynamic weighted aggregation"):

* ``random``: weights softmax(z), z ~ N(0, I), fresh each step (the released code);
* ``normalized``: every h_m rescaled to the mean norm, then averaged (no module dominates by scale);
* ``min_norm``: the minimum-norm point of the convex hull of {h_m} (MGDA, Désidéri 2012): a
  direction d with ⟨d, h_m⟩ ≥ ‖d‖² for all m, i.e. no module's objective increases to first order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "AGGREGATORS",
    "CORRECTIONS",
    "Hypergradient",
    "aggregate",
    "flat_grad",
    "hypergradient",
    "min_norm_weights",
    "shared_hypergradients",
]

CORRECTIONS = ("gauss_newton", "released")
AGGREGATORS = ("random", "normalized", "min_norm")


def flat_grad(loss: Tensor, params: Sequence[Tensor], *, retain_graph: bool = True) -> Tensor:
    """Gradient of ``loss`` w.r.t. ``params`` as one flat vector (zeros where a param is unused)."""
    grads = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


Hypergradient = tuple[Tensor, float, dict[str, float]]


def shared_hypergradients(
    uppers: Mapping[str, Tensor],
    lower: Tensor,
    theta: Sequence[Tensor],
    omega: Sequence[Tensor],
    *,
    correction: str = "gauss_newton",
    lower_lr: float = 0.0,
    eps: float = 1e-12,
) -> dict[str, Hypergradient]:
    """First-order hypergradients of several upper objectives F_m through one lower problem min_ω f.

    Args:
        uppers: F_m by name, each evaluated on a held-out batch, differentiable in θ and ω.
        lower: f, the *total* loss the lower level steps on (e.g. f_seg + f_det), on a training
            batch, differentiable in θ and ω.
        theta: upper-level parameters (the fusion net).
        omega: every parameter of the lower problem (shared backbone and all heads).
        correction: ``gauss_newton`` (∇θF_m − c_m∇θf) or ``released`` (∇θF_m + η·c_m·∇θf),
            module docstring.
        lower_lr: η, used by ``released`` only.

    Returns:
        Per name: (flat hypergradient over θ, the scalar c_m, diagnostics: norms of ∇θF_m, of the
        correction and their cosine, so a log shows when the correction dominates or opposes ∇θF_m).
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    # One backward pass per loss over θ and ω together: the task network is the costly part of
    # the graph, and splitting θ from ω would traverse it twice. f's gradient is shared by all F_m.
    params = [*theta, *omega]
    n_theta = sum(p.numel() for p in theta)
    g_lower = flat_grad(lower, params)
    g_theta_lower, g_omega_lower = g_lower[:n_theta], g_lower[n_theta:]
    denominator = g_omega_lower.pow(2).sum() + eps
    out: dict[str, Hypergradient] = {}
    for name, upper in uppers.items():
        g_upper = flat_grad(upper, params)
        c = float(torch.dot(g_upper[n_theta:], g_omega_lower) / denominator)
        factor = -c if correction == "gauss_newton" else lower_lr * c
        corr = factor * g_theta_lower
        direct = g_upper[:n_theta]
        stats = {
            "norm_direct": float(direct.norm()),
            "norm_correction": float(corr.norm()),
            "cos_direct_correction": float(
                torch.dot(direct, corr) / (direct.norm() * corr.norm()).clamp(min=1e-30)
            ),
        }
        out[name] = (direct + corr, c, stats)
    return out


def hypergradient(
    upper: Tensor,
    lower: Tensor,
    theta: Sequence[Tensor],
    omega: Sequence[Tensor],
    *,
    correction: str = "gauss_newton",
    lower_lr: float = 0.0,
    eps: float = 1e-12,
) -> Hypergradient:
    """``shared_hypergradients`` for a single upper objective F over the lower problem min_ω f."""
    return shared_hypergradients(
        {"F": upper}, lower, theta, omega, correction=correction, lower_lr=lower_lr, eps=eps
    )["F"]


def min_norm_weights(grads: Sequence[Tensor]) -> Tensor:
    """Weights α on the simplex minimising ‖Σ α_m g_m‖², solved exactly.

    With M = 2-3 modules the QP is tiny: for every support S, the minimiser of αᵀGα on the affine
    hull 1ᵀα = 1 solves the KKT system [[2G, 1], [1ᵀ, 0]] [α; λ] = [0; 1] (G the Gram matrix of S);
    least squares solves it also when G is singular (a zero gradient, collinear gradients), where
    a pseudo-inverse of G alone gives no answer. The best candidate with α ≥ 0 over all 2^M − 1
    supports is the optimum. Exact, unlike Frank-Wolfe, whose O(1/k) convergence leaves error.
    """
    m = len(grads)
    if not 1 <= m <= 8:
        raise ValueError(f"min_norm_weights supports 1..8 gradients, got {m}")
    g = torch.stack([v.detach().double().cpu() for v in grads])
    gram = g @ g.t()
    best, best_val = None, float("inf")
    for mask in range(1, 2**m):
        support = [i for i in range(m) if mask >> i & 1]
        k = len(support)
        kkt = torch.zeros(k + 1, k + 1, dtype=g.dtype)
        kkt[:k, :k] = 2 * gram[support][:, support]
        kkt[:k, k] = 1.0
        kkt[k, :k] = 1.0
        rhs = torch.zeros(k + 1, dtype=g.dtype)
        rhs[k] = 1.0
        alpha_s = torch.linalg.lstsq(kkt, rhs.unsqueeze(1), driver="gelsd").solution[:k, 0]
        if abs(float(alpha_s.sum()) - 1.0) > 1e-9 or bool((alpha_s < -1e-12).any()):
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
