"""First-order hypergradient and aggregation rules (fusion_perception.training.bilevel)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fusion_perception.training.bilevel import (  # noqa: E402
    aggregate,
    hypergradient,
    min_norm_weights,
    shared_hypergradients,
)

TOL = 1e-9  # float64 throughout: the Gauss-Newton form is exact on this problem


def _problem(seed: int = 0):
    """Lower: f = 1/2 (a.w - b.t)^2 (scalar residual); upper: F = 1/2|t - t0|^2 + 1/2|M t|^2 + d.w."""
    g = torch.Generator().manual_seed(seed)
    p, q = 4, 6
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return dict(a=r(q), b=r(p), t0=r(p), m=r(3, p), d=r(q), theta=r(p), omega=r(q))


def _upper(th, om, pr):
    return 0.5 * (th - pr["t0"]).pow(2).sum() + 0.5 * (pr["m"] @ th).pow(2).sum() + pr["d"] @ om


def _lower(th, om, pr):
    return 0.5 * (pr["a"] @ om - pr["b"] @ th) ** 2


def _omega_star(th, pr):
    """Minimum-norm move of omega onto the lower solution set {w : a.w = b.t}."""
    a = pr["a"]
    return pr["omega"] + a * (pr["b"] @ th - a @ pr["omega"]) / (a @ a)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hypergradient_matches_analytic_and_finite_difference(seed: int) -> None:
    pr = _problem(seed)
    th = pr["theta"].clone().requires_grad_(True)
    om = pr["omega"].clone().requires_grad_(True)
    h, c, _ = hypergradient(_upper(th, om, pr), _lower(th, om, pr), [th], [om])

    a, b = pr["a"], pr["b"]
    theta = pr["theta"]
    analytic = (theta - pr["t0"]) + pr["m"].t() @ (pr["m"] @ theta) + b * (a @ pr["d"]) / (a @ a)
    assert torch.allclose(h, analytic, atol=TOL, rtol=0)

    eps = 1e-6
    fd = torch.empty_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = eps
        fd[i] = (
            _upper(theta + e, _omega_star(theta + e, pr), pr)
            - _upper(theta - e, _omega_star(theta - e, pr), pr)
        ) / (2 * eps)
    assert torch.allclose(h, fd, atol=1e-6, rtol=0)
    assert c != 0.0


@pytest.mark.parametrize("seed", [0, 4])
def test_released_correction_has_the_opposite_sign_and_scale_eta(seed: int) -> None:
    """On f = ½r² the released form is ∇θF − η·(dF/dθ − ∇θF): the implicit term flipped and × η.

    Closed form: ∇θF = (θ − t0) + MᵀMθ, implicit term b·(a·d)/|a|², so the released code's
    ∇θF + η·c·∇θf (c = (a·d)/(r|a|²), ∇θf = −r·b) equals ∇θF − η·b·(a·d)/|a|².
    """
    pr = _problem(seed)
    eta = 0.01
    th = pr["theta"].clone().requires_grad_(True)
    om = pr["omega"].clone().requires_grad_(True)
    h, c, stats = hypergradient(
        _upper(th, om, pr), _lower(th, om, pr), [th], [om], correction="released", lower_lr=eta
    )
    a, b, theta = pr["a"], pr["b"], pr["theta"]
    direct = (theta - pr["t0"]) + pr["m"].t() @ (pr["m"] @ theta)
    implicit = b * (a @ pr["d"]) / (a @ a)
    assert torch.allclose(h, direct - eta * implicit, atol=TOL, rtol=0)
    r = a @ pr["omega"] - b @ theta
    assert c == pytest.approx(float((a @ pr["d"]) / (r * (a @ a))), rel=1e-12)
    true = direct + implicit
    assert not torch.allclose(h, true, atol=1e-3)
    assert stats["norm_correction"] == pytest.approx(float((eta * implicit).norm()), rel=1e-9)


def _shared_problem(seed: int):
    """Two tasks on one shared lower parameter w (segmentation and detection on one backbone).

    Lower: f = f_1 + f_2, f_m = ½(a·w − β_m)², β_m = b_m·θ + k_m (each task reads the feature a·w
    and wants it at its own θ-dependent target). Upper: F_m = ½|θ − t_m|² + d_m·w.

    f = (a·w − β̄)² + ¼(β_1 − β_2)² with β̄ the mean target: the lower solutions are
    {w : a·w = β̄(θ)}, so dF_m/dθ = ∇θF_m + b̄ (a·d_m)/|a|² with b̄ = (b_1 + b_2)/2. The offsets are
    chosen so that the tasks agree at θ (β_1 = β_2) while their sensitivities b_m differ; there the
    w-free term ¼(β_1 − β_2)² has no gradient, the lower Hessian 2aaᵀ has rank one and the
    Gauss-Newton form is exact.
    """
    g = torch.Generator().manual_seed(seed)
    p, q = 4, 6
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    pr = dict(a=r(q), b=[r(p), r(p)], t=[r(p), r(p)], d=[r(q), r(q)], theta=r(p), omega=r(q))
    k1 = float(r(()))
    pr["k"] = [k1, k1 + float((pr["b"][0] - pr["b"][1]) @ pr["theta"])]
    return pr


def _shared_lower_terms(th, om, pr):
    return [0.5 * (pr["a"] @ om - pr["b"][m] @ th - pr["k"][m]) ** 2 for m in range(2)]


def _shared_upper(th, om, pr, m):
    return 0.5 * (th - pr["t"][m]).pow(2).sum() + pr["d"][m] @ om


def _shared_omega_star(th, pr):
    a = pr["a"]
    target = sum(pr["b"][m] @ th + pr["k"][m] for m in range(2)) / 2
    return pr["omega"] + a * (target - a @ pr["omega"]) / (a @ a)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_lower_parameters_need_the_joint_lower_loss(seed: int) -> None:
    """Per task c_m over the total lower loss f = f_1 + f_2 matches the closed-form hypergradient of
    a lower level that minimises the sum; c_m from the task's own f_m (the per-task split) does not."""
    pr = _shared_problem(seed)
    a, theta = pr["a"], pr["theta"]
    th = theta.clone().requires_grad_(True)
    om = pr["omega"].clone().requires_grad_(True)
    uppers = {f"task{m}": _shared_upper(th, om, pr, m) for m in range(2)}
    f1, f2 = _shared_lower_terms(th, om, pr)
    joint = shared_hypergradients(uppers, f1 + f2, [th], [om])
    b_mean = (pr["b"][0] + pr["b"][1]) / 2
    for m in range(2):
        analytic = (theta - pr["t"][m]) + b_mean * (a @ pr["d"][m]) / (a @ a)
        h, c, _ = joint[f"task{m}"]
        assert torch.allclose(h, analytic, atol=TOL, rtol=0)
        eps = 1e-6
        fd = torch.empty_like(theta)
        for i in range(theta.numel()):
            e = torch.zeros_like(theta)
            e[i] = eps
            fd[i] = (
                _shared_upper(theta + e, _shared_omega_star(theta + e, pr), pr, m)
                - _shared_upper(theta - e, _shared_omega_star(theta - e, pr), pr, m)
            ) / (2 * eps)
        assert torch.allclose(h, fd, atol=1e-6, rtol=0)

        # The per-task split: each task's hypergradient through its own lower term alone.
        own = _shared_lower_terms(th, om, pr)[m]
        split, c_split, _ = hypergradient(_shared_upper(th, om, pr, m), own, [th], [om])
        split_closed_form = (theta - pr["t"][m]) + pr["b"][m] * (a @ pr["d"][m]) / (a @ a)
        assert torch.allclose(split, split_closed_form, atol=TOL, rtol=0)
        implicit = analytic - (theta - pr["t"][m])
        assert float((split - analytic).norm()) > 0.3 * float(implicit.norm())  # |b_m − b̄| vs |b̄|
        assert c_split == pytest.approx(2 * c, rel=1e-9)  # f_m is half of f here: c halves, ∇θf differs


