"""ONNX -> TensorRT engine, file in / file out: profile from flags, cache check, INT8 calibration.

The TensorRT calls themselves are in ``runtime/tensorrt_backend.py`` (the node builds FP16/FP32
engines through the same code); this module adds what only the offline command needs: INT8
calibration from real pairs, forced rebuilds and the cache location choice. torch-free.

Calibration data must look like what the engine will see, so calibration pairs go through the
same ``prepare_pair`` as the node (gain control, YCbCr split, resize).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..image_pairs import find_pairs, read_pair
from ..preprocessing import PreprocessConfig, prepare_pair
from ..runtime.backends import build_engine_file, default_engine_cache, read_onnx_info
from ..runtime.engine_cache import (
    EngineKey,
    ShapeProfile,
    check_precision,
    engine_path_for,
    file_sha256,
    resolve_engine,
    timing_cache_path_for,
)

__all__ = [
    "EngineBuildRequest",
    "build_engine",
    "calibration_batches",
    "make_calibrator",
]

log = logging.getLogger(__name__)


def calibration_batches(
    pairs: Sequence[tuple[str, Path, Path]], size: tuple[int, int]
) -> Iterator[dict[str, np.ndarray]]:
    """Prepared network inputs ``{"ir": [1,1,H,W], "visible": [1,3,H,W]}`` at ``size`` (width, height)."""
    config = PreprocessConfig(network_size=size)
    for _, ir_path, vis_path in pairs:
        prepared = prepare_pair(*read_pair(ir_path, vis_path), config)
        yield {"ir": prepared.ir, "visible": prepared.visible}


def make_calibrator(
    trt: Any, cuda: Any, batches: Iterator[dict[str, np.ndarray]], cache_path: Path, logger: logging.Logger
) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` (batch 1) through device buffers.

    The calibration table is cached at ``cache_path``: a rebuild with the same ONNX reuses it.
    Must be created and used with a CUDA context current.
    """

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._device: dict[str, Any] = {}
            self.count = 0

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(batches, None)
            if batch is None:
                logger.info("INT8 calibration: %d pairs used", self.count)
                return None
            for name in names:
                array = np.ascontiguousarray(batch[name])
                if name not in self._device:
                    self._device[name] = cuda.mem_alloc(array.nbytes)
                cuda.memcpy_htod(self._device[name], array)
            self.count += 1
            return [int(self._device[name]) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    return _Calibrator()


@dataclass(frozen=True)
class EngineBuildRequest:
    """Everything ``build-engine`` was asked for (validated in ``__post_init__``)."""

    onnx_path: Path
    precision: str = "fp16"
    engine_path: Path | None = None
    cache_dir: Path | None = None
    min_size: str | None = None
    opt_size: str | None = None
    max_size: str | None = None
    workspace_mib: int = 1024
    timing_cache: Path | None = None
    calib_dir: Path | None = None
    calib_count: int = 64
    force: bool = False
    allow_build: bool = True
    device: int = 0

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.precision == "int8" and self.calib_dir is None:
            raise ValueError("INT8 needs calibration pairs: pass --calib-dir FOLDER (ir/ and vi/ inside)")
        if self.calib_count < 1:
            raise ValueError(f"calib_count must be >= 1, got {self.calib_count}")
        if self.workspace_mib < 64:
            raise ValueError(f"workspace must be at least 64 MiB, got {self.workspace_mib}")
        if not Path(self.onnx_path).is_file():
            raise FileNotFoundError(f"ONNX model {self.onnx_path} does not exist")


def build_engine(req: EngineBuildRequest, logger: logging.Logger | None = None) -> Path:
    """Build (or confirm up to date) the engine for ``req``; returns the engine path.

    Checks that need no GPU run first (model metadata, shape profile, calibration folder), so a
    wrong flag fails in a second on any machine rather than after TensorRT loads.

    Raises:
        ValueError: bad profile flags for this model.
        DatasetError: unusable calibration folder.
        BackendUnavailableError: TensorRT, pycuda or the GPU are missing.
        EngineError: the engine is stale and building is disabled, or the build failed.
    """
    from ..runtime.tensorrt_backend import gpu_identity, import_pycuda, import_tensorrt

    logger = logger or log
    info = read_onnx_info(req.onnx_path)
    profile = ShapeProfile.for_model(
        info, min_size=req.min_size, opt_size=req.opt_size, max_size=req.max_size
    )
    calib_pairs = find_pairs(req.calib_dir)[: req.calib_count] if req.precision == "int8" else []
    trt = import_tensorrt()
    cuda = import_pycuda()
    device_name, capability = gpu_identity(cuda, req.device)
    key = EngineKey(
        trt.__version__, capability, req.precision, profile.describe(), file_sha256(req.onnx_path)
    )
    engine_path = req.engine_path or engine_path_for(
        req.onnx_path, key, req.cache_dir or default_engine_cache()
    )
    decision = resolve_engine(
        engine_path, key, allow_build=req.allow_build or req.force, onnx_path=req.onnx_path
    )
    if decision.action == "load" and not req.force:
        logger.info("engine %s is up to date (key %s)", engine_path, key.digest())
        return engine_path
    logger.info("building %s: %s", engine_path, "; ".join(decision.reasons) or "forced")
    ctx = cuda.Device(req.device).retain_primary_context()
    ctx.push()
    calibrator = None
    try:
        if calib_pairs:
            cache = engine_path.with_name(f"{req.onnx_path.stem}.{key.onnx_sha256[:12]}.calib")
            calibrator = make_calibrator(
                trt, cuda, calibration_batches(calib_pairs, profile.opt), cache, logger
            )
        meta = build_engine_file(
            req.onnx_path,
            engine_path,
            key,
            profile,
            device_name=device_name,
            calibrator=calibrator,
            workspace_mib=req.workspace_mib,
            timing_cache=req.timing_cache or timing_cache_path_for(engine_path.parent, key),
            logger=logger,
        )
    finally:
        calibrator = None  # its device buffers must be freed while the context is current
        ctx.pop()
        ctx.detach()
    logger.info(
        "engine %s written: %.1f MiB in %.1f s on %s",
        engine_path,
        meta.engine_bytes / 2**20,
        meta.build_seconds,
        device_name,
    )
    return engine_path
