"""How far the loss net G moves under its meta-gradients, and why: norms, agreement, Adam's steps.

For a shipped learnable-loss config (``config/train_tdfusion.yaml``, ``config/train_refusion.yaml``)
the script builds the run as the trainer does (fresh fusion net, ImageNet task net, ReFusion's
pre-trained reconstruction net), draws ``--batches`` training batches with a held-out batch each,
and measures at the starting G:

* the meta-gradient of every batch (its norm) and the cosine between every two of them;

then takes ``--steps`` meta steps with G's own Adam at the config's ``meta.meta_lr``, cycling over
the same batches with the fusion net held fixed (G's dynamics alone), and reports G's total
parameter change against what ``steps`` Adam steps in one consistent direction would give
(``meta_lr`` per parameter per step), and G's IR shares before and after.

Why: Adam divides each step by the running RMS of the gradient, so the meta-gradient's small scale
(O(α), α the virtual step) does not by itself make G's steps small (eps is 1e-10); what limits
G's travel is the number of meta steps times the learning rate and how much the batches'
meta-gradients agree.

    nice -n 5 .venv/bin/python benchmarks/bench_meta_grad.py --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _report import REPO, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "meta_grad_cpu.json"


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().double().reshape(-1) for t in tensors])


def _shares(learner: Any, batches: list[dict]) -> dict[str, float]:
    """Mean and pixel std of G's IR share of the intensity term over the batches (IR-first order)."""
    shares = [learner.weights(b["ir"], b["visible"][:, :1]).intensity[:, 0] for b in batches]
    values = torch.cat([s.flatten() for s in shares])
    return {"ir_share_mean": float(values.mean()), "ir_share_std": float(values.std())}


def measure(config: Path, batches: int, steps: int, threads: int) -> dict[str, Any]:
    from fusion_perception.training.config import load_config
    from fusion_perception.training.trainer import Trainer

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(config, {"out_dir": out, "threads": threads, "device": "cpu"})
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
        build_s = time.perf_counter() - t0
    scheme = trainer.scheme
    learner = scheme.learner
    trainer.nets.train_mode()
    trainer.nets.tasks.eval()  # as in the scheme's meta step: the outer forward leaves BN statistics alone
    stream = trainer.data.batches()
    pairs = [(next(stream), trainer.data.held_out()) for _ in range(batches)]
    fusion = trainer.nets.fusion
    params = list(learner.loss_net.parameters())
    phi0 = _flat(params)
    n_params = phi0.numel()

    t0 = time.perf_counter()
    grads = []
    for batch, held in pairs:
        result, _ = learner.meta_gradient(fusion, batch, scheme.outer, outer_batch=held)
        grads.append(_flat(result.grads))
    grad_s = (time.perf_counter() - t0) / batches
    norms = [float(g.norm()) for g in grads]
    cosines = {
        f"{i}-{j}": float(grads[i] @ grads[j] / (grads[i].norm() * grads[j].norm()))
        for i, j in itertools.combinations(range(batches), 2)
    }
    mean_grad = torch.stack(grads).mean(0)

    before = _shares(learner, [b for b, _ in pairs])
    lr = cfg.meta.meta_lr
    first_step = None
    for k, (batch, held) in zip(range(steps), itertools.cycle(pairs), strict=False):
        learner.meta_step(fusion, batch, scheme.outer, outer_batch=held)
        if k == 0:
            first_step = (_flat(params) - phi0).abs()
    delta = _flat(params) - phi0
    after = _shares(learner, [b for b, _ in pairs])
    coherent = steps * lr * n_params**0.5  # ‖Δφ‖ if every step moved every parameter by lr the same way
    return {
        "config": str(config.relative_to(REPO)),
        "scheme": cfg.scheme,
        "meta_lr": lr,
        "inner_lr": cfg.meta.inner_lr,
        "mode": cfg.meta.mode,
        "batch": cfg.data.batch_size,
        "crop_wh": [cfg.data.crop_width, cfg.data.crop_height],
        "swap_orders": cfg.meta.swap_orders,
        "recon_pretrain_steps": cfg.meta.recon_pretrain_steps if cfg.scheme == "refusion" else None,
        "loss_net_parameters": n_params,
        "batches": batches,
        "meta_steps": steps,
        "threads": threads,
        "build_s": build_s,
        "meta_gradient_s": grad_s,
        "grad_norms": norms,
        "grad_norm_of_mean": float(mean_grad.norm()),
        "cosines": cosines,
        "cosine_min": min(cosines.values()),
        "cosine_max": max(cosines.values()),
        "cosine_mean": sum(cosines.values()) / len(cosines),
        "first_step_mean_abs": float(first_step.mean()) if first_step is not None else None,
        "first_step_max_abs": float(first_step.max()) if first_step is not None else None,
        "delta_l2": float(delta.norm()),
        "delta_mean_abs": float(delta.abs().mean()),
        "delta_max_abs": float(delta.abs().max()),
        "coherent_l2": coherent,
        "travel_ratio": float(delta.norm()) / coherent,
        "phi0_l2": float(phi0.norm()),
        "shares_before": before,
        "shares_after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs",
        type=Path,
        nargs="+",
        default=[REPO / "config" / "train_tdfusion.yaml", REPO / "config" / "train_refusion.yaml"],
    )
    parser.add_argument("--batches", type=int, default=6, help="training batches, each with a held-out one")
    parser.add_argument("--steps", type=int, default=24, help="meta steps at the config's meta_lr")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = [measure(c.resolve(), args.batches, args.steps, args.threads) for c in args.configs]
    header = (
        "scheme",
        "lr",
        "|g| min..max",
        "|mean g|",
        "cos min..max (mean)",
        "1st step",
        "|dphi|",
        "coherent",
    )
    print(" | ".join((*header, "ratio", "IR share before -> after")))
    for r in rows:
        b, a = r["shares_before"], r["shares_after"]
        cells = (
            r["scheme"],
            f"{r['meta_lr']:.0e}",
            f"{min(r['grad_norms']):.2e}..{max(r['grad_norms']):.2e}",
            f"{r['grad_norm_of_mean']:.2e}",
            f"{r['cosine_min']:+.2f}..{r['cosine_max']:+.2f} ({r['cosine_mean']:+.2f})",
            f"{r['first_step_mean_abs']:.2e}",
            f"{r['delta_l2']:.3f}",
            f"{r['coherent_l2']:.3f}",
            f"{r['travel_ratio']:.3f}",
            f"{b['ir_share_mean']:.3f}±{b['ir_share_std']:.3f} -> "
            f"{a['ir_share_mean']:.3f}±{a['ir_share_std']:.3f}",
        )
        print(" | ".join(cells))
    write_result(args.json, rows)


if __name__ == "__main__":
    main()
