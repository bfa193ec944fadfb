"""Inference latency of every backend at 640x480 on real MSRS pairs: a table and JSON.

    python benchmarks/bench_gpu.py                       # CUDA if present, else the CPU set
    python benchmarks/bench_gpu.py --device cpu --iters 5
    python benchmarks/bench_gpu.py --checkpoint run/model.pt --iters 500 --json gpu.json

On a GPU it runs PyTorch FP32, FP16 autocast, FP16 + CUDA graphs, TensorRT FP16 (when TensorRT is
installed; the engine is built into a temporary cache first) and ONNX Runtime on the CPU for
reference. On the CPU: PyTorch FP32 and ONNX Runtime. Times are ``backend.infer`` per pair,
including host<->device copies, excluding preprocessing and decoding (the pipeline benchmark
covers those). The shipped ``assets/default.pt`` is measured unless ``--checkpoint`` names another.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _report import portable

from fusion_perception.data_root import dataset_path
from fusion_perception.export.engine_build import calibration_batches
from fusion_perception.image_pairs import find_pairs
from fusion_perception.runtime.backend import Backend

MSRS = dataset_path("msrs")  # $FUSION_PERCEPTION_DATA/msrs, default ../shared/datasets/msrs
SIZE = (640, 480)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "fusion_perception" / "assets" / "default.pt"


def measure(
    backend: Backend, inputs: list[dict[str, np.ndarray]], iters: int, warmup: int
) -> dict[str, float]:
    """Latency statistics (ms) of ``backend.infer`` cycling over ``inputs``."""
    for i in range(warmup):
        batch = inputs[i % len(inputs)]
        backend.infer(batch["ir"], batch["visible"])
    times = []
    for i in range(iters):
        batch = inputs[i % len(inputs)]
        t0 = time.perf_counter()
        backend.infer(batch["ir"], batch["visible"])
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {
        "mean_ms": statistics.fmean(times),
        "p50_ms": times[len(times) // 2],
        "p90_ms": times[min(len(times) - 1, int(len(times) * 0.9))],
        "fps": 1e3 / statistics.fmean(times),
        "iters": iters,
    }


def prepare_model(checkpoint: Path, onnx: Path | None, work: Path) -> Path:
    """The ONNX file to measure: ``onnx`` if given, else exported from ``checkpoint`` into ``work``."""
    import torch

    from fusion_perception.export.onnx_export import export_onnx
    from fusion_perception.models.checkpoint import load_deployed

    if onnx is None:
        with torch.no_grad():
            onnx = export_onnx(load_deployed(checkpoint), work / "bench.onnx")
    return onnx


def configurations(
    device: str, checkpoint: Path, onnx: Path, threads: int, work: Path
) -> list[tuple[str, Callable[[], Backend]]]:
    """(label, factory) for each backend to measure on ``device``."""
    from fusion_perception.backend_factory import create_backend
    from fusion_perception.models.torch_backend import TorchBackend

    configs: list[tuple[str, Callable[[], Backend]]] = []
    if device == "cuda":
        configs += [
            ("torch cuda fp32", lambda: TorchBackend(checkpoint, device="cuda", precision="fp32")),
            ("torch cuda fp16", lambda: TorchBackend(checkpoint, device="cuda", precision="fp16")),
            (
                "torch cuda fp16 + CUDA graphs",
                lambda: TorchBackend(checkpoint, device="cuda", precision="fp16", cuda_graphs=True),
            ),
            (
                "tensorrt fp16",
                lambda: create_backend(
                    "tensorrt", onnx, engine_path=work / "bench.fp16.engine", precision="fp16"
                ),
            ),
        ]
    else:
        configs.append(
            (
                "torch cpu fp32",
                lambda: TorchBackend(checkpoint, device="cpu", precision="fp32", threads=threads),
            )
        )
    configs.append(("onnxruntime cpu fp32", lambda: create_backend("onnxruntime", onnx, threads=threads)))
    return configs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help="trained checkpoint (default: the shipped default.pt)")
    p.add_argument("--onnx", type=Path, help="ONNX file (default: exported from the checkpoint)")
    p.add_argument("--pairs", type=int, default=4, help="real MSRS pairs cycled as inputs")
    p.add_argument("--iters", type=int, default=10, help="timed calls per backend (use 500+ for reports)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = library default)")
    p.add_argument("--data", type=Path, default=MSRS, help="folder with ir/ and vi/")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print(f"bench_gpu: --device cuda but torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        return 2
    inputs = list(calibration_batches(find_pairs(args.data)[: args.pairs], SIZE))
    results: dict[str, object] = {
        "size": f"{SIZE[0]}x{SIZE[1]}",
        "device": torch.cuda.get_device_name(0)
        if device == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "pairs": len(inputs),
        "backends": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onnx = prepare_model(args.checkpoint, args.onnx, work)
        results["weights"] = str(args.checkpoint)
        for label, factory in configurations(device, args.checkpoint, onnx, args.threads, work):
            try:
                backend = factory()
            except Exception as err:  # any backend may be missing here; report it and go on
                results["backends"][label] = {"skipped": f"{type(err).__name__}: {err}"}
                continue
            try:
                results["backends"][label] = measure(backend, inputs, args.iters, args.warmup)
            finally:
                backend.close()
    print(f"\n{results['size']} on {results['device']} ({results['weights']})")
    print(f"{'backend':<32} {'mean ms':>9} {'p50 ms':>9} {'p90 ms':>9} {'FPS':>8}")
    for label, row in results["backends"].items():
        if "skipped" in row:
            print(f"{label:<32} skipped: {row['skipped']}")
        else:
            stats = f"{row['mean_ms']:9.2f} {row['p50_ms']:9.2f} {row['p90_ms']:9.2f} {row['fps']:8.1f}"
            print(f"{label:<32} {stats}")
    text = json.dumps(portable(results), indent=2)  # no machine paths in a result file
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
