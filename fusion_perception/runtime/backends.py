"""Backend helpers of the runtime: finding a CUDA device without torch, the engine cache folder,
the files a precision or a backend loads, a model's metadata, and building a TensorRT engine file.

Choosing among the backends is :mod:`fusion_perception.backend_factory` (it also knows the PyTorch
backend, which lives with the models); nothing here imports torch.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, ModelFormatError
from .backend import OnnxRuntimeBackend
from .engine_cache import (
    EngineKey,
    EngineMeta,
    ShapeProfile,
    file_sha256,
    timing_cache_path_for,
    write_meta,
)
from .model_info import ModelInfo

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "build_engine_file",
    "checkpoint_for",
    "cuda_device_count",
    "default_engine_cache",
    "int8_model_path",
    "onnx_for_precision",
    "read_onnx_info",
    "sized_model_path",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def cuda_device_count() -> tuple[int, str]:
    """(number of CUDA devices, reason when 0) from the driver library, without torch or pycuda."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        status = lib.cuInit(0)
        if status != 0:
            return 0, f"CUDA driver present but cuInit failed with error {status}"
        count = ctypes.c_int(0)
        status = lib.cuDeviceGetCount(ctypes.byref(count))
        if status != 0:
            return 0, f"cuDeviceGetCount failed with error {status}"
        return count.value, "" if count.value else "the CUDA driver reports no device"
    return 0, "no CUDA driver (libcuda.so.1 not found)"


def default_engine_cache() -> Path:
    """Where engines go when no path is given: ``$XDG_CACHE_HOME/fusion_perception/engines``.

    Not beside the ONNX file, which may sit in a read-only install tree.
    """
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fusion_perception" / "engines"


def checkpoint_for(model_path: Path) -> Path:
    """The torch checkpoint for ``model_path``: itself if it is one, else ``<stem>.pt`` beside it."""
    if model_path.suffix in CHECKPOINT_SUFFIXES:
        return model_path
    for suffix in CHECKPOINT_SUFFIXES:
        candidate = model_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise BackendUnavailableError(
        f"the torch backend needs a training checkpoint; {model_path} is not one and no "
        f"{model_path.stem}{{{','.join(CHECKPOINT_SUFFIXES)}}} lies beside it"
    )


def int8_model_path(model_path: Path | str) -> Path:
    """The INT8 (QDQ) sibling of an FP32 ONNX file: ``<stem>_int8.onnx`` beside it, as written by
    ``fusion-perception quantize``; a path whose stem already ends in ``_int8`` is returned as is."""
    path = Path(model_path)
    return path if path.stem.endswith("_int8") else path.with_name(f"{path.stem}_int8{path.suffix}")


def sized_model_path(model_path: Path | str, size: tuple[int, int]) -> Path:
    """The sibling of ``model_path`` exported for a ``(width, height)`` network input:
    ``<stem>_<W>x<H>.onnx`` beside it, as ``fusion-perception export CKPT --size WxH --name
    <stem>_<W>x<H>`` writes it (its INT8 sibling is then ``<stem>_<W>x<H>_int8.onnx``)."""
    path = Path(model_path)
    return path.with_name(f"{path.stem}_{size[0]}x{size[1]}{path.suffix}")


def onnx_for_precision(model_path: Path, precision: str) -> Path:
    """The ONNX file ONNX Runtime loads: the INT8 sibling for ``int8``, else ``model_path`` (ORT on
    the CPU has no FP16 kernels worth using, so ``fp16`` runs the FP32 file)."""
    if precision != "int8":
        return model_path
    path = int8_model_path(model_path)
    if not path.is_file():
        raise ModelFormatError(
            f"precision int8 needs {path} (the INT8 sibling of {model_path}); make it with "
            f"`fusion-perception quantize {model_path} --calib DATASET_DIR`"
        )
    return path


def read_onnx_info(onnx_path: Path) -> ModelInfo:
    """ModelInfo of an exported ONNX file (from its metadata, via ONNX Runtime: no onnx package)."""
    return OnnxRuntimeBackend(onnx_path, threads=1).info

def build_engine_file(
    onnx_path: Path,
    engine_path: Path,
    key: EngineKey,
    profile: ShapeProfile,
    *,
    device_name: str = "",
    calibrator: Any | None = None,
    workspace_mib: int = 1024,
    timing_cache: Path | None = None,
    logger: logging.Logger | None = None,
) -> EngineMeta:
    """Build the engine for ``key`` and write it plus its metadata JSON (both atomically)."""
    from .tensorrt_backend import build_serialized_engine

    info = read_onnx_info(onnx_path)
    t0 = time.perf_counter()
    data = build_serialized_engine(
        onnx_path,
        precision=key.precision,
        profile=profile,
        workspace_mib=workspace_mib,
        timing_cache=timing_cache
        if timing_cache is not None
        else timing_cache_path_for(engine_path.parent, key),
        calibrator=calibrator,
        logger=logger,
    )
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(engine_path)
    meta = EngineMeta(
        key=key,
        info=info,
        engine_sha256=file_sha256(engine_path),
        engine_bytes=len(data),
        onnx_path=str(onnx_path),
        device_name=device_name,
        build_seconds=time.perf_counter() - t0,
    )
    write_meta(engine_path, meta)
    return meta
