"""The data of a run: the four kinds of dataset, how batches are drawn from them, and their RNG state.

* **lower**: the MSRS train split, minus a fixed held-out share when the run needs one; every
  iteration's batch.
* **upper**: that held-out share (``data.upper_holdout``); the upper-level objectives (bi-level F,
  the meta schemes' outer objective) are evaluated on it, never on what the lower level fitted.
  Runs without such an objective (``scheme: plain``, a frozen fusion net) hold nothing out: a
  pair set aside that no objective reads would only shrink the training set.
* **extra**: unlabelled two-source folders; fusion-loss terms only.
* **pseudo**: teacher-labelled folders; every ``pseudo_every``-th lower batch (distillation).

Lower-level and pseudo-labelled samples are augmented when ``data.scale_jitter`` or
``data.photometric`` is set (:mod:`.augment`); held-out and extra samples never are.

Batch indices come from one ``torch.Generator`` per rank, crops and flips from one numpy generator
per dataset; both are part of the checkpoint (``state_dict``), so a resumed run draws the same
batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..image_pairs import split_names
from .augment import Augment
from .config import TrainConfig
from .data import PairFolder, PseudoLabels, Sample, collate

__all__ = ["TrainData", "holdout_split"]


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


def _split(root: Any, name: str) -> list[str]:
    names = split_names(root, name)
    if names is None:
        raise ValueError("a training run needs a named split (data.train_split, data.val_split), not ''")
    return names


class TrainData:
    """The datasets of one rank and its batch generator.

    Args:
        cfg: the run's configuration (``data:`` section, ``seed``).
        rank: this process's rank (each rank draws its own batches and crops).
        device: where batches are moved.
        fuse: ``(ir, vis_y) -> fused`` of a frozen fusion net, to cache fused images once per pair
            (the task phase); None computes them per step.
        hold_out: set ``data.upper_holdout`` of the train split aside for ``held_out`` (a scheme
            with an upper-level objective on held-out pairs, while the fusion net trains).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        rank: int,
        device: torch.device,
        fuse: Callable[[Tensor, Tensor], Tensor] | None = None,
        hold_out: bool = True,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
        # Dataset folders resolved once (names in the config live under $FUSION_PERCEPTION_DATA).
        self.paths = cfg.data.resolved_paths()
        root = self.paths.msrs
        crop = (cfg.data.crop_width, cfg.data.crop_height)
        names = _split(root, cfg.data.train_split)
        lower, upper = holdout_split(names, cfg.data.upper_holdout) if hold_out else (names, [])
        augment = Augment(cfg.data.scale_jitter, cfg.data.photometric, crop)
        lower_augment = augment if augment.active else None
        box_core = cfg.data.seg_box_core
        seed = cfg.seed + 17 * rank
        self.train_set = PairFolder(
            root, lower, crop=crop, seed=seed, fuse=fuse, augment=lower_augment, box_core=box_core
        )
        # data.map_share: the pairs with a segmentation map are drawn more often (they alone
        # teach the classes without boxes; 35 of fit's 208 pairs)
        self.map_indices = self.train_set.with_map() if cfg.data.map_share > 0 else []
        if cfg.data.map_share > 0 and not self.map_indices:
            raise ValueError(f"data.map_share is {cfg.data.map_share} but no pair of {root} carries a map")
        self.upper_set = None
        if upper:
            self.upper_set = PairFolder(root, upper, crop=crop, seed=seed + 1, box_core=box_core)
        self.extra_sets = [
            PairFolder(p, labelled=False, crop=crop, seed=cfg.seed + i)
            for i, p in enumerate(self.paths.extra)
        ]
        self.pseudo_sets = []
        for i, (folder, labels) in enumerate(self.paths.pseudo):
            pseudo = PseudoLabels.from_teacher(labels, cfg.data.pseudo_source, cfg.data.pseudo_min_score)
            self.pseudo_sets.append(
                PairFolder(
                    folder,
                    labelled=False,
                    crop=crop,
                    seed=cfg.seed + 100 + i,
                    fuse=fuse,
                    pseudo=pseudo,
                    augment=lower_augment,
                )
            )

    def describe(self) -> str:
        """What the lower and upper level train on, for the model info."""
        held = len(self.upper_set) if self.upper_set is not None else 0
        return (
            f"MSRS {self.cfg.data.train_split} split: {len(self.train_set)} lower-level pairs, "
            f"{held} held out for the upper level"
        )

    # ---------------------------------------------------------------- batches
    def batch(self, dataset: PairFolder, size: int | None = None) -> dict[str, Any]:
        """A random batch of ``size`` (default ``data.batch_size``) samples of ``dataset`` on the device."""
        count = size or self.cfg.data.batch_size
        idx = torch.randint(len(dataset), (count,), generator=self.gen).tolist()
        if dataset is self.train_set and self.map_indices:
            share = self.cfg.data.map_share
            from_maps = (torch.rand(count, generator=self.gen) < share).tolist()
            picks = torch.randint(len(self.map_indices), (count,), generator=self.gen).tolist()
            idx = [self.map_indices[p] if m else i for i, m, p in zip(idx, from_maps, picks, strict=True)]
        batch = collate([dataset[i] for i in idx])
        for key in ("ir", "visible", "seg", "fused"):
            if batch[key] is not None:
                batch[key] = batch[key].to(self.device)
        return batch

    def held_out(self) -> dict[str, Any]:
        """A batch of held-out pairs for an upper-level objective (half the training batch size)."""
        if self.upper_set is None:
            raise RuntimeError("this run holds no pairs out (built with hold_out=False)")
        return self.batch(self.upper_set, max(1, self.cfg.data.batch_size // 2))

    def extra_batches(self) -> list[dict[str, Any]]:
        """One batch of every unlabelled folder (fusion-loss terms)."""
        return [self.batch(extra) for extra in self.extra_sets]

    def batches(self) -> Iterator[dict[str, Any]]:
        """Training batches; every ``pseudo_every``-th comes from a teacher-labelled folder (in turn)."""
        every = self.cfg.data.pseudo_every
        k = 0
        while True:
            k += 1
            if self.pseudo_sets and k % every == 0:
                yield self.batch(self.pseudo_sets[(k // every) % len(self.pseudo_sets)])
            else:
                yield self.batch(self.train_set)

    def val_samples(self, count: int) -> list[Sample]:
        """The first ``count`` validation pairs, whole images, without labels."""
        root = self.paths.msrs
        pairs = PairFolder(root, _split(root, self.cfg.data.val_split)[:count], labelled=False)
        return [pairs[i] for i in range(len(pairs))]

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The batch generator and every dataset's crop generator."""
        return {
            "gen": self.gen.get_state(),
            "numpy": self.train_set.rng.bit_generator.state,
            "upper": self.upper_set.rng.bit_generator.state if self.upper_set is not None else None,
            "extra": [s.rng.bit_generator.state for s in self.extra_sets],
            "pseudo": [s.rng.bit_generator.state for s in self.pseudo_sets],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.train_set.rng.bit_generator.state = state["numpy"]
        if self.upper_set is not None:
            self.upper_set.rng.bit_generator.state = state["upper"]
        for s, st in zip(self.extra_sets, state["extra"], strict=True):
            s.rng.bit_generator.state = st
        for s, st in zip(self.pseudo_sets, state["pseudo"], strict=True):
            s.rng.bit_generator.state = st