def test_one_upper_through_the_shared_form_is_the_single_form() -> None:
    pr = _problem(3)
    th = pr["theta"].clone().requires_grad_(True)
    om = pr["omega"].clone().requires_grad_(True)
    single = hypergradient(_upper(th, om, pr), _lower(th, om, pr), [th], [om])
    shared = shared_hypergradients({"F": _upper(th, om, pr)}, _lower(th, om, pr), [th], [om])["F"]
    assert torch.equal(single[0], shared[0]) and single[1] == shared[1]


def test_unknown_correction_is_refused() -> None:
    pr = _problem(1)
    th = pr["theta"].clone().requires_grad_(True)
    om = pr["omega"].clone().requires_grad_(True)
    with pytest.raises(ValueError, match="correction"):
        hypergradient(_upper(th, om, pr), _lower(th, om, pr), [th], [om], correction="scaled")


def test_random_rule_is_a_fresh_softmax_of_noise() -> None:
    grads = [torch.randn(10, dtype=torch.float64) for _ in range(3)]
    gen = torch.Generator().manual_seed(0)
    combined, w = aggregate(grads, "random", generator=gen)
    assert torch.all(w > 0) and torch.isclose(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    assert torch.allclose(combined, sum(wi * g for wi, g in zip(w, grads, strict=True)))
    _, w2 = aggregate(grads, "random", generator=gen)
    assert not torch.allclose(w, w2)


def test_normalized_rule_gives_every_module_the_same_norm() -> None:
    grads = [torch.randn(10, dtype=torch.float64) * s for s in (0.01, 1.0, 100.0)]
    _, w = aggregate(grads, "normalized")
    norms = torch.stack([(wi * g).norm() for wi, g in zip(w, grads, strict=True)])
    assert torch.allclose(norms, norms[0].expand(3), rtol=1e-12)


@pytest.mark.parametrize("m", [2, 3])
def test_min_norm_rule_is_the_min_norm_point_and_conflict_free(m: int) -> None:
    gen = torch.Generator().manual_seed(m)
    grads = [torch.randn(8, generator=gen, dtype=torch.float64) for _ in range(m)]
    d, w = aggregate(grads, "min_norm")
    assert torch.all(w >= -1e-12) and torch.isclose(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    # KKT of min |sum a_m g_m|^2 on the simplex: <d, g_m> >= |d|^2 for every m (no objective increases).
    for g in grads:
        assert float(d @ g) >= float(d @ d) - 1e-8
    # no convex combination is shorter
    samples = torch.distributions.Dirichlet(torch.ones(m, dtype=torch.float64)).sample((2000,))
    others = samples @ torch.stack(grads)
    assert float(d.norm()) <= float(others.norm(dim=1).min()) + 1e-9


def test_min_norm_known_cases() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(min_norm_weights([e1, e2]), torch.tensor([0.5, 0.5]))
    assert torch.allclose(min_norm_weights([e1, 3 * e1]), torch.tensor([1.0, 0.0]))
    d, _ = aggregate([e1, e1, e1], "min_norm")
    assert torch.allclose(d, e1)


@pytest.mark.parametrize(
    ("grads", "expected_norm"),
    [
        ([[0.0, 0.0], [1.0, 0.0]], 0.0),  # a module without signal (e.g. a crop with no labels)
        ([[1.0, 0.0], [-1.0, 0.0]], 0.0),  # opposed, collinear
        ([[2.0, 0.0], [-1.0, 0.0]], 0.0),  # opposed, unequal
        ([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], 0.0),
        ([[1.0, 1.0], [2.0, 2.0]], 2**0.5),  # same direction: the shorter one
    ],
)
def test_min_norm_degenerate_gradients(grads: list[list[float]], expected_norm: float) -> None:
    vectors = [torch.tensor(g, dtype=torch.float64) for g in grads]
    d, w = aggregate(vectors, "min_norm")
    assert float(d.norm()) == pytest.approx(expected_norm, abs=1e-9)
    assert torch.all(w >= 0) and float(w.sum()) == pytest.approx(1.0)


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown aggregation rule"):
        aggregate([torch.ones(2)], "mean")
