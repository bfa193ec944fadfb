"""The one interface of the training schemes, and what a scheme is given to work with.

A scheme decides how the fusion net's gradient is formed at an upper step: the hand-set loss alone
(``plain``), plus first-order hypergradients of the task net and discriminator (``bilevel``), or a
loss weighted by a meta-learned loss net (``tdfusion``, ``refusion``). Everything else (the two
deployed networks, the task net's lower step, the data, checkpoints) is the same for all of them
and lives outside the schemes, so the trainer's loop holds no scheme-specific code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..distributed import GradSync
from ..nets import Nets
from ..train_data import TrainData

__all__ = ["FusionObjective", "Scheme", "SchemeContext"]

Batch = dict[str, Any]


@dataclass(frozen=True)
class SchemeContext:
    """What every scheme shares with the trainer: configuration, networks, data, device, gradient sync."""

    cfg: TrainConfig
    nets: Nets
    data: TrainData
    device: torch.device
    sync: GradSync


class FusionObjective(NamedTuple):
    """L_f of one upper step.

    Attributes:
        fused: the fusion net's output on the batch (with its graph), [M,1,H,W].
        targets: the batch that matches ``fused`` sample for sample (labels, modality-ordered
            sources); the batch itself unless the scheme doubled the fusion net's inputs.
        loss: L_f on the batch plus the unlabelled folders' mean.
        logs: ``fusion`` (the total) and the batch's per-term values.
    """

    fused: Tensor
    targets: Batch
    loss: Tensor
    logs: dict[str, float]


class Scheme(ABC):
    """How the fusion net F is updated, and the training-only modules that needs.

    The contract with the trainer:

    * built once, from ``cfg.scheme``, by ``schemes.build_scheme``; the constructor builds the
      scheme's own networks and optimisers, so modules no scheme needs are never built;
    * ``lower_step(batch, fused)`` runs every iteration after the task net's step, for the
      scheme's own lower-level modules (the discriminator); default: nothing;
    * ``step(batch, it)`` runs every ``upper_every`` iterations while F trains: one update of F
      (and of the scheme's upper-level helpers); returns the scalars to log;
    * ``state_dict`` / ``load_state_dict``: the scheme's networks and optimisers, for a bit-exact
      resume; ``modules``: those networks by name.
    """

    name: ClassVar[str]
    #: Whether ``step`` evaluates an objective on held-out pairs (``TrainData.held_out``). Only then
    #: does the run set ``data.upper_holdout`` of the train split aside; otherwise every pair trains.
    uses_held_out: ClassVar[bool] = True

    def __init__(self, ctx: SchemeContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.nets = ctx.nets
        self.data = ctx.data

    @abstractmethod
    def fusion_loss(self, fused: Tensor, first: Tensor, second: Tensor) -> tuple[Tensor, dict[str, float]]:
        """L_f of ``fused`` = F(first, second) [N,1,H,W]; (loss, per-term values)."""

    @abstractmethod
    def step(self, batch: Batch, it: int) -> dict[str, float]:
        """One upper-level update of F at iteration ``it``; returns the scalars to log."""

    def fusion_inputs(self, batch: Batch) -> tuple[Tensor, Tensor, Batch]:
        """F's two inputs for ``batch`` and the batch matching them: (IR, visible Y, batch)."""
        return batch["ir"], batch["visible"][:, :1], batch

    def lower_step(self, batch: Batch, fused: Tensor | None) -> dict[str, float]:
        """The scheme's own lower-level modules, on the detached ``fused`` image; none by default."""
        return {}

    def modules(self) -> dict[str, nn.Module]:
        """The scheme's training-only networks by name (none by default)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The scheme's networks and optimisers (nothing by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; a scheme without state accepts only an empty one.

        Raises:
            ValueError: ``state`` holds entries this scheme does not have (e.g. a discriminator
                checkpointed by a run whose ``bilevel_modules`` listed it).
        """
        extra = sorted(set(state) - {"name"})
        if extra:
            raise ValueError(f"checkpoint holds {extra} for scheme {self.name!r}, which has none")

    def fusion_objective(self, batch: Batch) -> FusionObjective:
        """L_f on the batch plus, with equal total weight, on one batch of every unlabelled folder."""
        first, second, targets = self.fusion_inputs(batch)
        fused = self.nets.fusion(first, second)
        loss, terms = self.fusion_loss(fused, first, second)
        extras = self.data.extra_batches()
        for extra in extras:
            a, b, _ = self.fusion_inputs(extra)
            l_extra, _ = self.fusion_loss(self.nets.fusion(a, b), a, b)
            loss = loss + l_extra / len(extras)
        return FusionObjective(fused, targets, loss, {"fusion": loss.item(), **terms})
