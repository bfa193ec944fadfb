"""Learnable fusion loss (TDFusion / ReFusion): loss net bounds, meta-gradients, meta step, resume.

Tolerances (all float64 on tiny problems unless said otherwise):

* exact meta-gradient vs central differences of the outer objective J(φ) = L_out(θ'(φ)) along 4
  random unit directions of φ (h = 1e-6): relative error ≤ 1e-4 (measured ≤ 2e-6);
* finite-difference (DARTS) meta-gradient vs exact, relative error (L2 norm over φ):
  smooth inner loss (no gradient term) ≤ 1e-6 at fd_eps = 1e-3 and shrinking ≥ 50x per 10x
  smaller fd_eps, i.e. O(fd_eps²) (measured 6.4e-4, 6.4e-6, 6.4e-8, 6.4e-10 at 1e-1 ... 1e-4);
  full loss ≤ 1e-4 at fd_eps = 1e-3 (measured 5.5e-8: the tiny problem crosses no L1 kink; on
  GuidedFusionNet, whose clamp and PReLU kinks are crossed, 1-2% at 1e-3, see meta_config.py);
* first-order meta-gradient = the direct term only: exactly zero when φ enters the outer objective
  only through θ', and exact(outer + direct) − exact(outer) otherwise (1e-12).
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from torch import Tensor, nn  # noqa: E402

from fusion_perception.models.fusion import GuidedFusionNet  # noqa: E402
from fusion_perception.models.loss_net import LossNet  # noqa: E402
from fusion_perception.training.config import LossConfig, load_config  # noqa: E402
from fusion_perception.training.data import PairFolder, collate  # noqa: E402
from fusion_perception.training.learned_loss import learned_fusion_loss  # noqa: E402
from fusion_perception.training.loss_learner import LossNetLearner, OuterFn, Reconstructor  # noqa: E402
from fusion_perception.training.losses import ssim  # noqa: E402
from fusion_perception.training.meta import (  # noqa: E402
    both_orders,
    fusion_parameters,
    meta_gradient,
    repeat_batch,
    virtual_step,
)
from fusion_perception.training.meta_config import MetaConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class _TinyFusion(nn.Module):
    """A smooth two-layer fusion net (tanh, sigmoid): no kinks, so finite differences are clean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 1, 1)

    def forward(self, ir: Tensor, vis_y: Tensor) -> Tensor:
        return torch.sigmoid(self.conv2(torch.tanh(self.conv1(torch.cat((ir, vis_y), 1)))))


class _Problem(NamedTuple):
    """A ReFusion-style meta problem: G (``learner``), R (``recon``), F (``fusion``), one batch."""

    learner: LossNetLearner
    recon: Reconstructor
    fusion: nn.Module
    batch: dict[str, Tensor]

    def outer_value(self) -> float:
        return self.learner.outer_value(self.fusion, self.batch, self.recon.objective)


def _tiny_problem(seed: int = 0, **loss_over: float) -> _Problem:
    """Tiny G and R (random, non-trivial outputs), a tiny F, a 2x16x16 batch, one source order."""
    torch.manual_seed(seed)
    cfg = MetaConfig(loss_net_width=4, loss_net_scale=2, recon_width=4, inner_lr=0.1, swap_orders=False)
    learner = LossNetLearner(cfg, LossConfig(intensity=5.0, **loss_over)).to(torch.float64)
    recon = Reconstructor(cfg).to(torch.float64)
    with torch.no_grad():  # leave the neutral start so every share and residual head matters
        for p in (learner.loss_net.score.weight, recon.net.head_ir.weight, recon.net.head_vis.weight):
            p.normal_(0.0, 0.5)
    batch = {
        "ir": torch.rand(2, 1, 16, 16, dtype=torch.float64),
        "visible": torch.rand(2, 3, 16, 16, dtype=torch.float64),
    }
    return _Problem(learner, recon, _TinyFusion().double(), batch)


