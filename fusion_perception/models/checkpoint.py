"""Training checkpoint <-> :class:`DeployedModel`: the one format the trainer, export and the
PyTorch backend agree on.

A checkpoint is a ``torch.save`` dict with at least::

    {
        "fusion": GuidedFusionNet state_dict,
        "tasks": TaskNet state_dict,
        "info": ModelInfo JSON string,
        "model_config": {"fusion": GuidedFusionNet kwargs, "tasks": TaskNet kwargs},
    }

The trainer may add keys (optimizer state, step, ...); they are ignored here. Architecture kwargs
travel with the weights, so loading never guesses widths or class counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ModelFormatError
from ..runtime.model_info import ModelInfo
from .deployed import DeployedModel
from .fusion import GuidedFusionNet
from .tasks import TaskNet

__all__ = [
    "REQUIRED_KEYS",
    "build_deployed",
    "default_model_config",
    "load_deployed",
    "random_deployed",
    "save_deployed",
]

REQUIRED_KEYS = ("fusion", "tasks", "info", "model_config")


def default_model_config(info: ModelInfo) -> dict[str, dict[str, Any]]:
    """Architecture kwargs matching ``info``'s class lists (default widths otherwise)."""
    return {
        "fusion": {},
        "tasks": {"num_seg_classes": len(info.seg_classes), "num_det_classes": len(info.det_classes)},
    }


def build_deployed(model_config: dict[str, dict[str, Any]], info: ModelInfo) -> DeployedModel:
    """Construct an (untrained) DeployedModel from architecture kwargs.

    Raises:
        ModelFormatError: the config lacks a section, has unknown kwargs, or its class counts
            disagree with ``info`` (the decoders would read the wrong number of channels).
    """
    if not isinstance(model_config, dict) or not {"fusion", "tasks"} <= model_config.keys():
        raise ModelFormatError(f"model_config must hold 'fusion' and 'tasks' kwargs, got {model_config!r}")
    tasks_kwargs = dict(model_config["tasks"])
    for key, names in (("num_seg_classes", info.seg_classes), ("num_det_classes", info.det_classes)):
        if tasks_kwargs.setdefault(key, len(names)) != len(names):
            raise ModelFormatError(
                f"model_config tasks.{key}={tasks_kwargs[key]} but the model info lists {len(names)} classes"
            )
    fusion_kwargs = dict(model_config["fusion"])
    if "dilations" in fusion_kwargs:
        fusion_kwargs["dilations"] = tuple(fusion_kwargs["dilations"])
    try:
        tasks = TaskNet(**tasks_kwargs)
        model = DeployedModel(GuidedFusionNet(**fusion_kwargs), tasks, info)
    except (TypeError, ValueError) as err:
        raise ModelFormatError(f"model_config has kwargs the networks do not take: {err}") from err
    if (tasks.det_strides, tasks.seg_stride) != (tuple(info.det_strides), info.seg_stride):
        raise ModelFormatError(
            f"the task net lays detections on strides {tasks.det_strides} and segmentation on stride "
            f"{tasks.seg_stride}, but the model info says {tuple(info.det_strides)} and {info.seg_stride}"
        )
    return model


def save_deployed(model: DeployedModel, path: Path | str, model_config: dict[str, dict[str, Any]]) -> Path:
    """Write ``model`` in the checkpoint format above (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "fusion": model.fusion.state_dict(),
        "tasks": model.tasks.state_dict(),
        "info": model.info.to_json(),
        "model_config": model_config,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_deployed(path: Path | str, *, map_location: str | torch.device = "cpu") -> DeployedModel:
    """Read a checkpoint into an eval-mode DeployedModel.

    Raises:
        ModelFormatError: the file is missing, not a torch checkpoint, lacks a required key, or
            its weights do not fit the architecture it declares. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"checkpoint {path} does not exist")
    try:
        # weights_only: a checkpoint is data, never code to execute.
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors for bad files
        raise ModelFormatError(f"{path} is not a readable torch checkpoint: {err}") from err
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{path}: checkpoint is a {type(raw).__name__}, expected a dict")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ModelFormatError(f"{path}: checkpoint lacks {missing}; it must hold {list(REQUIRED_KEYS)}")
    info = ModelInfo.from_json(raw["info"], source=str(path))
    model = build_deployed(raw["model_config"], info)
    for part in ("fusion", "tasks"):
        try:
            getattr(model, part).load_state_dict(raw[part])
        except RuntimeError as err:
            raise ModelFormatError(f"{path}: '{part}' weights do not fit model_config: {err}") from err
    return model.eval()


def random_deployed(seed: int, info: ModelInfo | None = None, *, scale: float = 0.05) -> DeployedModel:
    """An untrained model whose every weight and BN statistic is drawn from a seeded generator.

    Fresh initialisation starts the fusion net as a plain average with a zero refinement and the
    detector at a 1% prior, so exports of it would be tested on near-constant outputs. Perturbing
    every tensor makes all three outputs depend on the input, which parity tests and benchmarks
    need (``scale`` 0.05 keeps outputs in trained-like ranges: fused mostly unsaturated, box
    distances tens of pixels). Not a trained model: use it for tests and speed only.
    """
    info = info or ModelInfo()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_deployed(default_model_config(info), info)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=gen) * scale
            if name.endswith("running_var"):
                tensor.copy_(1.0 + noise.abs())
            else:
                tensor.add_(noise)
    return model.eval()
