"""Training configuration: one dataclass tree, one commented YAML of defaults, strict overrides.

Unknown keys are rejected with a "did you mean" hint and values are range-checked, so a typo in a
config never silently trains with a default.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml

from ..data_root import resolve_data_path
from .meta_config import MetaConfig

__all__ = [
    "SCHEME_NAMES",
    "DataConfig",
    "DataPaths",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "load_config",
]

#: The ``scheme`` values; ``training/schemes`` registers one class under each.
SCHEME_NAMES = ("bilevel", "plain", "tdfusion", "refusion")


@dataclass
class DataConfig:
    """Where pairs come from and how they are cropped.

    Folder values (``msrs_root``, ``extra_pair_roots``, the ROOT of each ``pseudo_labelled`` item)
    may be plain names under the data root (``$FUSION_PERCEPTION_DATA``, default
    ``<repository>/../shared/datasets``): they are resolved once, by :meth:`resolved_paths`, with
    :func:`fusion_perception.data_root.resolve_data_path`; the config itself keeps them as written.
    """

    msrs_root: str = "msrs"
    # split names as ``image_pairs.split_names`` reads them: a file under <msrs_root>/splits/, or
    # ``fit``/``dev`` carved from the train split (the development protocol, docs/RESULTS.md)
    train_split: str = "train"
    val_split: str = "val"
    extra_pair_roots: list[str] = field(default_factory=list)  # unlabelled ir/ + vi/ folders (fusion terms)
    # share of the train split held out (fixed, disjoint) for the upper level; only by a scheme that
    # reads held-out pairs while F trains (``Scheme.uses_held_out``), else every pair trains
    upper_holdout: float = 0.1
    # teacher-labelled folders for the task net (distillation): ["ROOT=LABELS.json", ...]
    pseudo_labelled: list[str] = field(default_factory=list)
    pseudo_source: str = "max"  # which teacher run: visible | ir | max
    pseudo_min_score: float = 0.3
    pseudo_every: int = 4  # every k-th lower step trains on a pseudo-labelled batch
    crop_width: int = 320
    crop_height: int = 256
    scale_jitter: float = 0.0  # lower-level samples resized by U[1 - j, 1 + j] before the crop (augment.py)
    photometric: float = 0.0  # gain U[1 - s, 1 + s], offset U[-s/2, s/2] per image (augment.py)
    # a labelled pair without a segmentation map gets a box-derived mask filling this share of
    # each box about its centre (data.py); 0: it trains detection only, the maps alone teach segmentation
    seg_box_core: float = 1.0
    # each lower-level sample comes from the pairs with a segmentation map with this probability,
    # else uniformly from all pairs (0: uniform; MSRS train has maps for 1 pair in 6, fit 35 of 208)
    map_share: float = 0.0
    batch_size: int = 8
    workers: int = 0

    def resolved_paths(self) -> DataPaths:
        """The folders this config names, each resolved by ``resolve_data_path`` (absolute: kept;
        relative and existing from the working directory: kept; else under the data root)."""
        pseudo = []
        for item in self.pseudo_labelled:
            folder, _, labels = item.partition("=")
            pseudo.append((resolve_data_path(folder), labels))
        return DataPaths(
            msrs=resolve_data_path(self.msrs_root),
            extra=[resolve_data_path(p) for p in self.extra_pair_roots],
            pseudo=pseudo,
        )


class DataPaths(NamedTuple):
    """Resolved dataset folders of a :class:`DataConfig`; ``pseudo``: (folder, labels JSON) pairs."""

    msrs: Path
    extra: list[Path]
    pseudo: list[tuple[Path, str]]


#: Kinds of intensity target of the fusion loss (``losses.intensity_target``).
INTENSITY_TARGETS = ("max", "saliency", "warm")


@dataclass
class LossConfig:
    """Weights of the fusion loss terms and of the task losses, for every scheme.

    ``intensity``, ``gradient``, ``ssim`` weight the hand-set L_f (``losses.fusion_loss``: L1 to
    the intensity target, L1 between Sobel magnitudes, 1 − SSIM) and, with the same names and
    defaults, the learned L_f of the meta schemes (``learned_loss.learned_fusion_loss``: the same
    terms weighted per pixel by G). One default each: with ``meta.intensity_norm: l2`` the squared
    intensity term of average fusion on MSRS crops is 0.018 against 0.10 for the L1 term, so the
    meta schemes' YAMLs set ``intensity: 5.0`` to give it the hand-set term's size.
    ``seg_upsampled``: the segmentation cross-entropy is taken on logits upsampled bilinearly to the
    label size, as the node upsamples them before its argmax; False downsamples the labels to the
    logits by nearest neighbour instead (how the model of commit cc6034e was trained).
    ``seg_balance``: exponent p of the class weights of the segmentation cross-entropy,
    (median frequency / frequency)^p over the lower split's segmentation maps (box-derived masks
    excluded: they label only the boxes' classes), clipped to [0.1, 10]; 0 weights every class alike.
    Four of the nine MSRS classes hold 0.01-0.3 % of the labelled pixels and an unweighted loss
    never predicts them, which holds the mean IoU down.
    """

    intensity: float = 1.0
    gradient: float = 4.0
    ssim: float = 1.0
    intensity_target: Literal["max", "saliency", "warm"] = "max"
    seg: float = 1.0
    seg_upsampled: bool = True
    seg_balance: float = 0.0
    det: float = 1.0
    adversarial: float = 0.1


@dataclass
class ModelConfig:
    """Network sizes (kwargs of GuidedFusionNet and TaskNet)."""

    fusion: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Top level of a training run.

    ``scheme``: ``bilevel`` (BDLFusion dual-task scheme), ``plain`` (fusion loss only for the fusion
    net; tasks trained on its detached output) — the ablation baseline; ``tdfusion`` / ``refusion``
    (a loss net G weights L_f per pixel and is meta-learned from the task loss / from reconstructing
    the sources through a virtual fusion step; settings under ``meta``, see meta.py). Each is one
    class behind ``schemes.Scheme``, chosen once from this value (``schemes.build_scheme``).
    ``aggregation``: how the per-module hypergradients combine: ``random`` (softmax of noise, as
    released), ``normalized`` (equal norms) or ``min_norm`` (MGDA, conflict-aware).
    ``input_modality``: ``fused`` normally; ``ir`` / ``visible`` train the task net alone on one
    source (the single-modality baselines of the fair protocol).
    ``hypergradient``: ``gauss_newton`` (derived: ∇θF − c∇θf) or ``released`` (BDLFusion's code:
    ∇θF + η·c·∇θf with η = ``lower_lr``), see bilevel.py. ``bilevel_modules``: the lower modules
    whose hypergradients enter the upper step (``seg``, ``det``, ``disc``); seg and det share one
    lower problem (the task net's joint loss), the discriminator, built only when listed here, is
    its own.
    ``freeze_fusion``: train the task net only, on the fused images of a fixed fusion net, which are
    then computed once per pair and cached (the recipe's task phase).
    ``train_tasks``: False trains the fusion net alone on L_f (``scheme: plain`` only: the recipe's
    first phase, which would otherwise spend most of its time on a task net it throws away).
    ``init_from``: a checkpoint (training or deployed) whose fusion and task weights start the run.
    ``init_tasks``: False takes only the fusion net from ``init_from``; the task net starts from
    ImageNet (a fresh detector on a trained fusion net: the development protocol's lever runs).
    ``ema_decay``: exponential moving average of the weights, exported instead of the raw ones
    (0 disables).
    """

    scheme: Literal["bilevel", "plain", "tdfusion", "refusion"] = "bilevel"
    hypergradient: Literal["gauss_newton", "released"] = "gauss_newton"
    bilevel_modules: list[str] = field(default_factory=lambda: ["seg", "det"])
    aggregation: Literal["random", "normalized", "min_norm"] = "min_norm"
    input_modality: Literal["fused", "ir", "visible"] = "fused"
    steps: int = 3000
    upper_every: int = 2
    fusion_lr: float = 1e-3
    lower_lr: float = 2e-3
    backbone_lr_mult: float = 0.25
    freeze_fusion: bool = False
    train_tasks: bool = True
    ema_decay: float = 0.999
    init_from: str = ""
    init_tasks: bool = True
    warmup_steps: int = 200
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    log_every: int = 20
    checkpoint_every: int = 500
    eval_every: int = 1000
    out_dir: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)

    @property
    def trains_fusion(self) -> bool:
        """Whether the fusion net takes upper steps: it makes the task net's input and is not frozen."""
        return self.input_modality == "fused" and not self.freeze_fusion

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range value."""
        choices = {
            "scheme": SCHEME_NAMES,
            "aggregation": ("random", "normalized", "min_norm"),
            "input_modality": ("fused", "ir", "visible"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        target = self.loss.intensity_target
        if target not in INTENSITY_TARGETS:
            raise ValueError(f"loss.intensity_target must be one of {INTENSITY_TARGETS}, got {target!r}")
        for name in ("steps", "upper_every", "log_every", "checkpoint_every", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("fusion_lr", "lower_lr", "backbone_lr_mult"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.hypergradient not in ("gauss_newton", "released"):
            raise ValueError(f"hypergradient must be gauss_newton or released, got {self.hypergradient!r}")
        unknown = set(self.bilevel_modules) - {"seg", "det", "disc"}
        if unknown or not self.bilevel_modules:
            raise ValueError(
                f"bilevel_modules must be a non-empty subset of seg, det, disc, got {self.bilevel_modules}"
            )
        if not self.train_tasks and (self.scheme != "plain" or self.freeze_fusion):
            raise ValueError("train_tasks: false needs scheme: plain and a trainable fusion net")
        if self.scheme in ("tdfusion", "refusion") and self.loss.intensity + self.loss.gradient == 0:
            raise ValueError("loss.intensity and loss.gradient are both 0: the loss net would weight nothing")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.data.seg_box_core <= 1.0:
            raise ValueError(f"data.seg_box_core must lie in [0, 1], got {self.data.seg_box_core}")
        if not 0.0 <= self.data.map_share <= 1.0:
            raise ValueError(f"data.map_share must lie in [0, 1], got {self.data.map_share}")
        if not 0.0 < self.data.upper_holdout < 0.5:
            raise ValueError(f"data.upper_holdout must lie in (0, 0.5), got {self.data.upper_holdout}")
        self.meta.validate()
        d = self.data
        if d.crop_width % 32 or d.crop_height % 32 or d.crop_width <= 0 or d.crop_height <= 0:
            raise ValueError(
                f"crop size must be positive multiples of 32, got {d.crop_width}x{d.crop_height}"
            )
        if d.pseudo_every < 1 or not 0.0 <= d.pseudo_min_score < 1.0:
            raise ValueError("data.pseudo_every must be >= 1 and data.pseudo_min_score in [0, 1)")
        if any("=" not in item for item in d.pseudo_labelled):
            raise ValueError(f"data.pseudo_labelled entries are ROOT=LABELS.json, got {d.pseudo_labelled}")
        if d.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {d.batch_size}")
        for f in fields(self.loss):
            value = getattr(self.loss, f.name)
            if isinstance(value, float) and value < 0:
                raise ValueError(f"loss.{f.name} must be >= 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _merge(obj: Any, overrides: dict[str, Any], where: str) -> None:
    names = {f.name: f for f in fields(obj)}
    for key, value in overrides.items():
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"unknown config key {where}{key!r}{suggestion}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where}{key} must be a mapping")
            _merge(current, value, f"{where}{key}.")
        else:
            if isinstance(current, float) and isinstance(value, int):
                value = float(value)
            if current is not None and not isinstance(value, type(current)):
                raise ValueError(
                    f"config key {where}{key} must be {type(current).__name__}, got {type(value).__name__}"
                )
            setattr(obj, key, value)


def load_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- YAML file <- overrides (nested dicts), validated."""
    config = TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: top level must be a mapping")
        _merge(config, raw, "")
    if overrides:
        _merge(config, overrides, "")
    config.validate()
    return config
