"""The trainer: bi-level dual-task scheme (BDLFusion) and the plain-loss / single-modality baselines.

Every step (lower level): the task net (segmentation + detection) and the discriminator take one
step on the *detached* fused images. Every ``upper_every`` steps (upper level): the fusion net
takes one step along ∇θ L_f plus the aggregated first-order hypergradients of the three lower
modules (segmentation, detection, discriminator), see ``bilevel.py``.

Sampling uses the trainer's own generators (saved in checkpoints), so a resumed run continues
bit-for-bit where it stopped on the same device. Under torchrun every gradient is averaged across
ranks before each optimiser step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..models.deployed import DeployedModel, modality_input
from ..models.discriminator import PixelDiscriminator
from ..models.fusion import GuidedFusionNet
from ..models.tasks import TaskNet
from ..runtime.model_info import ModelInfo
from .bilevel import aggregate, flat_grad, hypergradient
from .config import TrainConfig
from .data import PairFolder, collate, read_split
from .losses import (
    detection_loss,
    discriminator_loss,
    fusion_loss,
    generator_adversarial_loss,
    intensity_target,
    segmentation_loss,
)

__all__ = ["Trainer", "init_distributed", "shutdown_distributed"]

log = logging.getLogger(__name__)


def _critic_input(y: Tensor, visible: Tensor) -> Tensor:
    return torch.cat((y, visible[:, 1:3]), dim=1)


class Trainer:
    """Owns the networks, optimisers, data and generators of one run."""

    def __init__(self, config: TrainConfig) -> None:
        config.validate()
        self.cfg = config
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.fusion = GuidedFusionNet(**config.model.fusion).to(self.device)
        self.tasks = TaskNet(**config.model.tasks).to(self.device)
        self.disc = PixelDiscriminator().to(self.device)
        self.opt_fusion = torch.optim.Adam(self.fusion.parameters(), lr=config.fusion_lr)
        self.opt_tasks = torch.optim.AdamW(self.tasks.parameters(), lr=config.lower_lr, weight_decay=1e-4)
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=config.lower_lr, betas=(0.5, 0.999))
        self.sched_tasks = torch.optim.lr_scheduler.LambdaLR(self.opt_tasks, self._lr_factor)
        self.step = 0
        self.gen = torch.Generator().manual_seed(config.seed * 1000 + self.rank)
        root = Path(config.data.msrs_root)
        crop = (config.data.crop_width, config.data.crop_height)
        self.train_set = PairFolder(
            root, read_split(root, config.data.train_split), crop=crop, seed=config.seed + 17 * self.rank
        )
        self.extra_sets = [
            PairFolder(p, labelled=False, crop=crop, seed=config.seed + i)
            for i, p in enumerate(config.data.extra_pair_roots)
        ]
        self.out_dir = Path(config.out_dir)
        self.history: list[dict[str, float]] = []

    def _lr_factor(self, step: int) -> float:
        """Task-net schedule: linear warm-up over 5% of the run, then cosine decay to 5%."""
        warm = max(1, self.cfg.steps // 20)
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, self.cfg.steps - warm))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    # ---------------------------------------------------------------- data
    def _batch(self, dataset: PairFolder, size: int | None = None) -> dict[str, Any]:
        idx = torch.randint(len(dataset), (size or self.cfg.data.batch_size,), generator=self.gen).tolist()
        batch = collate([dataset[i] for i in idx])
        for key in ("ir", "visible", "seg"):
            batch[key] = batch[key].to(self.device)
        return batch

    def batches(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self._batch(self.train_set)

    # ---------------------------------------------------------------- losses
    def _task_losses(self, x: Tensor, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        seg_logits, det_raw = self.tasks(x)
        size = (x.shape[-1], x.shape[-2])
        l_seg = segmentation_loss(seg_logits, batch["seg"])
        l_det = detection_loss(det_raw, batch["boxes"], batch["classes"], size, self.tasks.det.strides)
        return self.cfg.loss.seg * l_seg, self.cfg.loss.det * l_det

    def _sync(self, grads: list[Tensor]) -> None:
        if self.world > 1:
            for g in grads:
                dist.all_reduce(g)
                g.div_(self.world)

    def _lower_step(self, batch: dict[str, Any]) -> dict[str, float]:
        ir, vis = batch["ir"], batch["visible"]
        with torch.no_grad():
            fused = self.fusion(ir, vis[:, :1]) if self.cfg.input_modality == "fused" else None
        self.tasks.train()
        l_seg, l_det = self._task_losses(modality_input(self.cfg.input_modality, ir, vis, fused), batch)
        self.opt_tasks.zero_grad(set_to_none=False)
        (l_seg + l_det).backward()
        self._sync([p.grad for p in self.tasks.parameters()])
        torch.nn.utils.clip_grad_norm_(self.tasks.parameters(), 10.0)
        self.opt_tasks.step()
        self.sched_tasks.step()
        logs = {"seg": l_seg.item(), "det": l_det.item()}
        if fused is not None and self.cfg.scheme == "bilevel":
            real = _critic_input(intensity_target(ir, vis[:, :1], self.cfg.loss.intensity_target), vis)
            l_d = discriminator_loss(self.disc(real), self.disc(_critic_input(fused, vis)))
            self.opt_disc.zero_grad(set_to_none=False)
            l_d.backward()
            self._sync([p.grad for p in self.disc.parameters()])
            self.opt_disc.step()
            logs["disc"] = l_d.item()
        return logs

    def _upper_step(self, batch: dict[str, Any]) -> dict[str, float]:
        cfg = self.cfg
        theta = list(self.fusion.parameters())
        ir, vis = batch["ir"], batch["visible"]
        fused = self.fusion(ir, vis[:, :1])
        l_f, terms = fusion_loss(fused, ir, vis[:, :1], cfg.loss)
        for extra in self.extra_sets:
            e = self._batch(extra)
            l_e, _ = fusion_loss(
                self.fusion(e["ir"], e["visible"][:, :1]), e["ir"], e["visible"][:, :1], cfg.loss
            )
            l_f = l_f + l_e / len(self.extra_sets)
        grad = flat_grad(l_f, theta)
        logs = {"fusion": float(l_f), **terms}
        if cfg.scheme == "bilevel" and self.step >= cfg.warmup_steps:
            # F is evaluated on a held-out batch (see bilevel.py); half size keeps the probe cheap.
            held = self._batch(self.train_set, max(1, cfg.data.batch_size // 2))
            fused_v = self.fusion(held["ir"], held["visible"][:, :1])
            self.tasks.eval()  # BN statistics are the lower level's, not perturbed by the probe
            seg_t, det_t = self._task_losses(modality_input("fused", ir, vis, fused), batch)
            seg_v, det_v = self._task_losses(
                modality_input("fused", held["ir"], held["visible"], fused_v), held
            )
            real = _critic_input(intensity_target(ir, vis[:, :1], cfg.loss.intensity_target), vis)
            d_lower = discriminator_loss(self.disc(real), self.disc(_critic_input(fused, vis)))
            d_upper = cfg.loss.adversarial * generator_adversarial_loss(
                self.disc(_critic_input(fused_v, held["visible"]))
            )
            tasks_params = list(self.tasks.backbone.parameters())
            modules = {
                "seg": (seg_v, seg_t, tasks_params + list(self.tasks.seg.parameters())),
                "det": (det_v, det_t, tasks_params + list(self.tasks.det.parameters())),
                "disc": (d_upper, d_lower, list(self.disc.parameters())),
            }
            hypers = []
            for name, (upper, lower, omega) in modules.items():
                h, c = hypergradient(upper, lower, theta, omega, scale=cfg.hypergradient_scale)
                hypers.append(h)
                logs[f"c_{name}"] = c
            combined, weights = aggregate(hypers, cfg.aggregation, generator=self.gen)
            grad = grad + combined
            logs.update({f"w_{n}": float(w) for n, w in zip(modules, weights, strict=True)})
            self.tasks.train()
        self._sync([grad])
        offset = 0
        for p in theta:
            n = p.numel()
            p.grad = grad[offset : offset + n].view_as(p).clone()
            offset += n
        torch.nn.utils.clip_grad_norm_(theta, 1.0)
        self.opt_fusion.step()
        self.opt_fusion.zero_grad(set_to_none=True)
        return logs

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One iteration: lower level always, upper level every ``upper_every`` steps."""
        self.fusion.train()
        logs = self._lower_step(batch)
        if self.cfg.input_modality == "fused" and self.step % self.cfg.upper_every == 0:
            logs.update(self._upper_step(batch))
        self.step += 1
        return logs

    # ---------------------------------------------------------------- state
    def model_info(self) -> ModelInfo:
        cfg = self.cfg
        return ModelInfo(
            training={
                "scheme": cfg.scheme,
                "aggregation": cfg.aggregation,
                "input_modality": cfg.input_modality,
                "steps": self.step,
                "seed": cfg.seed,
                "data": "MSRS train split (270 pairs)",
                "seg_labels": "BDLFusion predictions (weak) where present, else box-derived masks",
            }
        )

    def deployed(self) -> DeployedModel:
        return DeployedModel(self.fusion, self.tasks, self.model_info()).eval()

    def state_dict(self) -> dict[str, Any]:
        return {
            "fusion": self.fusion.state_dict(),
            "tasks": self.tasks.state_dict(),
            "disc": self.disc.state_dict(),
            "opt_fusion": self.opt_fusion.state_dict(),
            "opt_tasks": self.opt_tasks.state_dict(),
            "opt_disc": self.opt_disc.state_dict(),
            "sched_tasks": self.sched_tasks.state_dict(),
            "step": self.step,
            "config": self.cfg.to_dict(),
            "info": self.model_info().to_json(),
            "model_config": {"fusion": dict(self.cfg.model.fusion), "tasks": dict(self.cfg.model.tasks)},
            "rng": {
                "gen": self.gen.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": self.train_set.rng.bit_generator.state,
                "extra": [s.rng.bit_generator.state for s in self.extra_sets],
                "python": random.getstate(),
            },
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("fusion", "tasks", "disc", "opt_fusion", "opt_tasks", "opt_disc", "sched_tasks"):
            getattr(self, name).load_state_dict(state[name])
        self.step = int(state["step"])
        self.gen.set_state(state["rng"]["gen"])
        torch.set_rng_state(state["rng"]["torch"])
        self.train_set.rng.bit_generator.state = state["rng"]["numpy"]
        for s, st in zip(self.extra_sets, state["rng"]["extra"], strict=True):
            s.rng.bit_generator.state = st
        random.setstate(state["rng"]["python"])
        self.history = list(state.get("history", []))

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically (rank 0 only)."""
        if self.rank:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    # ---------------------------------------------------------------- loop
    def fit(self, *, progress: bool = True, stop_at: int | None = None) -> list[dict[str, float]]:
        """Train until ``steps`` (or ``stop_at``, to interrupt a run on purpose); log, checkpoint to
        ``out_dir/last.pt``; returns the log history."""
        cfg = self.cfg
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        writer = None
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out_dir / "tb"))
        bar = None
        if progress and self.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train[{cfg.scheme}/{cfg.aggregation}]")
        t0 = time.perf_counter()
        batches = self.batches()
        with writer if writer is not None else nullcontext():
            while self.step < end:
                logs = self.train_step(next(batches))
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    logs["elapsed_s"] = time.perf_counter() - t0
                    self.history.append({"step": self.step, **logs})
                    if writer is not None:
                        for key, value in logs.items():
                            writer.add_scalar(key, value, self.step)
                    if bar is not None:
                        bar.set_postfix(
                            {k: f"{v:.3f}" for k, v in logs.items() if k in ("fusion", "seg", "det")}
                        )
                    elif self.rank == 0:
                        log.info(
                            "step %d/%d %s",
                            self.step,
                            cfg.steps,
                            " ".join(f"{k}={v:.4g}" for k, v in logs.items()),
                        )
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save(self.out_dir / "last.pt")
        if bar is not None:
            bar.close()
        log.info("trained %d steps in %.1f s", self.step, time.perf_counter() - t0)
        return self.history


def init_distributed() -> None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_distributed() -> None:
    """Leave the process group cleanly: wait for every rank, then destroy it.

    Without the barrier a rank that finishes first can tear gloo down while another still uses it,
    and the C++ runtime aborts that process ("terminate called without an active exception").
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
