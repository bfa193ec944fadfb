"""Teacher torch module -> ONNX (file in, file out), with its facts in ``metadata_props``.

The file records the SHA-256 of the two TF.js source files it was converted from, so the ONNX
Runtime side (:mod:`.runner`) can tell a stale conversion from a current one without torch.
Weights are float32 (the fp16 sources dequantized exactly); ~15 MB, built in seconds, not committed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from .assets import CONVERTER_VERSION, MODEL_JSON, NPM_PACKAGE, ONNX_PATH, source_digest
from .model import load_teacher_module
from .nanodet import COCO_CLASSES, INPUT_SIZE, MEAN_BGR, REG_MAX, STD_BGR, STRIDES

__all__ = ["OPSET", "TEACHER_METADATA_KEY", "convert", "teacher_metadata"]

log = logging.getLogger(__name__)
OPSET = 17
TEACHER_METADATA_KEY = "nanodet_teacher"
INPUT_NAME = "bgr"
OUTPUT_NAMES = ("scores", "distance_logits")


def teacher_metadata(digest: str) -> dict:
    """What the ONNX file promises: layout, normalisation, classes, provenance."""
    return {
        "format_version": 1,
        "model": "nanodet-g (COCO)",
        "source": NPM_PACKAGE,
        "source_sha256": digest,
        "converter_version": CONVERTER_VERSION,
        "input": {
            "name": INPUT_NAME,
            "shape": [-1, 3, INPUT_SIZE, INPUT_SIZE],
            "channels": "BGR",
            "range": "0..255 float, letterboxed",
            "mean": MEAN_BGR,
            "std": STD_BGR,
        },
        "outputs": {
            "scores": "sigmoid [N, A, 80]",
            "distance_logits": f"[N, A, 4 x {REG_MAX + 1}] l, t, r, b",
        },
        "strides": list(STRIDES),
        "reg_max": REG_MAX,
        "classes": list(COCO_CLASSES),
        "licence": "Apache-2.0 (RangiLyu/nanodet); see third_party/nanodet_g/README.md",
    }


def convert(json_path: Path | str = MODEL_JSON, out: Path | str = ONNX_PATH) -> Path:
    """Convert the TF.js teacher to ONNX at ``out`` (batch axis dynamic); returns the path."""
    import onnx

    json_path, out = Path(json_path), Path(out)
    t0 = time.perf_counter()
    module = load_teacher_module(json_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    example = torch.full((1, 3, INPUT_SIZE, INPUT_SIZE), 114.0)
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}},
            opset_version=OPSET,
            dynamo=False,
        )
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key = TEACHER_METADATA_KEY
    entry.value = json.dumps(teacher_metadata(source_digest(json_path.parent)), sort_keys=True)
    proto.producer_name = "fusion_perception.teacher"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    log.info("teacher onnx: %s (%.1f MiB, %.1f s)", out, out.stat().st_size / 2**20, time.perf_counter() - t0)
    return out
