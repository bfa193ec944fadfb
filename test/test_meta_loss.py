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

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from torch import Tensor, nn  # noqa: E402

from fusion_perception.models.fusion import GuidedFusionNet  # noqa: E402
from fusion_perception.models.loss_net import LossNet  # noqa: E402
from fusion_perception.training.data import PairFolder, collate  # noqa: E402
from fusion_perception.training.learned_loss import learned_fusion_loss  # noqa: E402
from fusion_perception.training.meta import (  # noqa: E402
    MetaLossScheme,
    fusion_parameters,
    meta_gradient,
    swap_sources,
    virtual_step,
)
from fusion_perception.training.meta_config import MetaConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MSRS = REPO.parent / "shared" / "datasets" / "msrs"
needs_msrs = pytest.mark.skipif(
    not MSRS.is_dir(), reason="MSRS dataset (../shared/datasets/msrs) not present"
)


class _TinyFusion(nn.Module):
    """A smooth two-layer fusion net (tanh, sigmoid): no kinks, so finite differences are clean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 1, 1)

    def forward(self, ir: Tensor, vis_y: Tensor) -> Tensor:
        return torch.sigmoid(self.conv2(torch.tanh(self.conv1(torch.cat((ir, vis_y), 1)))))


def _tiny_problem(seed: int = 0, **cfg_over: object) -> tuple[MetaLossScheme, nn.Module, dict[str, Tensor]]:
    """A refusion scheme with tiny G and R (random, non-trivial outputs), a tiny F, a 2x16x16 batch."""
    torch.manual_seed(seed)
    cfg = MetaConfig(loss_net_width=4, loss_net_scale=2, recon_width=4, inner_lr=0.1, swap_prob=0.0)
    for key, value in cfg_over.items():
        setattr(cfg, key, value)
    scheme = MetaLossScheme(cfg, scheme="refusion").to(torch.float64)
    assert scheme.recon is not None
    with torch.no_grad():  # leave the neutral start so every share and residual head matters
        for p in (scheme.loss_net.score.weight, scheme.recon.head_ir.weight, scheme.recon.head_vis.weight):
            p.normal_(0.0, 0.5)
    fusion = _TinyFusion().double()
    batch = {
        "ir": torch.rand(2, 1, 16, 16, dtype=torch.float64),
        "visible": torch.rand(2, 3, 16, 16, dtype=torch.float64),
    }
    return scheme, fusion, batch


def _meta_grad(
    scheme: MetaLossScheme, fusion: nn.Module, batch: dict[str, Tensor], mode: str, **kw: object
) -> Tensor:
    ir, vis_y = batch["ir"], batch["visible"][:, :1]
    weights = scheme.loss_net(ir, vis_y)
    outer = kw.pop("outer", lambda f: scheme.reconstruction_objective(f, batch))
    result = meta_gradient(
        fusion,
        (ir, vis_y),
        lambda f: learned_fusion_loss(f, ir, vis_y, weights, scheme.cfg)[0],
        outer,
        list(scheme.loss_net.parameters()),
        lr=scheme.cfg.inner_lr,
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


def test_swap_sources_is_reproducible_and_needs_a_generator() -> None:
    a, b = torch.zeros(64, 1, 2, 2), torch.ones(64, 1, 2, 2)
    first, second, swapped = swap_sources(a, b, 0.5, torch.Generator().manual_seed(3))
    again = swap_sources(a, b, 0.5, torch.Generator().manual_seed(3))[2]
    assert torch.equal(swapped, again) and 10 < int(swapped.sum()) < 54
    assert torch.equal(first[:, 0, 0, 0].bool(), swapped) and torch.equal(first + second, torch.ones_like(a))
    with pytest.raises(ValueError, match="Generator"):
        swap_sources(a, b, 0.5, None)


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
    scheme, fusion, batch = _tiny_problem()
    scheme.cfg.inner_lr = 1.0  # a large virtual step: a large meta-gradient, far above round-off
    exact = _meta_grad(scheme, fusion, batch, "exact")
    params = list(scheme.loss_net.parameters())
    gen = torch.Generator().manual_seed(0)
    h = 1e-4  # |Δφ| = h. G has PReLU kinks: much larger probes cross some and break the quotient

    def outer_at(direction: list[Tensor], step: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(step * d)
        value = scheme.outer_value(fusion, batch)
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
    scheme, fusion, batch = _tiny_problem(gradient=0.0)  # smooth L_f: l2 intensity + SSIM
    exact = _meta_grad(scheme, fusion, batch, "exact")
    errors = [
        float(
            (_meta_grad(scheme, fusion, batch, "finite_difference", fd_eps=e) - exact).norm() / exact.norm()
        )
        for e in (1e-2, 1e-3)
    ]
    assert errors[1] <= 1e-6
    assert errors[0] / errors[1] >= 50.0  # O(fd_eps²): 100x in theory


def test_finite_difference_meta_gradient_with_the_full_loss() -> None:
    scheme, fusion, batch = _tiny_problem()  # L1 gradient term: kinks in L_f
    exact = _meta_grad(scheme, fusion, batch, "exact")
    approx = _meta_grad(scheme, fusion, batch, "finite_difference", fd_eps=1e-3)
    assert float((approx - exact).norm() / exact.norm()) <= 1e-4
    # Probing only the G-weighted terms (what MetaLossScheme does) changes nothing: SSIM has no ∇φ.
    ir, vis_y = batch["ir"], batch["visible"][:, :1]
    weights = scheme.loss_net(ir, vis_y)
    no_ssim = replace(scheme.cfg, ssim=0.0)
    probed = _meta_grad(
        scheme,
        fusion,
        batch,
        "finite_difference",
        fd_eps=1e-3,
        probe_loss=lambda f: learned_fusion_loss(f, ir, vis_y, weights, no_ssim)[0],
    )
    torch.testing.assert_close(probed, approx, atol=1e-15, rtol=1e-10)


def test_first_order_keeps_only_the_direct_term() -> None:
    scheme, fusion, batch = _tiny_problem()
    assert float(_meta_grad(scheme, fusion, batch, "first_order").abs().max()) == 0.0
    ir, vis_y = batch["ir"], batch["visible"][:, :1]

    def outer_with_direct(fused: Tensor) -> Tensor:  # an outer objective that also sees φ directly
        return (
            scheme.reconstruction_objective(fused, batch)
            + 0.3 * scheme.loss_net(ir, vis_y).gradient[:, 0].mean()
        )

    direct = _meta_grad(scheme, fusion, batch, "first_order", outer=outer_with_direct)
    assert float(direct.abs().max()) > 0
    mixed = _meta_grad(scheme, fusion, batch, "exact")
    total = _meta_grad(scheme, fusion, batch, "exact", outer=outer_with_direct)
    torch.testing.assert_close(total, mixed + direct, atol=1e-12, rtol=0)
    fd_total = _meta_grad(scheme, fusion, batch, "finite_difference", fd_eps=1e-3, outer=outer_with_direct)
    assert float((fd_total - total).norm() / total.norm()) <= 1e-4


# --------------------------------------------------------------------------- meta step on real pairs
def _msrs_batch(n: int = 2, size: int = 64) -> dict[str, Tensor]:
    names = sorted(p.stem for p in (MSRS / "ir").iterdir())[:n]
    folder = PairFolder(MSRS, names, labelled=False, crop=(size, size), seed=0)
    batch = collate([folder[i] for i in range(n)])
    return {"ir": batch["ir"].double(), "visible": batch["visible"].double()}


@needs_msrs
@pytest.mark.parametrize("mode", ["exact", "finite_difference"])
def test_one_meta_step_lowers_the_reconstruction_objective(mode: str) -> None:
    torch.manual_seed(0)
    batch = _msrs_batch()
    fusion = GuidedFusionNet(width=8).double()
    cfg = MetaConfig(mode=mode, inner_lr=0.05, meta_lr=1e-3, swap_prob=0.0, loss_net_width=8, recon_width=8)
    scheme = MetaLossScheme(cfg, scheme="refusion").to(torch.float64)
    for _ in range(3):  # give R something to say about the fused image
        scheme.reconstruction_step(fusion(batch["ir"], batch["visible"][:, :1]), batch)
    before = scheme.outer_value(fusion, batch)
    logs = scheme.meta_step(fusion, batch)
    after = scheme.outer_value(fusion, batch)
    assert logs["meta_outer"] == pytest.approx(before, rel=1e-12)
    assert logs["meta_grad_norm"] > 0
    assert after < before


# --------------------------------------------------------------------------- state
def test_resume_continues_bit_exactly(tmp_path: Path) -> None:
    def steps(
        scheme: MetaLossScheme, fusion: nn.Module, batch: dict[str, Tensor], gen: torch.Generator
    ) -> list:
        logs = []
        for _ in range(2):
            logs.append(scheme.meta_step(fusion, batch, generator=gen))
            logs.append(scheme.reconstruction_step(fusion(batch["ir"], batch["visible"][:, :1]), batch))
        return logs

    cfg = MetaConfig(mode="finite_difference", swap_prob=0.5, loss_net_width=4, recon_width=4)
    torch.manual_seed(0)
    fusion = GuidedFusionNet(width=4)
    batch = {"ir": torch.rand(2, 1, 32, 32), "visible": torch.rand(2, 3, 32, 32)}
    a, gen = MetaLossScheme(cfg, scheme="refusion"), torch.Generator().manual_seed(5)
    steps(a, fusion, batch, gen)
    buffer = io.BytesIO()
    torch.save({"meta": a.state_dict(), "gen": gen.get_state()}, buffer)
    expected = steps(a, fusion, batch, gen)

    torch.manual_seed(123)  # a different initialisation, overwritten by the checkpoint
    b, gen_b = MetaLossScheme(cfg, scheme="refusion"), torch.Generator()
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    b.load_state_dict(state["meta"])
    gen_b.set_state(state["gen"])
    assert steps(b, fusion, batch, gen_b) == expected
    for x, y in zip(a.state_dict()["loss_net"].values(), b.state_dict()["loss_net"].values(), strict=True):
        assert torch.equal(x, y)
    assert b.meta_steps == a.meta_steps == 4
    with pytest.raises(ValueError, match="refusion"):
        MetaLossScheme(cfg, scheme="tdfusion").load_state_dict(a.state_dict())


# --------------------------------------------------------------------------- API edges
def test_fusion_loss_freezes_g_and_tdfusion_needs_an_outer_objective() -> None:
    scheme = MetaLossScheme(MetaConfig(loss_net_width=4), scheme="tdfusion")
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    fused = torch.rand(1, 1, 16, 16, requires_grad=True)
    loss, terms = scheme.fusion_loss(fused, ir, vis)
    loss.backward()
    assert fused.grad is not None and set(terms) == {"intensity", "gradient", "ssim"}
    assert all(p.grad is None for p in scheme.loss_net.parameters())
    with pytest.raises(ValueError, match="outer_fn"):
        scheme.meta_step(GuidedFusionNet(width=4), {"ir": ir, "visible": vis.repeat(1, 3, 1, 1)})
    stats = scheme.weight_stats(ir, vis)
    assert stats["w_int_ir_mean"] == pytest.approx(0.5, abs=0.02) and stats["w_grad_ir_std"] < 0.02


def test_dump_weight_maps_writes_one_panel_per_pair(tmp_path: Path) -> None:
    scheme = MetaLossScheme(MetaConfig(loss_net_width=4), scheme="tdfusion")
    pairs = [(f"p{i}", torch.rand(1, 24, 40), torch.rand(1, 24, 40)) for i in range(2)]
    written = scheme.dump_weight_maps(pairs, tmp_path / "maps")
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
    with pytest.raises(ValueError, match="swap_prob"):
        MetaConfig(swap_prob=1.5).validate()
    with pytest.raises(ValueError, match="both 0"):
        MetaConfig(intensity=0.0, gradient=0.0).validate()


@pytest.mark.parametrize("name", ["train_tdfusion.yaml", "train_refusion.yaml"])
def test_shipped_meta_sections_are_valid(name: str) -> None:
    yaml = pytest.importorskip("yaml")
    raw = yaml.safe_load((REPO / "config" / name).read_text())
    assert raw["scheme"] == name.removeprefix("train_").removesuffix(".yaml")
    MetaConfig(**raw["meta"]).validate()