def _meta_grad(problem: _Problem, mode: str, **kw: object) -> Tensor:
    learner, batch = problem.learner, problem.batch
    ir, vis_y = batch["ir"], batch["visible"][:, :1]
    weights = learner.loss_net(ir, vis_y)
    outer = kw.pop("outer", lambda f: problem.recon.objective(f, batch))
    result = meta_gradient(
        problem.fusion,
        (ir, vis_y),
        lambda f: learned_fusion_loss(f, ir, vis_y, weights, learner.loss)[0],
        outer,
        list(learner.loss_net.parameters()),
        lr=learner.cfg.inner_lr,
        mode=mode,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return torch.cat([g.flatten() for g in result.grads])


# --------------------------------------------------------------------------- loss net
def test_shares_stay_bounded_and_normalised_under_extreme_inputs() -> None:
    torch.manual_seed(0)
    g = LossNet(width=8, scale=4, eps=0.05)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0.0, 30.0)  # saturate the softmax
    for ir, vis in (
        (torch.zeros(2, 1, 37, 53), torch.ones(2, 1, 37, 53)),
        (torch.full((2, 1, 37, 53), 1e4), torch.full((2, 1, 37, 53), -1e4)),
        (torch.rand(2, 1, 37, 53) * 1e3, torch.rand(2, 1, 37, 53)),
    ):
        with torch.no_grad():
            w = g(ir, vis)
        for shares in w:
            assert shares.shape == (2, 2, 37, 53)
            assert torch.isfinite(shares).all()
            assert float(shares.min()) >= 0.05 - 1e-6 and float(shares.max()) <= 0.95 + 1e-6
            assert torch.allclose(shares.sum(1), torch.ones(2, 37, 53), atol=1e-6)
        assert float(w.intensity.max()) > 0.9  # saturated, so the bound is what held them


