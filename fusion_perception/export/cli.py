"""``fusion-perception export CHECKPOINT``: the deployed graph as ONNX, fixed and dynamic shape.

Writes ``NAME.onnx`` (fixed WxH) and ``NAME_dynamic.onnx`` (H, W free; multiples of 32), each with
its ModelInfo JSON beside it, then (``--verify-dir``) checks ONNX Runtime against PyTorch on real
pairs and fails if any output differs by more than :data:`PARITY_TOLERANCE`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError, ModelFormatError
from ..image_pairs import find_pairs
from ..models.checkpoint import load_deployed
from ..models.deployed import DeployedModel
from ..runtime.backend import OnnxRuntimeBackend
from ..runtime.engine_cache import parse_size
from ..runtime.model_info import OUTPUT_NAMES
from .engine_build import calibration_batches
from .onnx_export import export_onnx

__all__ = ["PARITY_TOLERANCE", "export_variants", "main", "parity_errors"]

log = logging.getLogger(__name__)

#: Allowed |onnxruntime - torch| per output, as (absolute, relative to |torch|). fused is in [0, 1];
#: segmentation logits are O(1-10); detection distances reach hundreds of pixels, hence relative.
#: Both run FP32, so differences are reordered sums: measured max 4e-7 (fused), 2e-7 (segmentation)
#: and 4e-6 (detections, values up to ~20 px) on real MSRS pairs at 640x480.
PARITY_TOLERANCE = {"fused": (1e-5, 0.0), "segmentation": (1e-4, 1e-5), "detections": (1e-4, 1e-5)}


def export_variants(model: DeployedModel, out_dir: Path, name: str, *, dynamic: bool = True) -> list[Path]:
    """Write ``name.onnx`` (fixed) and, if ``dynamic``, ``name_dynamic.onnx``, each with ``.json`` info."""
    paths = []
    for variant, is_dynamic in ((name, False), (f"{name}_dynamic", True))[: 2 if dynamic else 1]:
        path = export_onnx(model, out_dir / f"{variant}.onnx", dynamic=is_dynamic)
        replace(model.info, dynamic=is_dynamic).save(path.with_suffix(".json"))
        paths.append(path)
    return paths


def parity_errors(
    model: DeployedModel, onnx_path: Path, inputs: Iterable[dict[str, np.ndarray]]
) -> dict[str, float]:
    """Run ``model`` (torch, FP32, CPU) and ONNX Runtime on each input; return, per output, the
    worst excess over :data:`PARITY_TOLERANCE` (<= 0 everywhere means parity holds)."""
    backend = OnnxRuntimeBackend(onnx_path)
    worst = dict.fromkeys(OUTPUT_NAMES, -np.inf)
    model = model.eval()
    try:
        for batch in inputs:
            ort_out = backend.infer(batch["ir"], batch["visible"])
            with torch.no_grad():
                ref = model(torch.from_numpy(batch["ir"]), torch.from_numpy(batch["visible"]))
            for name, ref_t in zip(OUTPUT_NAMES, ref, strict=True):
                expected = ref_t.numpy()
                if ort_out[name].shape != expected.shape:
                    raise ModelFormatError(
                        f"{name}: ONNX shape {ort_out[name].shape}, torch {expected.shape}"
                    )
                atol, rtol = PARITY_TOLERANCE[name]
                excess = np.abs(ort_out[name] - expected) - (atol + rtol * np.abs(expected))
                worst[name] = max(worst[name], float(excess.max()))
    finally:
        backend.close()
    return worst


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fusion-perception export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="(path) training checkpoint (torch.save dict)")
    p.add_argument("--out-dir", type=Path, help="(path) output folder; default: the checkpoint's folder")
    p.add_argument("--name", help="(str) file stem; default: the checkpoint's stem")
    p.add_argument("--size", help="(WxH) fixed input size; default: the size stored in the checkpoint")
    p.add_argument("--no-dynamic", action="store_true", help="skip the dynamic-shape variant")
    p.add_argument("--verify-dir", type=Path, help="(path) real pairs (ir/, vi/) to check ORT against torch")
    p.add_argument("--verify-count", type=int, default=4, help="(int) pairs used by --verify-dir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        model = load_deployed(args.checkpoint)
        if args.size:
            w, h = parse_size(args.size)
            model.info = replace(model.info, input_width=w, input_height=h)
        pairs = find_pairs(args.verify_dir)[: args.verify_count] if args.verify_dir else []
    except (ValueError, ModelFormatError, DatasetError) as err:
        print(f"export: error: {err}", file=sys.stderr)
        return 2
    out_dir = args.out_dir or args.checkpoint.parent
    paths = export_variants(model, out_dir, args.name or args.checkpoint.stem, dynamic=not args.no_dynamic)
    failed = False
    for path in paths if pairs else []:
        errors = parity_errors(model, path, calibration_batches(pairs, model.info.input_size))
        ok = all(v <= 0 for v in errors.values())
        failed |= not ok
        log.info(
            "parity %s vs torch on %d pairs: %s (excess over tolerance: %s)",
            path.name,
            len(pairs),
            "OK" if ok else "FAILED",
            {k: f"{v:.2e}" for k, v in errors.items()},
        )
    for path in paths:
        print(path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
