"""The deployed graph: one module, two inputs, three outputs (see runtime/model_info.py).

It wraps the fusion net and the task net exactly as training composes them, so the exported ONNX
file, the PyTorch CUDA backend and the trainer's evaluation all run the same computation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..runtime.model_info import ModelInfo
from .fusion import GuidedFusionNet
from .tasks import TaskNet

__all__ = ["MODALITIES", "DeployedModel", "modality_input", "task_input"]

MODALITIES = ("fused", "ir", "visible")


def task_input(fused_y: Tensor, visible: Tensor) -> Tensor:
    """The task net sees the fused Y with the visible chroma: [N,3,H,W] (Y_fused, Cb, Cr)."""
    return torch.cat((fused_y, visible[:, 1:3]), dim=1)


def modality_input(modality: str, ir: Tensor, visible: Tensor, fused_y: Tensor | None = None) -> Tensor:
    """Task-net input for one modality, so single-source baselines share the architecture.

    ``fused``: fused Y + visible chroma; ``visible``: the visible image itself; ``ir``: IR as
    luma with neutral chroma (0.5), i.e. what a grey thermal camera shows.
    """
    if modality == "fused":
        if fused_y is None:
            raise ValueError("modality 'fused' needs the fused image")
        return task_input(fused_y, visible)
    if modality == "visible":
        return visible
    if modality == "ir":
        return torch.cat((ir, torch.full_like(ir, 0.5), torch.full_like(ir, 0.5)), dim=1)
    raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")


class DeployedModel(nn.Module):
    """(ir [N,1,H,W], visible [N,3,H,W] YCbCr) -> (fused [N,1,H,W], seg logits, detections)."""

    def __init__(self, fusion: GuidedFusionNet, tasks: TaskNet, info: ModelInfo) -> None:
        super().__init__()
        self.fusion = fusion
        self.tasks = tasks
        self.info = info

    def forward(self, ir: Tensor, visible: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fused = self.fusion(ir, visible[:, :1])
        seg, det = self.tasks(task_input(fused, visible))
        return fused, seg, det
