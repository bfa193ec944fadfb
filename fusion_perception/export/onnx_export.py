"""torch -> ONNX for the deployed graph: fixed names, metadata inside, parity-checked by tests.

Export is a pure file-in/file-out step: ``export_onnx(model, path, ...)`` writes one ONNX file whose
``metadata_props`` carry the :class:`ModelInfo` JSON (input size, classes, strides, palette,
provenance), so every runtime reads the facts from the file instead of from callers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..models.deployed import DeployedModel
from ..runtime.model_info import INPUT_NAMES, METADATA_KEY, OUTPUT_NAMES
from .graph_passes import fold_zero_pads

__all__ = ["export_onnx"]

log = logging.getLogger(__name__)
OPSET = 17


def export_onnx(model: DeployedModel, path: Path | str, *, dynamic: bool = False) -> Path:
    """Write ``model`` to ``path`` as ONNX at its info's input size.

    Args:
        model: the deployed graph (put in eval mode here; BN folds in ONNX Runtime's optimiser).
        path: output file; parent folders are created.
        dynamic: export H and W (and batch) as dynamic axes; the metadata records it.

    Returns:
        The written path.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = replace(model.info, dynamic=dynamic)
    model = model.eval()
    h, w = info.input_height, info.input_width
    ir = torch.rand(1, 1, h, w)
    vis = torch.rand(1, 3, h, w)
    axes = None
    if dynamic:
        axes = {
            "ir": {0: "batch", 2: "height", 3: "width"},
            "visible": {0: "batch", 2: "height", 3: "width"},
            "fused": {0: "batch", 2: "height", 3: "width"},
            "segmentation": {0: "batch", 2: "seg_height", 3: "seg_width"},
            "detections": {0: "batch", 1: "points"},
        }
    t0 = time.perf_counter()
    tmp = path.with_suffix(path.suffix + ".tmp")
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ir, vis),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    proto = onnx.load(str(tmp))
    folded = 0 if dynamic else fold_zero_pads(proto)  # see graph_passes: fixed sizes only
    meta = proto.metadata_props.add()
    meta.key, meta.value = METADATA_KEY, info.to_json()
    proto.producer_name = "fusion_perception"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    log.info(
        "export onnx: %s (%.1f KiB, %s, %d pad(s) folded into convolutions, %.1f s)",
        path,
        path.stat().st_size / 1024,
        "dynamic H/W" if dynamic else f"fixed {w}x{h}",
        folded,
        time.perf_counter() - t0,
    )
    return path
