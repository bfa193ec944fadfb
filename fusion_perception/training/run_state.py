"""Checkpoint plumbing of a training run: per-rank RNG state and atomic writes.

A checkpoint (``Trainer.state_dict``) is one dict:

* ``fusion``, ``tasks``, ``info``, ``model_config``: the deployable part, all that
  ``models/checkpoint.py`` (export, evaluate) and ``init_from`` read;
* ``raw_fusion``, ``raw_tasks``, ``ema``, ``opt_fusion``, ``opt_tasks``, ``sched_tasks``
  (``Nets.state_dict``) and ``scheme`` (``{"name": ..., **Scheme.state_dict()}``: the scheme's own
  networks and optimisers): what training continues from;
* ``step``, ``config``, ``history``;
* ``rng``: one entry per rank, gathered under torchrun, so that every rank resumes its own sample
  stream; a resumed run then continues bit-for-bit on the same device and world size.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .train_data import TrainData

__all__ = ["gather_rng", "restore_rng", "save_atomic"]


def _rng_state(data: TrainData) -> dict[str, Any]:
    return {**data.state_dict(), "torch": torch.get_rng_state(), "python": random.getstate()}


def gather_rng(data: TrainData, world: int) -> list[dict[str, Any]]:
    """This rank's generators (batches, crops, torch and python globals), gathered from every rank."""
    state = _rng_state(data)
    if world == 1:
        return [state]
    states: list[Any] = [None] * world
    dist.all_gather_object(states, state)
    return states


def restore_rng(data: TrainData, states: list[dict[str, Any]], rank: int, world: int) -> None:
    """Set this rank's generators from a checkpoint's ``rng`` list.

    Raises:
        ValueError: the checkpoint was written by another number of ranks.
    """
    if len(states) != world:
        raise ValueError(
            f"checkpoint holds the sampling state of {len(states)} rank(s); resume with that many"
        )
    state = states[rank]
    data.load_state_dict(state)
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
