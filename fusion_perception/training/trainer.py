"""The trainer: bi-level dual-task scheme (BDLFusion) and the plain-loss / single-modality baselines.

Every step (lower level): the task net (segmentation + detection) and, when it is one of the
``bilevel_modules``, the discriminator take one step on the *detached* fused images. Every
``upper_every`` steps (upper level): the fusion net takes one step along ∇θ L_f plus the aggregated
first-order hypergradients of the lower modules (see ``bilevel.py``); F is evaluated on a fixed
subset of the train split held out from the lower level (``data.upper_holdout``), so c is the
response of held-out pairs, not of the batch the lower level just fitted.

Upper-level quantities (F and f per module, c, ‖∇θF‖, ‖correction‖, their cosine, the aggregation
weights) are logged at every upper step, under ``upper/`` in TensorBoard and in the history.

Sampling uses the trainer's own generators, saved per rank in checkpoints, so a resumed run
continues bit-for-bit where it stopped on the same device and world size. Under torchrun every
gradient is averaged across ranks before each optimiser step.
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

import numpy as np
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
from .data import PairFolder, PseudoLabels, collate, read_split
from .ema import ModelEMA
from .losses import (
    detection_loss,
    discriminator_loss,
    fusion_loss,
    generator_adversarial_loss,
    intensity_target,
    segmentation_loss,
)
from .meta import MetaLossScheme

__all__ = ["Trainer", "holdout_split", "init_distributed", "shutdown_distributed"]

log = logging.getLogger(__name__)


def _critic_input(y: Tensor, visible: Tensor) -> Tensor:
    return torch.cat((y, visible[:, 1:3]), dim=1)


def holdout_split(names: list[str], share: float) -> tuple[list[str], list[str]]:
    """(lower, upper) names: a fixed share of the split, the same for every seed, rank and run.

    The choice depends on the names alone (sorted, then a fixed-seed permutation), so the bi-level
    run, its ablations and the single-modality baselines all train on the same lower-level pairs.
    """
    ordered = sorted(names)
    count = max(1, round(share * len(ordered)))
    picked = set(np.random.default_rng(20231).permutation(len(ordered))[:count].tolist())
    upper = [n for i, n in enumerate(ordered) if i in picked]
    return [n for n in names if n not in set(upper)], upper


def _load_weights(path: str, fusion: torch.nn.Module, tasks: torch.nn.Module) -> None:
    """Start from a training or deployed checkpoint's fusion and task weights (its deployable
    copy: the EMA weights when the run kept them)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    for key, module in (("fusion", fusion), ("tasks", tasks)):
        if key not in state:
            raise ValueError(f"init_from {path} holds no {key!r} weights")
        try:
            module.load_state_dict(state[key])
        except RuntimeError as err:
            raise ValueError(f"init_from {path}: {key} weights do not fit this architecture: {err}") from err


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
        tasks_kwargs = {"pretrained": not config.init_from, **config.model.tasks}
        self.fusion = GuidedFusionNet(**config.model.fusion)
        self.tasks = TaskNet(**tasks_kwargs)
        if config.init_from:
            _load_weights(config.init_from, self.fusion, self.tasks)
        self.fusion, self.tasks = self.fusion.to(self.device), self.tasks.to(self.device)
        self.disc = PixelDiscriminator().to(self.device)
        self.opt_fusion = torch.optim.Adam(self.fusion.parameters(), lr=config.fusion_lr)
        backbone = list(self.tasks.backbone.parameters())
        ids = {id(p) for p in backbone}
        self.opt_tasks = torch.optim.AdamW(
            [
                {"params": backbone, "lr": config.lower_lr * config.backbone_lr_mult},
                {"params": [p for p in self.tasks.parameters() if id(p) not in ids]},
            ],
            lr=config.lower_lr,
            weight_decay=1e-4,
        )
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=config.lower_lr, betas=(0.5, 0.999))
        self.sched_tasks = torch.optim.lr_scheduler.LambdaLR(self.opt_tasks, self._lr_factor)
        self.ema = (
            ModelEMA(torch.nn.ModuleDict({"fusion": self.fusion, "tasks": self.tasks}), config.ema_decay)
            if config.ema_decay > 0
            else None
        )
        self.step = 0
        self.gen = torch.Generator().manual_seed(config.seed * 1000 + self.rank)
        root = Path(config.data.msrs_root)
        crop = (config.data.crop_width, config.data.crop_height)
        lower_names, upper_names = holdout_split(
            read_split(root, config.data.train_split), config.data.upper_holdout
        )
        fuse = self._cached_fusion if config.freeze_fusion and config.input_modality == "fused" else None
        self.train_set = PairFolder(
            root, lower_names, crop=crop, seed=config.seed + 17 * self.rank, fuse=fuse
        )
        self.upper_set = PairFolder(root, upper_names, crop=crop, seed=config.seed + 17 * self.rank + 1)
        self.extra_sets = [
            PairFolder(p, labelled=False, crop=crop, seed=config.seed + i)
            for i, p in enumerate(config.data.extra_pair_roots)
        ]
        self.pseudo_sets = []
        for i, item in enumerate(config.data.pseudo_labelled):
            folder, _, labels = item.partition("=")
            pseudo = PseudoLabels.from_teacher(
                labels, config.data.pseudo_source, config.data.pseudo_min_score
            )
            self.pseudo_sets.append(
                PairFolder(
                    folder, labelled=False, crop=crop, seed=config.seed + 100 + i, fuse=fuse, pseudo=pseudo
                )
            )
        self.meta = (
            MetaLossScheme(config.meta, scheme=config.scheme, device=self.device)
            if config.scheme in ("tdfusion", "refusion")
            else None
        )
        self.out_dir = Path(config.out_dir)
        self.history: list[dict[str, float]] = []

    def _cached_fusion(self, ir: Tensor, vis_y: Tensor) -> Tensor:
        self.fusion.eval()
        return self.fusion(ir.to(self.device), vis_y.to(self.device)).cpu()

    def _train_mode(self) -> None:
        """Train mode, except the pretrained backbone's BatchNorm: its ImageNet statistics are
        better estimates than those of 4-image batches (standard detector fine-tuning)."""
        self.fusion.train(not self.cfg.freeze_fusion)
        self.tasks.train()
        for m in self.tasks.backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()

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
        for key in ("ir", "visible", "seg", "fused"):
            if batch[key] is not None:
                batch[key] = batch[key].to(self.device)
        return batch

    def batches(self) -> Iterator[dict[str, Any]]:
        """Training batches; every ``pseudo_every``-th comes from a teacher-labelled folder (in turn)."""
        k = 0
        while True:
            k += 1
            if self.pseudo_sets and k % self.cfg.data.pseudo_every == 0:
                yield self._batch(self.pseudo_sets[(k // self.cfg.data.pseudo_every) % len(self.pseudo_sets)])
            else:
                yield self._batch(self.train_set)

    # ---------------------------------------------------------------- losses
    def _task_losses(self, x: Tensor, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        seg_logits, det_raw = self.tasks(x)
        size = (x.shape[-1], x.shape[-2])
        l_seg = segmentation_loss(seg_logits, batch["seg"])
        l_det = detection_loss(
            det_raw, batch["boxes"], batch["classes"], size, self.tasks.det_strides, batch["weights"]
        )
        return self.cfg.loss.seg * l_seg, self.cfg.loss.det * l_det

    def _sync(self, grads: list[Tensor]) -> None:
        if self.world > 1:
            for g in grads:
                dist.all_reduce(g)
                g.div_(self.world)

    def _lower_step(self, batch: dict[str, Any]) -> dict[str, float]:
        ir, vis = batch["ir"], batch["visible"]
        fused = batch["fused"]
        if fused is None and self.cfg.input_modality == "fused":
            with torch.no_grad():
                fused = self.fusion(ir, vis[:, :1])
        l_seg, l_det = self._task_losses(modality_input(self.cfg.input_modality, ir, vis, fused), batch)
        self.opt_tasks.zero_grad(set_to_none=False)
        (l_seg + l_det).backward()
        self._sync([p.grad for p in self.tasks.parameters()])
        torch.nn.utils.clip_grad_norm_(self.tasks.parameters(), 10.0)
        self.opt_tasks.step()
        self.sched_tasks.step()
        logs = {"seg": l_seg.item(), "det": l_det.item()}
        if self._uses_disc():
            real = _critic_input(intensity_target(ir, vis[:, :1], self.cfg.loss.intensity_target), vis)
            l_d = discriminator_loss(self.disc(real), self.disc(_critic_input(fused, vis)))
            self.opt_disc.zero_grad(set_to_none=False)
            l_d.backward()
            self._sync([p.grad for p in self.disc.parameters()])
            self.opt_disc.step()
            logs["disc"] = l_d.item()
        return logs

    def _uses_disc(self) -> bool:
        cfg = self.cfg
        return cfg.scheme == "bilevel" and "disc" in cfg.bilevel_modules and not cfg.freeze_fusion

    def _updates_fusion(self) -> bool:
        return self.cfg.input_modality == "fused" and not self.cfg.freeze_fusion

    def _fusion_objective(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, dict[str, float]]:
        """L_f on the batch (plus the unlabelled folders); returns (fused, L_f, logged terms)."""
        ir, vis = batch["ir"], batch["visible"]
        fused = self.fusion(ir, vis[:, :1])
        l_f, terms = self._fusion_loss(fused, ir, vis[:, :1])
        for extra in self.extra_sets:
            e = self._batch(extra)
            l_e, _ = self._fusion_loss(
                self.fusion(e["ir"], e["visible"][:, :1]), e["ir"], e["visible"][:, :1]
            )
            l_f = l_f + l_e / len(self.extra_sets)
        return fused, l_f, {"fusion": l_f.item(), **terms}

    def _bilevel_terms(self, batch: dict[str, Any], fused: Tensor) -> dict[str, tuple[Tensor, Tensor, list]]:
        """Per lower module: (F on the held-out batch, f on the training batch, its parameters)."""
        cfg = self.cfg
        ir, vis = batch["ir"], batch["visible"]
        held = self._batch(self.upper_set, max(1, cfg.data.batch_size // 2))
        fused_v = self.fusion(held["ir"], held["visible"][:, :1])
        self.tasks.eval()  # BN statistics are the lower level's, not perturbed by the probe
        seg_t, det_t = self._task_losses(modality_input("fused", ir, vis, fused), batch)
        seg_v, det_v = self._task_losses(modality_input("fused", held["ir"], held["visible"], fused_v), held)
        shared = [p for name, p in self.tasks.named_parameters() if not name.startswith(("seg.", "det."))]
        modules = {
            "seg": (seg_v, seg_t, shared + list(self.tasks.seg.parameters())),
            "det": (det_v, det_t, shared + list(self.tasks.det.parameters())),
        }
        if "disc" in cfg.bilevel_modules:
            real = _critic_input(intensity_target(ir, vis[:, :1], cfg.loss.intensity_target), vis)
            d_lower = discriminator_loss(self.disc(real), self.disc(_critic_input(fused, vis)))
            d_upper = cfg.loss.adversarial * generator_adversarial_loss(
                self.disc(_critic_input(fused_v, held["visible"]))
            )
            modules["disc"] = (d_upper, d_lower, list(self.disc.parameters()))
        return {name: modules[name] for name in cfg.bilevel_modules}

    def _meta_terms(self, batch: dict[str, Any]) -> dict[str, float]:
        """TDFusion / ReFusion: a meta step of the loss net G (every ``meta.meta_every`` upper
        steps after warm-up), its outer objective on held-out pairs like the bi-level F."""
        cfg = self.cfg
        if self.step < cfg.warmup_steps or (self.step // cfg.upper_every) % cfg.meta.meta_every:
            return {}
        outer_fn = None
        if cfg.scheme == "tdfusion":

            def outer_fn(fused_prime: Tensor, b: dict[str, Any]) -> Tensor:
                seg, det = self._task_losses(modality_input("fused", b["ir"], b["visible"], fused_prime), b)
                return seg + det

        self.tasks.eval()  # the outer forward must not move the lower level's BN statistics
        held = self._batch(self.upper_set, max(1, cfg.data.batch_size // 2))
        logs = self.meta.meta_step(
            self.fusion, batch, outer_fn, outer_batch=held, generator=self.gen, sync=self._sync
        )
        self._train_mode()
        return logs

    def _fusion_loss(self, fused: Tensor, ir: Tensor, vis_y: Tensor) -> tuple[Tensor, dict[str, float]]:
        """L_f: hand-set weights, or the current loss net's per-pixel weights (G frozen here)."""
        if self.meta is not None:
            return self.meta.fusion_loss(fused, ir, vis_y)
        return fusion_loss(fused, ir, vis_y, self.cfg.loss)

    def _upper_step(self, batch: dict[str, Any]) -> dict[str, float]:
        cfg = self.cfg
        theta = list(self.fusion.parameters())
        meta_logs = self._meta_terms(batch) if self.meta is not None else {}
        fused, l_f, logs = self._fusion_objective(batch)
        logs.update(meta_logs)
        if cfg.scheme == "refusion":
            logs.update(self.meta.reconstruction_step(fused, batch, sync=self._sync))
        grad = flat_grad(l_f, theta)
        logs["norm_grad_fusion"] = float(grad.norm())
        if cfg.scheme == "bilevel" and self.step >= cfg.warmup_steps:
            hypers = []
            modules = self._bilevel_terms(batch, fused)
            for name, (upper, lower, omega) in modules.items():
                h, c, stats = hypergradient(
                    upper, lower, theta, omega, correction=cfg.hypergradient, lower_lr=cfg.lower_lr
                )
                hypers.append(h)
                logs.update({f"F_{name}": float(upper), f"f_{name}": float(lower), f"c_{name}": c})
                logs.update({f"{k}_{name}": v for k, v in stats.items()})
            combined, weights = aggregate(hypers, cfg.aggregation, generator=self.gen)
            grad = grad + combined
            logs.update({f"w_{n}": float(w) for n, w in zip(modules, weights, strict=True)})
            logs["norm_hyper"] = float(combined.norm())
            self._train_mode()
        self._sync([grad])
        offset = 0
        for p in theta:
            n = p.numel()
            p.grad = grad[offset : offset + n].view_as(p).clone()
            offset += n
        torch.nn.utils.clip_grad_norm_(theta, 1.0)
        self.opt_fusion.step()
        self.opt_fusion.zero_grad(set_to_none=True)
        return {f"upper/{k}": v for k, v in logs.items()}

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One iteration: lower level always, upper level every ``upper_every`` steps."""
        self._train_mode()
        logs = self._lower_step(batch) if self.cfg.train_tasks else {}
        if self._updates_fusion() and self.step % self.cfg.upper_every == 0:
            logs.update(self._upper_step(batch))
        if self.ema is not None:
            self.ema.update(torch.nn.ModuleDict({"fusion": self.fusion, "tasks": self.tasks}))
        self.step += 1
        return logs

    # ---------------------------------------------------------------- state
    def model_info(self) -> ModelInfo:
        cfg = self.cfg
        return ModelInfo(
            det_strides=self.tasks.det_strides,
            seg_stride=self.tasks.seg_stride,
            training={
                "scheme": cfg.scheme,
                "aggregation": cfg.aggregation,
                "hypergradient": cfg.hypergradient,
                "bilevel_modules": list(cfg.bilevel_modules),
                "input_modality": cfg.input_modality,
                "freeze_fusion": cfg.freeze_fusion,
                "init_from": cfg.init_from,
                "steps": self.step,
                "seed": cfg.seed,
                "data": f"MSRS train split: {len(self.train_set)} lower-level pairs, "
                f"{len(self.upper_set)} held out for the upper level",
                "seg_labels": "BDLFusion predictions (weak) where present, else box-derived masks",
                "task_backbone": "EfficientNet-Lite0, ImageNet-1k init",
                "task_scale": self.tasks.task_scale,
                "ema_decay": cfg.ema_decay,
                "teacher_pseudo_labels": list(cfg.data.pseudo_labelled),
                # The teacher's boxes train the task net (lower level) on other folders; the fusion
                # net's own objective (L_f and F on held-out MSRS pairs) holds human labels only.
                "teacher_in_objective": False,
            },
        )

    def _export_modules(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The weights to deploy: the EMA copy when enabled, else the raw ones."""
        if self.ema is not None:
            return self.ema.module["fusion"], self.ema.module["tasks"]
        return self.fusion, self.tasks

    def deployed(self) -> DeployedModel:
        fusion, tasks = self._export_modules()
        return DeployedModel(fusion, tasks, self.model_info()).eval()

    def dump_loss_weights(self, out_dir: Path, count: int = 4) -> list[Path]:
        """The loss net's weight maps on the first ``count`` validation pairs (whole images)."""
        root = Path(self.cfg.data.msrs_root)
        names = read_split(root, self.cfg.data.val_split)[:count]
        pairs = PairFolder(root, names, labelled=False)
        samples = (pairs[i] for i in range(len(pairs)))
        return self.meta.dump_weight_maps([(s.name, s.ir, s.visible[:1]) for s in samples], out_dir)

    def _rng_state(self) -> dict[str, Any]:
        return {
            "gen": self.gen.get_state(),
            "torch": torch.get_rng_state(),
            "numpy": self.train_set.rng.bit_generator.state,
            "upper": self.upper_set.rng.bit_generator.state,
            "extra": [s.rng.bit_generator.state for s in self.extra_sets],
            "pseudo": [s.rng.bit_generator.state for s in self.pseudo_sets],
            "python": random.getstate(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint: ``fusion``/``tasks`` are the deployable (EMA) weights that export, evaluate
        and ``init_from`` read; ``raw_*`` the weights training continues from. ``rng`` holds one
        entry per rank (gathered under torchrun), so every rank resumes its own sample stream."""
        fusion, tasks = self._export_modules()
        rng = [self._rng_state()]
        if self.world > 1:
            rng = [None] * self.world
            dist.all_gather_object(rng, self._rng_state())
        return {
            "fusion": fusion.state_dict(),
            "tasks": tasks.state_dict(),
            "raw_fusion": self.fusion.state_dict(),
            "raw_tasks": self.tasks.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "meta": self.meta.state_dict() if self.meta is not None else None,
            "disc": self.disc.state_dict(),
            "opt_fusion": self.opt_fusion.state_dict(),
            "opt_tasks": self.opt_tasks.state_dict(),
            "opt_disc": self.opt_disc.state_dict(),
            "sched_tasks": self.sched_tasks.state_dict(),
            "step": self.step,
            "config": self.cfg.to_dict(),
            "info": self.model_info().to_json(),
            "model_config": {"fusion": dict(self.cfg.model.fusion), "tasks": dict(self.cfg.model.tasks)},
            "rng": rng,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fusion.load_state_dict(state["raw_fusion"])
        self.tasks.load_state_dict(state["raw_tasks"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.meta is not None:
            self.meta.load_state_dict(state["meta"])
        for name in ("disc", "opt_fusion", "opt_tasks", "opt_disc", "sched_tasks"):
            getattr(self, name).load_state_dict(state[name])
        self.step = int(state["step"])
        if len(state["rng"]) != self.world:
            raise ValueError(
                f"checkpoint holds the sampling state of {len(state['rng'])} rank(s); resume with that many"
            )
        rng = state["rng"][self.rank]
        self.gen.set_state(rng["gen"])
        torch.set_rng_state(rng["torch"])
        self.train_set.rng.bit_generator.state = rng["numpy"]
        self.upper_set.rng.bit_generator.state = rng["upper"]
        for s, st in zip(self.extra_sets, rng["extra"], strict=True):
            s.rng.bit_generator.state = st
        for s, st in zip(self.pseudo_sets, rng["pseudo"], strict=True):
            s.rng.bit_generator.state = st
        random.setstate(rng["python"])
        self.history = list(state.get("history", []))

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically; every rank calls it (the RNG states are gathered), rank 0
        writes."""
        state = self.state_dict()
        if self.rank:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
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
                upper = {k: v for k, v in logs.items() if k.startswith("upper/")}
                if upper:  # every upper step, whatever log_every is: these carry the method's argument
                    self.history.append({"step": self.step, **upper})
                    if writer is not None:
                        for key, value in upper.items():
                            writer.add_scalar(key, value, self.step)
                    logs = {k: v for k, v in logs.items() if k not in upper}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    logs["elapsed_s"] = time.perf_counter() - t0
                    self.history.append({"step": self.step, **logs})
                    if writer is not None:
                        for key, value in logs.items():
                            writer.add_scalar(key, value, self.step)
                    if bar is not None:
                        bar.set_postfix(
                            {
                                k: f"{v:.3f}"
                                for k, v in logs.items()
                                if k in ("seg", "det", "disc", "upper/fusion")
                            }
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
