"""Multi-process training under torchrun: joining and leaving the process group, averaging gradients.

Every rank samples its own batches; every gradient is averaged across ranks (``GradSync``) before
each optimiser step, so the weights stay identical on all ranks.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["GradSync", "init_distributed", "shutdown_distributed"]


class GradSync:
    """Rank, world size and the gradient averaging of this process (a no-op on one process)."""

    def __init__(self) -> None:
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1

    def __call__(self, grads: list[Tensor]) -> None:
        """Replace every tensor of ``grads`` by its mean over the ranks, in place."""
        if self.world > 1:
            for g in grads:
                dist.all_reduce(g)
                g.div_(self.world)


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
