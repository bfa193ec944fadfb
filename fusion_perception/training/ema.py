"""Exponential moving average of a module's weights, the copy that gets exported.

Detectors trained with small batches on a few hundred images jitter from step to step; the
averaged weights (Polyak averaging, as YOLO-family and timm trainers ship) are smoother and
usually a few mAP points better. Buffers (BatchNorm statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """Shadow copy of ``model`` updated as shadow ← d·shadow + (1 − d)·weights.

    The decay ramps up as d_t = decay · (1 − exp(−t / 200)) so the first steps, when the raw weights
    move fastest, are not frozen into the average.

    Args:
        model: the module to track.
        decay: asymptotic decay in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._params = {name for name, _ in self.module.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1.0 - float(torch.exp(torch.tensor(-self.updates / 200.0))))
        shadow = self.module.state_dict()
        for name, value in model.state_dict().items():
            if name in self._params:
                shadow[name].mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                shadow[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
