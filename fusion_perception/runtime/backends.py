"""Backend factory: ``create_backend("auto" | "tensorrt" | "torch" | "onnxruntime", model, ...)``.

``auto`` tries TensorRT, then PyTorch on CUDA, then ONNX Runtime on the CPU, and records why each
faster one was skipped in ``backend.fallback_reasons`` (the node publishes them in diagnostics).
An explicitly named backend never falls back: it works or raises with the reason.

torch and tensorrt are imported only when their backend is tried; ``auto`` checks for a CUDA
device through the driver library (ctypes) first, so a CPU machine never imports torch just to
learn it has no GPU.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, EngineError, ModelFormatError
from .backend import Backend, OnnxRuntimeBackend
from .engine_cache import (
    PRECISIONS,
    EngineKey,
    EngineMeta,
    ShapeProfile,
    engine_path_for,
    file_sha256,
    resolve_engine,
    timing_cache_path_for,
    write_meta,
)
from .model_info import ModelInfo

__all__ = [
    "BACKEND_KINDS",
    "CHECKPOINT_SUFFIXES",
    "build_engine_file",
    "checkpoint_for",
    "create_backend",
    "cuda_device_count",
    "default_engine_cache",
    "int8_model_path",
    "read_onnx_info",
]

log = logging.getLogger(__name__)

BACKEND_KINDS = ("auto", "tensorrt", "torch", "onnxruntime")
AUTO_ORDER = ("tensorrt", "torch", "onnxruntime")
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


def _onnx_for_precision(model_path: Path, precision: str) -> Path:
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


class _ForwardToNodeLogger(logging.Handler):
    """Sends records to a non-``logging`` logger (an rclpy node logger: debug/info/warning/error)."""

    def __init__(self, target: Any) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        level = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}.get(
            record.levelno, "error"
        )
        getattr(self.target, level)(self.format(record))


def _as_logging(logger: Any | None) -> logging.Logger:
    if logger is None or isinstance(logger, logging.Logger):
        return logger or log
    forward = logging.getLogger(f"{__name__}.node{id(logger)}")
    if not forward.handlers:
        forward.addHandler(_ForwardToNodeLogger(logger))
        forward.propagate = False
        forward.setLevel(logging.DEBUG)
    return forward


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


def _create_tensorrt(
    model_path: Path,
    *,
    engine_path: Path | None,
    precision: str,
    allow_build: bool,
    device: int,
    profile: ShapeProfile | None,
    logger: logging.Logger,
) -> Backend:
    from .tensorrt_backend import TensorRTBackend, gpu_identity, import_pycuda, import_tensorrt

    trt = import_tensorrt()
    cuda = import_pycuda()
    device_name, capability = gpu_identity(cuda, device)
    if model_path.suffix != ".onnx":
        raise BackendUnavailableError(f"the tensorrt backend builds from an ONNX file, got {model_path}")
    info = read_onnx_info(model_path)
    profile = profile or ShapeProfile.fixed(info.input_size)
    key = EngineKey(trt.__version__, capability, precision, profile.describe(), file_sha256(model_path))
    engine_path = engine_path or engine_path_for(model_path, key, default_engine_cache())
    decision = resolve_engine(engine_path, key, allow_build=allow_build, onnx_path=model_path)
    if decision.action == "build":
        logger.warning(
            "TensorRT engine %s will be built (this takes minutes): %s",
            engine_path,
            "; ".join(decision.reasons),
        )
        build_engine_file(model_path, engine_path, key, profile, device_name=device_name, logger=logger)
    return TensorRTBackend(engine_path, device=device, logger=logger)


def _create_torch(
    model_path: Path,
    *,
    precision: str,
    device: int,
    threads: int,
    cuda_graphs: bool,
    require_cuda: bool,
    reasons: list[str],
    logger: logging.Logger,
) -> Backend:
    checkpoint = checkpoint_for(model_path)
    if importlib.util.find_spec("torch") is None:
        raise BackendUnavailableError("PyTorch is not installed")
    count, why = cuda_device_count()
    if count <= device and require_cuda:
        raise BackendUnavailableError(f"no CUDA device {device} for PyTorch: {why or f'{count} present'}")
    from .torch_backend import TorchBackend  # imports torch

    torch_device = f"cuda:{device}" if count > device else "cpu"
    if torch_device == "cpu" and precision != "fp32":
        reasons.append(f"torch: no CUDA device ({why or f'{count} present'}), running on the CPU in fp32")
        logger.warning("backend torch: %s", reasons[-1])
        precision = "fp32"
    return TorchBackend(
        checkpoint, device=torch_device, precision=precision, cuda_graphs=cuda_graphs, threads=threads
    )


def create_backend(
    kind: str,
    model_path: Path | str,
    *,
    engine_path: Path | str | None = None,
    precision: str = "fp16",
    threads: int = 0,
    allow_build: bool = True,
    device: int = 0,
    logger: Any | None = None,
    profile: ShapeProfile | None = None,
    cuda_graphs: bool = False,
) -> Backend:
    """Load ``model_path`` with the backend ``kind``.

    Args:
        kind: "tensorrt", "torch", "onnxruntime" or "auto" (first that works, in that order).
        model_path: the exported ONNX file (a torch checkpoint ``<stem>.pt`` beside it serves the
            torch backend; a checkpoint path itself works for ``torch``).
        engine_path: TensorRT engine file; default under :func:`default_engine_cache`, named by key.
        precision: "fp16", "fp32" or "int8" (TensorRT; torch uses fp16 autocast or fp32; ONNX
            Runtime loads the INT8 sibling ``<stem>_int8.onnx`` for "int8", else the FP32 file).
        threads: CPU threads (ONNX Runtime intra-op, torch on CPU); 0 = library default.
        allow_build: build a missing or stale TensorRT engine; if False such an engine is refused
            with an EngineError naming the reasons.
        device: CUDA device index.
        logger: a ``logging.Logger`` or an rclpy node logger.
        profile: TensorRT input-shape profile for a dynamic model (default: its exported size).
        cuda_graphs: capture the torch model in a CUDA graph (fixed shapes, lower launch overhead).

    Returns:
        The backend, with ``fallback_reasons`` (list of str) saying what ``auto`` skipped and why.

    Raises:
        ValueError: unknown kind or precision.
        BackendUnavailableError / EngineError / ModelFormatError: the chosen backend cannot load
            the model (for "auto": even ONNX Runtime failed).
    """
    if kind not in BACKEND_KINDS:
        raise ValueError(f"backend must be one of {BACKEND_KINDS}, got {kind!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model_path = Path(model_path)
    pylog = _as_logging(logger)
    reasons: list[str] = []

    def make(name: str, require_cuda: bool) -> Backend:
        if name == "tensorrt":
            return _create_tensorrt(
                model_path,
                engine_path=Path(engine_path) if engine_path else None,
                precision=precision,
                allow_build=allow_build,
                device=device,
                profile=profile,
                logger=pylog,
            )
        if name == "torch":
            torch_precision = "fp32" if precision == "fp32" else "fp16"
            return _create_torch(
                model_path,
                precision=torch_precision,
                device=device,
                threads=threads,
                cuda_graphs=cuda_graphs,
                require_cuda=require_cuda,
                reasons=reasons,
                logger=pylog,
            )
        return OnnxRuntimeBackend(_onnx_for_precision(model_path, precision), threads=threads)

    if kind != "auto":
        backend = make(kind, require_cuda=False)
    else:
        backend = None
        for name in AUTO_ORDER:
            if name == "onnxruntime":
                backend = make(name, require_cuda=False)
                break
            try:
                backend = make(name, require_cuda=True)
                break
            except (BackendUnavailableError, EngineError, ModelFormatError) as err:
                reasons.append(f"{name}: {err}")
                pylog.warning("backend auto: %s skipped: %s", name, err)
        pylog.info("backend auto: using %s", backend.name)
    backend.fallback_reasons = reasons  # type: ignore[union-attr]
    return backend  # type: ignore[return-value]
