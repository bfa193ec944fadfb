"""The deployed networks of a run: fusion net F and task net T, their optimisers, T's schedule, the EMA.

Every scheme trains these two and deploys them; the schemes (``schemes/``) differ only in how F's
gradient is formed. The task net's step (the lower level: one step on the detached fused image) is
the same for all of them, so it lives here with the networks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..models.fusion import GuidedFusionNet
from ..models.tasks import TaskNet
from .config import TrainConfig
from .data import IGNORE_INDEX
from .distributed import GradSync
from .ema import ModelEMA
from .losses import detection_loss, segmentation_loss

__all__ = ["Nets", "load_init_weights"]


def load_init_weights(path: str, fusion: nn.Module, tasks: nn.Module | None) -> None:
    """Start from a training or deployed checkpoint's fusion and task weights (its deployable
    copy: the EMA weights when the run kept them); ``tasks`` None keeps the task net as it is."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    for key, module in (("fusion", fusion), ("tasks", tasks)):
        if module is None:
            continue
        if key not in state:
            raise ValueError(f"init_from {path} holds no {key!r} weights")
        try:
            module.load_state_dict(state[key])
        except RuntimeError as err:
            raise ValueError(f"init_from {path}: {key} weights do not fit this architecture: {err}") from err


class Nets:
    """F and T with their optimisers; T's learning-rate schedule; the EMA copy that export reads.

    Args:
        cfg: the run's configuration (model sizes, learning rates, ``init_from``, ``ema_decay``).
        device: where the networks live.
        sync: averages gradients across ranks before each step.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, sync: GradSync) -> None:
        self.cfg = cfg
        self.sync = sync
        fusion = GuidedFusionNet(**cfg.model.fusion)
        own_tasks = bool(cfg.init_from) and cfg.init_tasks
        tasks = TaskNet(**{"pretrained": not own_tasks, **cfg.model.tasks})
        if cfg.init_from:
            load_init_weights(cfg.init_from, fusion, tasks if own_tasks else None)
        self.fusion, self.tasks = fusion.to(device), tasks.to(device)
        self.opt_fusion = torch.optim.Adam(self.fusion.parameters(), lr=cfg.fusion_lr)
        backbone = list(self.tasks.backbone.parameters())
        ids = {id(p) for p in backbone}
        self.opt_tasks = torch.optim.AdamW(
            [
                {"params": backbone, "lr": cfg.lower_lr * cfg.backbone_lr_mult},
                {"params": [p for p in self.tasks.parameters() if id(p) not in ids]},
            ],
            lr=cfg.lower_lr,
            weight_decay=1e-4,
        )
        self.sched_tasks = torch.optim.lr_scheduler.LambdaLR(self.opt_tasks, self._lr_factor)
        self.ema = ModelEMA(self._pair(), cfg.ema_decay) if cfg.ema_decay > 0 else None
        #: per-class weights of the segmentation loss (``loss.seg_balance``); set from the data.
        self.seg_weights: Tensor | None = None

    def _pair(self) -> nn.ModuleDict:
        return nn.ModuleDict({"fusion": self.fusion, "tasks": self.tasks})

    def _lr_factor(self, step: int) -> float:
        """Task-net schedule: linear warm-up over 5% of the run, then cosine decay to 5%."""
        warm = max(1, self.cfg.steps // 20)
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, self.cfg.steps - warm))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    def train_mode(self) -> None:
        """Train mode (F only when it trains), except the pretrained backbone's BatchNorm: its
        ImageNet statistics are better estimates than those of 4-image batches (standard detector
        fine-tuning)."""
        self.fusion.train(not self.cfg.freeze_fusion)
        self.tasks.train()
        for m in self.tasks.backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    def task_losses(self, x: Tensor, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """(weighted segmentation loss, weighted detection loss) of T on input ``x`` [N,3,H,W]."""
        seg_logits, det_raw = self.tasks(x)
        size = (x.shape[-1], x.shape[-2])
        l_seg = segmentation_loss(seg_logits, batch["seg"], self.cfg.loss.seg_upsampled, self.seg_weights)
        l_det = detection_loss(
            det_raw, batch["boxes"], batch["classes"], size, self.tasks.det_strides, batch["weights"]
        )
        return self.cfg.loss.seg * l_seg, self.cfg.loss.det * l_det

    def lower_step(self, x: Tensor, batch: dict[str, Any]) -> dict[str, float]:
        """One step of T on l_seg + l_det for input ``x`` (built from detached images)."""
        l_seg, l_det = self.task_losses(x, batch)
        self.opt_tasks.zero_grad(set_to_none=False)
        (l_seg + l_det).backward()
        self.sync([p.grad for p in self.tasks.parameters()])
        torch.nn.utils.clip_grad_norm_(self.tasks.parameters(), 10.0)
        self.opt_tasks.step()
        self.sched_tasks.step()
        logs = {"det": l_det.item()}
        if bool((batch["seg"] != IGNORE_INDEX).any()):  # teacher-labelled batches carry no seg labels
            logs["seg"] = l_seg.item()
        return logs

    def step_fusion(self, grad: Tensor) -> None:
        """One step of F along the flat gradient ``grad`` (averaged across ranks, clipped to norm 1)."""
        self.sync([grad])
        theta = list(self.fusion.parameters())
        offset = 0
        for p in theta:
            n = p.numel()
            p.grad = grad[offset : offset + n].view_as(p).clone()
            offset += n
        torch.nn.utils.clip_grad_norm_(theta, 1.0)
        self.opt_fusion.step()
        self.opt_fusion.zero_grad(set_to_none=True)

    def update_ema(self) -> None:
        if self.ema is not None:
            self.ema.update(self._pair())

    def deployable(self) -> tuple[nn.Module, nn.Module]:
        """The weights to deploy: the EMA copy when enabled, else the raw ones."""
        if self.ema is not None:
            return self.ema.module["fusion"], self.ema.module["tasks"]
        return self.fusion, self.tasks

    def state_dict(self) -> dict[str, Any]:
        """``fusion``/``tasks``: the deployable (EMA) weights that export, evaluate and ``init_from``
        read; ``raw_*``: the weights training continues from; optimisers, schedule, EMA state."""
        fusion, tasks = self.deployable()
        return {
            "fusion": fusion.state_dict(),
            "tasks": tasks.state_dict(),
            "raw_fusion": self.fusion.state_dict(),
            "raw_tasks": self.tasks.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_fusion": self.opt_fusion.state_dict(),
            "opt_tasks": self.opt_tasks.state_dict(),
            "sched_tasks": self.sched_tasks.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fusion.load_state_dict(state["raw_fusion"])
        self.tasks.load_state_dict(state["raw_tasks"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt_fusion.load_state_dict(state["opt_fusion"])
        self.opt_tasks.load_state_dict(state["opt_tasks"])
        self.sched_tasks.load_state_dict(state["sched_tasks"])
