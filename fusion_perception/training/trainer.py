"""The trainer: one loop for every training scheme.

Each iteration: the task net takes its lower step on the detached fused image (``Nets``), the
scheme its own lower-level step (the discriminator, if any), and every ``upper_every`` iterations
the scheme updates the fusion net (``schemes/``: plain, bi-level, TDFusion, ReFusion). The loop
does not know which scheme runs; it logs what the scheme returns under ``upper/``, at every upper
step (these carry the method's argument: F and f per module, c, the meta-gradient, G's shares),
and the rest every ``log_every`` steps, to TensorBoard and the history: each value the mean over the
steps since the last log that reported it (a single step's value would be one batch's, and with
``log_every`` a multiple of ``pseudo_every`` always a teacher-labelled batch without segmentation).

Data and sampling are in ``train_data.py``, checkpoint plumbing and RNG state in ``run_state.py``:
a resumed run continues bit-for-bit where it stopped on the same device and world size. Under
torchrun every gradient is averaged across ranks before each optimiser step (``distributed.py``).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..models.deployed import DeployedModel, modality_input
from ..runtime.model_info import ModelInfo
from .config import TrainConfig
from .distributed import GradSync
from .losses import seg_class_weights
from .nets import Nets
from .run_state import gather_rng, restore_rng, save_atomic
from .schemes import SCHEMES, LearnedLossScheme, SchemeContext, build_scheme
from .train_data import TrainData

__all__ = ["Trainer"]

log = logging.getLogger(__name__)


def _seg_labels(box_core: float) -> str:
    """What taught segmentation, for the model info (``data.seg_box_core``)."""
    if box_core == 0:
        return "BDLFusion predictions (weak) only; pairs without them train detection only"
    share = "whole boxes" if box_core == 1 else f"box centres ({box_core:g} of each side)"
    return f"BDLFusion predictions (weak) where present, else box-derived masks ({share})"


class Trainer:
    """Owns one run: the deployed networks, the data, the scheme, the step count and the history."""

    def __init__(self, config: TrainConfig) -> None:
        config.validate()
        self.cfg = config
        self.sync = GradSync()
        self.rank, self.world = self.sync.rank, self.sync.world
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.nets = Nets(config, self.device, self.sync)
        cached = config.freeze_fusion and config.input_modality == "fused"
        self.data = TrainData(
            config,
            rank=self.rank,
            device=self.device,
            fuse=self._cached_fusion if cached else None,
            hold_out=SCHEMES[config.scheme].uses_held_out and config.trains_fusion,
        )
        if config.loss.seg_balance > 0:
            counts = self.data.train_set.seg_map_pixel_counts(self.nets.tasks.seg.classify.out_channels)
            self.nets.seg_weights = seg_class_weights(counts, config.loss.seg_balance).to(self.device)
            log.info("segmentation class weights %s", [round(w, 2) for w in self.nets.seg_weights.tolist()])
        self.scheme = build_scheme(SchemeContext(config, self.nets, self.data, self.device, self.sync))
        self.step = 0
        self.out_dir = Path(config.out_dir)
        self.history: list[dict[str, float]] = []

    def _cached_fusion(self, ir: Tensor, vis_y: Tensor) -> Tensor:
        self.nets.fusion.eval()
        return self.nets.fusion(ir.to(self.device), vis_y.to(self.device)).cpu()

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One iteration: lower level always, upper level every ``upper_every`` steps."""
        cfg = self.cfg
        self.nets.train_mode()
        logs: dict[str, float] = {}
        if cfg.train_tasks:
            ir, vis = batch["ir"], batch["visible"]
            fused = batch["fused"]
            if fused is None and cfg.input_modality == "fused":
                with torch.no_grad():
                    fused = self.nets.fusion(ir, vis[:, :1])
            logs.update(self.nets.lower_step(modality_input(cfg.input_modality, ir, vis, fused), batch))
            logs.update(self.scheme.lower_step(batch, fused))
        if cfg.trains_fusion and self.step % cfg.upper_every == 0:
            logs.update({f"upper/{k}": v for k, v in self.scheme.step(batch, self.step).items()})
        self.nets.update_ema()
        self.step += 1
        return logs

    # ---------------------------------------------------------------- outputs
    def model_info(self) -> ModelInfo:
        cfg = self.cfg
        tasks = self.nets.tasks
        return ModelInfo(
            det_strides=tasks.det_strides,
            seg_stride=tasks.seg_stride,
            training={
                "scheme": cfg.scheme,
                "aggregation": cfg.aggregation,
                "hypergradient": cfg.hypergradient,
                "bilevel_modules": list(cfg.bilevel_modules),
                "input_modality": cfg.input_modality,
                "freeze_fusion": cfg.freeze_fusion,
                "init_from": cfg.init_from,
                "init_tasks": cfg.init_tasks,
                "steps": self.step,
                "seed": cfg.seed,
                "data": self.data.describe(),
                "augment": {"scale_jitter": cfg.data.scale_jitter, "photometric": cfg.data.photometric},
                "seg_balance": cfg.loss.seg_balance,
                "seg_labels": _seg_labels(cfg.data.seg_box_core),
                "map_share": cfg.data.map_share,
                "task_backbone": "EfficientNet-Lite0, ImageNet-1k init",
                "task_scale": tasks.task_scale,
                "ema_decay": cfg.ema_decay,
                "teacher_pseudo_labels": list(cfg.data.pseudo_labelled),
                # The teacher's boxes train the task net (lower level) on other folders; the fusion
                # net's own objective (L_f and F on held-out MSRS pairs) holds human labels only.
                "teacher_in_objective": False,
            },
        )

    def deployed(self) -> DeployedModel:
        fusion, tasks = self.nets.deployable()
        return DeployedModel(fusion, tasks, self.model_info()).eval()

    def dump_loss_weights(self, out_dir: Path, count: int = 4) -> list[Path]:
        """The loss net's weight maps on the first ``count`` validation pairs (whole images).

        Raises:
            ValueError: the scheme has no loss net (only tdfusion and refusion do).
        """
        if not isinstance(self.scheme, LearnedLossScheme):
            raise ValueError(f"scheme {self.cfg.scheme!r} has no loss net; use tdfusion or refusion")
        return self.scheme.dump_weight_maps(out_dir, count)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint (layout in ``run_state.py``); every rank calls it (RNG states are gathered)."""
        return {
            **self.nets.state_dict(),
            "scheme": {"name": self.scheme.name, **self.scheme.state_dict()},
            "step": self.step,
            "config": self.cfg.to_dict(),
            "info": self.model_info().to_json(),
            "model_config": {"fusion": dict(self.cfg.model.fusion), "tasks": dict(self.cfg.model.tasks)},
            "rng": gather_rng(self.data, self.world),
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint of the same scheme and world size.

        Raises:
            ValueError: another scheme, another number of ranks, or a checkpoint written before
                schemes were checkpointed (``init_from`` still reads its weights).
        """
        scheme = state.get("scheme")
        if not isinstance(scheme, dict):
            raise ValueError(
                "checkpoint has no 'scheme' entry (an older format): start from it with init_from"
            )
        if scheme.get("name") != self.scheme.name:
            raise ValueError(
                f"checkpoint holds a {scheme.get('name')!r} run, this run is {self.scheme.name!r}"
            )
        restore_rng(self.data, state["rng"], self.rank, self.world)
        self.nets.load_state_dict(state)
        self.scheme.load_state_dict(scheme)
        self.step = int(state["step"])
        self.history = list(state.get("history", []))

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically; every rank calls it (the RNG states are gathered), rank 0
        writes."""
        state = self.state_dict()
        if self.rank == 0:
            save_atomic(state, path)

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
        batches = self.data.batches()
        window: dict[str, list[float]] = {}  # lower-level values since the last log
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
                for key, value in logs.items():
                    window.setdefault(key, []).append(value)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    logs = {k: sum(v) / len(v) for k, v in window.items()}
                    window = {}
                    logs["elapsed_s"] = time.perf_counter() - t0
                    self.history.append({"step": self.step, **logs})
                    if writer is not None:
                        for key, value in logs.items():
                            writer.add_scalar(key, value, self.step)
                    if bar is not None:
                        shown = ("seg", "det", "disc")
                        bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k in shown})
                    elif self.rank == 0:
                        text = " ".join(f"{k}={v:.4g}" for k, v in logs.items())
                        log.info("step %d/%d %s", self.step, cfg.steps, text)
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save(self.out_dir / "last.pt")
        if bar is not None:
            bar.close()
        log.info("trained %d steps in %.1f s", self.step, time.perf_counter() - t0)
        return self.history
