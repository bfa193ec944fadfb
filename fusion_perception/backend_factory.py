"""Backend selection: ``create_backend("auto" | "tensorrt" | "torch" | "onnxruntime", model, ...)``.

This module sits above both the runtime (ONNX Runtime, TensorRT) and the models layer (the PyTorch
backend, which needs the networks), because choosing among all three means knowing all three; the
runtime itself never imports torch. ``auto`` tries TensorRT, then PyTorch on CUDA, then ONNX Runtime
on the CPU, and records why each faster one was skipped in ``backend.fallback_reasons`` (the node
publishes them in diagnostics). An explicitly named backend never falls back: it works or raises
with the reason.

torch and tensorrt are imported only when their backend is tried; ``auto`` checks for a CUDA
device through the driver library (ctypes) first, so a CPU machine never imports torch just to
learn it has no GPU.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from .errors import BackendUnavailableError, EngineError, ModelFormatError
from .runtime.backend import Backend, OnnxRuntimeBackend
from .runtime.backends import (
    build_engine_file,
    checkpoint_for,
    cuda_device_count,
    default_engine_cache,
    onnx_for_precision,
    read_onnx_info,
)
from .runtime.engine_cache import (
    EngineKey,
    ShapeProfile,
    check_precision,
    engine_path_for,
    file_sha256,
    resolve_engine,
)

__all__ = ["BACKEND_KINDS", "create_backend"]

log = logging.getLogger(__name__)

BACKEND_KINDS = ("auto", "tensorrt", "torch", "onnxruntime")
AUTO_ORDER = ("tensorrt", "torch", "onnxruntime")


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
    from .runtime.tensorrt_backend import TensorRTBackend, gpu_identity, import_pycuda, import_tensorrt

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
    from .models.torch_backend import TorchBackend  # imports torch

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
    check_precision(precision)
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
        return OnnxRuntimeBackend(onnx_for_precision(model_path, precision), threads=threads)

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