def test_neutral_start_and_swap_equivariance() -> None:
    torch.manual_seed(1)
    g = LossNet(width=8)
    ir, vis = torch.rand(3, 1, 32, 40), torch.rand(3, 1, 32, 40)
    assert torch.allclose(g(ir, vis).intensity, torch.full((3, 2, 32, 40), 0.5), atol=0.02)  # near-neutral
    with torch.no_grad():
        g.score.weight.normal_(0.0, 1.0)
    a, b = g(ir, vis), g(vis, ir)
    assert float((a.intensity[:, 0] - 0.5).abs().max().detach()) > 1e-3
    for x, y in zip(a.swapped(), b, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_both_orders_pairs_every_sample_with_its_swap() -> None:
    ir, vis = torch.rand(3, 1, 4, 5), torch.rand(3, 1, 4, 5)
    first, second = both_orders(ir, vis)
    assert torch.equal(first, torch.cat((ir, vis))) and torch.equal(second, torch.cat((vis, ir)))
    batch = {"ir": ir, "visible": vis.repeat(1, 3, 1, 1), "boxes": [1, 2, 3], "fused": None}
    doubled = repeat_batch(batch)
    assert torch.equal(doubled["ir"], torch.cat((ir, ir))) and doubled["boxes"] == [1, 2, 3, 1, 2, 3]
    assert doubled["fused"] is None


def test_meta_step_and_learned_loss_feed_both_orders() -> None:
    """With swap_orders every fusion-net call of a meta step sees each pair in both orders, and a
    symmetric G gives the swapped pair the swapped shares, so L_f weighs each source the same
    whichever input slot it came through."""
    torch.manual_seed(0)
    cfg = MetaConfig(loss_net_width=4, recon_width=4)
    learner, recon = LossNetLearner(cfg, LossConfig()), Reconstructor(cfg)
    with torch.no_grad():
        learner.loss_net.score.weight.normal_(0.0, 1.0)
    fusion = GuidedFusionNet(width=4)
    batch = {"ir": torch.rand(2, 1, 32, 32), "visible": torch.rand(2, 3, 32, 32)}
    calls: list[tuple[Tensor, Tensor]] = []
    fusion.register_forward_pre_hook(lambda _m, args: calls.append(args))
    learner.meta_step(fusion, batch, recon.objective, outer_batch=batch)
    assert len(calls) == 2  # the virtual step and the outer objective
    for first, second in calls:
        assert first.shape[0] == 4
        assert torch.equal(first[:2], second[2:]) and torch.equal(first[2:], second[:2])
    first, second, targets = learner.fusion_inputs(batch)
    assert torch.equal(targets["ir"], torch.cat((batch["ir"], batch["ir"])))  # targets in modality order
    w = learner.weights(first, second)
    torch.testing.assert_close(w.intensity[2:], w.intensity[:2].flip(1), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- meta-gradients
def test_virtual_step_is_one_sgd_step_and_leaves_the_module_alone() -> None:
    torch.manual_seed(0)
    fusion = _TinyFusion().double()
    theta = fusion_parameters(fusion)
    before = {n: p.detach().clone() for n, p in theta.items()}
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    loss = (fusion(x, x) ** 2).mean()
    grads = torch.autograd.grad(loss, list(theta.values()), retain_graph=True)
    stepped = virtual_step(theta, loss, 0.5, create_graph=False)
    for (name, p), g in zip(theta.items(), grads, strict=True):
        torch.testing.assert_close(stepped[name], before[name] - 0.5 * g, atol=0, rtol=0)
        assert not stepped[name].requires_grad and p.grad is None and torch.equal(p, before[name])
    loss = (fusion(x, x) ** 2).mean()  # the step above freed the first graph
    assert all(t.requires_grad for t in virtual_step(theta, loss, 0.5, create_graph=True).values())


def test_exact_meta_gradient_matches_central_differences() -> None:
    problem = _tiny_problem()
    problem.learner.cfg.inner_lr = 1.0  # a large virtual step: a large meta-gradient, far above round-off
    exact = _meta_grad(problem, "exact")
    params = list(problem.learner.loss_net.parameters())
    gen = torch.Generator().manual_seed(0)
    h = 1e-4  # |Δφ| = h. G has PReLU kinks: much larger probes cross some and break the quotient

    def outer_at(direction: list[Tensor], step: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(step * d)
        value = problem.outer_value()
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(step * d)
        return value

    for _ in range(4):  # directional derivatives along random unit directions in φ-space
        direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        norm = float(torch.sqrt(sum((d**2).sum() for d in direction)))
        direction = [d / norm for d in direction]
        numeric = (outer_at(direction, h) - outer_at(direction, -h)) / (2 * h)
        analytic = float(exact @ torch.cat([d.flatten() for d in direction]))
        assert abs(analytic) > 1e-7  # G really moves the outer objective
        assert abs(numeric - analytic) <= 1e-4 * abs(analytic)


def test_finite_difference_meta_gradient_converges_at_second_order() -> None:
    problem = _tiny_problem(gradient=0.0)  # smooth L_f: l2 intensity + SSIM
    exact = _meta_grad(problem, "exact")
    errors = [
        float((_meta_grad(problem, "finite_difference", fd_eps=e) - exact).norm() / exact.norm())
        for e in (1e-2, 1e-3)
    ]
    assert errors[1] <= 1e-6
    assert errors[0] / errors[1] >= 50.0  # O(fd_eps²): 100x in theory


def test_finite_difference_meta_gradient_with_the_full_loss() -> None:
    problem = _tiny_problem()  # L1 gradient term: kinks in L_f
    exact = _meta_grad(problem, "exact")
    approx = _meta_grad(problem, "finite_difference", fd_eps=1e-3)
    assert float((approx - exact).norm() / exact.norm()) <= 1e-4
    # Probing only the G-weighted terms (what LossNetLearner does) changes nothing: SSIM has no ∇φ.
    ir, vis_y = problem.batch["ir"], problem.batch["visible"][:, :1]
    weights = problem.learner.loss_net(ir, vis_y)
    no_ssim = replace(problem.learner.loss, ssim=0.0)
    probed = _meta_grad(
        problem,
        "finite_difference",
        fd_eps=1e-3,
        probe_loss=lambda f: learned_fusion_loss(f, ir, vis_y, weights, no_ssim)[0],
    )
    torch.testing.assert_close(probed, approx, atol=1e-15, rtol=1e-10)


def test_first_order_keeps_only_the_direct_term() -> None:
    problem = _tiny_problem()
    assert float(_meta_grad(problem, "first_order").abs().max()) == 0.0
    batch = problem.batch
    ir, vis_y = batch["ir"], batch["visible"][:, :1]

    def outer_with_direct(fused: Tensor) -> Tensor:  # an outer objective that also sees φ directly
        return (
            problem.recon.objective(fused, batch)
            + 0.3 * problem.learner.loss_net(ir, vis_y).gradient[:, 0].mean()
        )

    direct = _meta_grad(problem, "first_order", outer=outer_with_direct)
    assert float(direct.abs().max()) > 0
    mixed = _meta_grad(problem, "exact")
    total = _meta_grad(problem, "exact", outer=outer_with_direct)
    torch.testing.assert_close(total, mixed + direct, atol=1e-12, rtol=0)
    fd_total = _meta_grad(problem, "finite_difference", fd_eps=1e-3, outer=outer_with_direct)
    assert float((fd_total - total).norm() / total.norm()) <= 1e-4


# --------------------------------------------------------------------------- meta step on real pairs
def _msrs_batch(root: Path, n: int = 2, size: int = 64) -> dict[str, Tensor]:
    """``n`` real MSRS pairs (the shipped samples, ``root`` in the MSRS layout) as a float64 batch."""
    names = sorted(p.stem for p in (root / "ir").iterdir())[:n]
    folder = PairFolder(root, names, labelled=False, crop=(size, size), seed=0)
    batch = collate([folder[i] for i in range(n)])
    return {"ir": batch["ir"].double(), "visible": batch["visible"].double()}


@pytest.mark.parametrize("mode", ["exact", "finite_difference"])
def test_one_meta_step_lowers_the_reconstruction_objective(mode: str, sample_pairs_msrs: Path) -> None:
    torch.manual_seed(0)
    batch = _msrs_batch(sample_pairs_msrs)
    fusion = GuidedFusionNet(width=8).double()
    cfg = MetaConfig(mode=mode, inner_lr=0.05, meta_lr=1e-3, loss_net_width=8, recon_width=8)
    learner = LossNetLearner(cfg, LossConfig(intensity=5.0)).to(torch.float64)
    recon = Reconstructor(cfg).to(torch.float64)
    for _ in range(3):  # give R something to say about the fused image
        recon.step(fusion(batch["ir"], batch["visible"][:, :1]), batch)
    before = learner.outer_value(fusion, batch, recon.objective)
    logs = learner.meta_step(fusion, batch, recon.objective)
    after = learner.outer_value(fusion, batch, recon.objective)
    assert logs["meta_outer"] == pytest.approx(before, rel=1e-12)
    assert logs["meta_grad_norm"] > 0
    assert after < before


class _BlendFusion(nn.Module):
    """F = s·IR + (1 − s)·VIS with a per-pixel share s = sigmoid(θ): every F_θ' is a blend."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.logit = nn.Parameter(0.1 * torch.randn(1, 1, height, width, dtype=torch.float64))

    def forward(self, ir: Tensor, vis_y: Tensor) -> Tensor:
        s = torch.sigmoid(self.logit)
        return s * ir + (1.0 - s) * vis_y


def test_pretrained_reconstruction_net_gives_the_l1_term_a_gradient_from_step_one(
    sample_pairs_msrs: Path,
) -> None:
    """ReFusion's outer objective L1(R(F), sources) + (1 − SSIM): with a fresh R (residual heads at
    zero, R(F) = (F, F)) the L1 term is |F − IR| + |F − VIS| = |IR − VIS| for every blend F between
    the sources, so neither the blend weight nor G's parameters get a gradient from it and G learns
    from SSIM alone. After R's pre-training on blends (what ``ReFusionScheme`` does before its first
    iteration), both gradients of the L1 term are non-zero at the first meta step."""
    torch.manual_seed(0)
    batch = _msrs_batch(sample_pairs_msrs, n=4)
    ir, vis_y = batch["ir"], batch["visible"][:, :1]
    cfg = MetaConfig(inner_lr=0.05, swap_orders=False, loss_net_width=8, recon_width=8, recon_lr=1e-2)
    learner = LossNetLearner(cfg, LossConfig(intensity=5.0)).to(torch.float64)
    with torch.no_grad():  # a G whose shares vary, as after a few meta steps
        learner.loss_net.score.weight.normal_(0.0, 0.5)
    fusion = _BlendFusion(*ir.shape[-2:])

    def parts(recon: Reconstructor) -> tuple[OuterFn, OuterFn]:
        def l1(fused: Tensor, b: dict[str, Tensor]) -> Tensor:
            ir_hat, vis_hat = recon.net(fused)
            return 0.5 * ((ir_hat - b["ir"]).abs().mean() + (vis_hat - b["visible"][:, :1]).abs().mean())

        def structure(fused: Tensor, b: dict[str, Tensor]) -> Tensor:
            ir_hat, vis_hat = recon.net(fused)
            return 1.0 - 0.5 * (ssim(ir_hat, b["ir"]) + ssim(vis_hat, b["visible"][:, :1]))

        return l1, structure

    def blend_slope(l1: OuterFn, alpha: float) -> float:
        a = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
        return float(torch.autograd.grad(l1(a * ir + (1 - a) * vis_y, batch), a)[0])

    def meta_norm(outer: OuterFn) -> float:
        grads = learner.meta_gradient(fusion, batch, outer)[0].grads
        return float(torch.sqrt(sum((g**2).sum() for g in grads)))

    l1, structure = parts(Reconstructor(cfg).to(torch.float64))
    assert all(abs(blend_slope(l1, a)) < 1e-12 for a in (0.2, 0.5, 0.8))
    assert meta_norm(l1) < 1e-12 < meta_norm(structure)

    warm = Reconstructor(cfg).to(torch.float64)
    warm.pretrain([batch] * 20, torch.Generator().manual_seed(0))
    l1, structure = parts(warm)
    assert all(abs(blend_slope(l1, a)) > 1e-2 for a in (0.2, 0.5, 0.8))
    assert meta_norm(l1) > 0.05 * meta_norm(structure)  # measured 1.2e-8 vs 7.6e-8


# --------------------------------------------------------------------------- state
def test_resume_continues_bit_exactly(tmp_path: Path) -> None:
    def steps(
        learner: LossNetLearner, recon: Reconstructor, fusion: nn.Module, batch: dict[str, Tensor]
    ) -> list:
        logs = []
        for _ in range(2):
            logs.append(learner.meta_step(fusion, batch, recon.objective))
            logs.append(recon.step(fusion(batch["ir"], batch["visible"][:, :1]), batch))
        return logs

    cfg = MetaConfig(mode="finite_difference", loss_net_width=4, recon_width=4)
    torch.manual_seed(0)
    fusion = GuidedFusionNet(width=4)
    batch = {"ir": torch.rand(2, 1, 32, 32), "visible": torch.rand(2, 3, 32, 32)}
    a, ra = LossNetLearner(cfg, LossConfig()), Reconstructor(cfg)
    steps(a, ra, fusion, batch)
    buffer = io.BytesIO()
    torch.save({"loss_net": a.state_dict(), "recon": ra.state_dict()}, buffer)
    expected = steps(a, ra, fusion, batch)

    torch.manual_seed(123)  # a different initialisation, overwritten by the checkpoint
    b, rb = LossNetLearner(cfg, LossConfig()), Reconstructor(cfg)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    b.load_state_dict(state["loss_net"])
    rb.load_state_dict(state["recon"])
    assert steps(b, rb, fusion, batch) == expected
    for x, y in zip(a.state_dict()["loss_net"].values(), b.state_dict()["loss_net"].values(), strict=True):
        assert torch.equal(x, y)
    assert b.meta_steps == a.meta_steps == 4


# --------------------------------------------------------------------------- API edges
def test_fusion_loss_freezes_g() -> None:
    learner = LossNetLearner(MetaConfig(loss_net_width=4), LossConfig())
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    fused = torch.rand(1, 1, 16, 16, requires_grad=True)
    loss, terms = learner.fusion_loss(fused, ir, vis)
    loss.backward()
    assert fused.grad is not None and set(terms) == {"intensity", "gradient", "ssim"}
    assert all(p.grad is None for p in learner.loss_net.parameters())
    stats = learner.weight_stats(ir, vis)
    assert stats["w_int_ir_mean"] == pytest.approx(0.5, abs=0.02) and stats["w_grad_ir_std"] < 0.02


def test_dump_weight_maps_writes_one_panel_per_pair(tmp_path: Path) -> None:
    learner = LossNetLearner(MetaConfig(loss_net_width=4), LossConfig())
    pairs = [(f"p{i}", torch.rand(1, 24, 40), torch.rand(1, 24, 40)) for i in range(2)]
    written = learner.dump_weight_maps(pairs, tmp_path / "maps")
    assert [p.name for p in written] == ["p0_loss_weights.png", "p1_loss_weights.png"]
    panel = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    assert panel.shape == (24, 4 * 40 + 3 * 4) and panel.dtype == np.uint8
    assert abs(int(panel[5, 2 * 44 + 5]) - 128) <= 5  # near-neutral start: share 0.5 ± 0.02


def test_meta_config_validation() -> None:
    MetaConfig().validate()
    with pytest.raises(ValueError, match="identically zero"):
        MetaConfig(mode="first_order").validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="share_eps"):
        MetaConfig(share_eps=0.5).validate()
    with pytest.raises(ValueError, match="recon_pretrain_steps"):
        MetaConfig(recon_pretrain_steps=-1).validate()
    with pytest.raises(ValueError, match="both 0"):
        load_config(None, {"scheme": "tdfusion", "loss": {"intensity": 0.0, "gradient": 0.0}})
    load_config(None, {"scheme": "plain", "loss": {"intensity": 0.0, "gradient": 0.0}})  # hand-set: SSIM only


@pytest.mark.parametrize("name", ["train_tdfusion.yaml", "train_refusion.yaml"])
def test_shipped_meta_sections_are_valid(name: str) -> None:
    yaml = pytest.importorskip("yaml")
    raw = yaml.safe_load((REPO / "config" / name).read_text())
    assert raw["scheme"] == name.removeprefix("train_").removesuffix(".yaml")
    MetaConfig(**raw["meta"]).validate()
    assert raw["loss"]["intensity"] == 5.0  # the squared intensity term's weight (LossConfig docstring)
