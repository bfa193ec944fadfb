"""TensorRT 10 backend (+ pycuda): engine building from ONNX and inference, torch-free.

Everything that calls TensorRT or pycuda lives here, imported lazily: on a machine without them
this module still imports, and :func:`import_tensorrt` / :func:`import_pycuda` raise
:class:`BackendUnavailableError` with the reason. The I/O plan (which tensor is which, shapes,
dtypes, byte sizes) is a plain function of a ``name -> TensorSpec`` table, tested without a GPU.

Threading: rclpy callbacks may run on another thread than the one that built the backend. CUDA
contexts are per thread, so every public call pushes the device's primary context and pops it in
``finally``; inference is serialised by a lock (one stream, one set of buffers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, EngineError, ModelFormatError
from .backend import Outputs, check_outputs
from .engine_cache import EngineMeta, ShapeProfile, file_sha256, read_meta
from .model_info import INPUT_NAMES, OUTPUT_NAMES, ModelInfo

__all__ = [
    "INPUT_CHANNELS",
    "TensorPlan",
    "TensorRTBackend",
    "TensorSpec",
    "build_serialized_engine",
    "gpu_identity",
    "import_pycuda",
    "import_tensorrt",
    "plan_io",
]

log = logging.getLogger(__name__)

#: Channels of each graph input (runtime/model_info.py).
INPUT_CHANNELS = {"ir": 1, "visible": 3}


def import_tensorrt() -> ModuleType:
    """Import the TensorRT Python package (10.x) or raise BackendUnavailableError saying why."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailableError(f"TensorRT is not installed (import tensorrt failed: {err})") from err
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} found; this backend needs TensorRT >= 10")
    return trt


def import_pycuda() -> ModuleType:
    """Import and initialise the pycuda driver API, or raise BackendUnavailableError saying why.

    ``pycuda.autoinit`` is deliberately not used: it binds a context to the importing thread only.
    """
    try:
        import pycuda.driver as cuda
    except ImportError as err:
        raise BackendUnavailableError(
            f"pycuda is not installed (import pycuda.driver failed: {err})"
        ) from err
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as err:  # pycuda.driver.Error subclasses; no driver or no device
        raise BackendUnavailableError(f"CUDA driver not usable: {err}") from err
    if count == 0:
        raise BackendUnavailableError("no CUDA device found")
    return cuda


def gpu_identity(cuda: ModuleType, device: int) -> tuple[str, str]:
    """(device name, compute capability "major.minor") of CUDA device ``device``."""
    count = cuda.Device.count()
    if not 0 <= device < count:
        raise BackendUnavailableError(f"CUDA device {device} requested, {count} present")
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return dev.name(), f"{major}.{minor}"


# --------------------------------------------------------------------------------------------
# I/O plan (pure)


@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor as the engine (or execution context) reports it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    is_input: bool


@dataclass(frozen=True)
class TensorPlan:
    """A resolved I/O tensor: concrete shape and the bytes its host and device buffers need."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    is_input: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def plan_io(specs: Mapping[str, TensorSpec]) -> dict[str, TensorPlan]:
    """Check an engine's I/O table against the deployed-graph contract and resolve it.

    ``specs`` are the shapes after the input shapes were set on the context, so no dimension may
    still be -1. Extra outputs are allowed (ignored); missing or mistyped tensors are not.

    Raises:
        ModelFormatError: names, directions, dtypes or shapes disagree with the contract.
    """
    inputs = sorted(n for n, s in specs.items() if s.is_input)
    outputs = {n for n, s in specs.items() if not s.is_input}
    if inputs != sorted(INPUT_NAMES) or not set(OUTPUT_NAMES) <= outputs:
        raise ModelFormatError(
            f"engine has inputs {inputs} and outputs {sorted(outputs)}; "
            f"expected inputs {list(INPUT_NAMES)} and outputs {list(OUTPUT_NAMES)}"
        )
    plans = {}
    for name, spec in specs.items():
        if name not in INPUT_NAMES and name not in OUTPUT_NAMES:
            continue
        if np.dtype(spec.dtype) != np.float32:
            raise ModelFormatError(f"engine tensor {name!r} is {np.dtype(spec.dtype)}, expected float32 I/O")
        if any(d < 0 for d in spec.shape):
            raise ModelFormatError(
                f"engine tensor {name!r} has unresolved shape {spec.shape}; set input shapes"
            )
        if name in INPUT_CHANNELS and (len(spec.shape) != 4 or spec.shape[1] != INPUT_CHANNELS[name]):
            raise ModelFormatError(
                f"engine input {name!r} has shape {spec.shape}, expected [N, {INPUT_CHANNELS[name]}, H, W]"
            )
        plans[name] = TensorPlan(name, tuple(int(d) for d in spec.shape), np.dtype(spec.dtype), spec.is_input)
    return plans


# --------------------------------------------------------------------------------------------
# TensorRT objects (need tensorrt)


def make_logger(trt: ModuleType, logger: logging.Logger) -> Any:
    """A ``trt.ILogger`` forwarding TensorRT's messages to ``logger`` at matching levels."""
    levels = {
        trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.Severity.ERROR: logging.ERROR,
        trt.ILogger.Severity.WARNING: logging.WARNING,
        trt.ILogger.Severity.INFO: logging.INFO,
        trt.ILogger.Severity.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            logger.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

    return _Logger()


def make_progress_monitor(trt: ModuleType, logger: logging.Logger) -> Any | None:
    """A ``trt.IProgressMonitor`` logging top-level build phases (None where TensorRT lacks it).

    TensorRT calls it from several threads; logging is thread-safe and nothing else is shared.
    """
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._started: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._started[phase_name] = time.perf_counter()
            if parent_phase is None:
                logger.info("engine build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            start = self._started.pop(phase_name, None)
            if start is not None:
                logger.debug("engine build: %s done in %.1f s", phase_name, time.perf_counter() - start)

    return _Progress()


def build_serialized_engine(
    onnx_path: Path | str,
    *,
    precision: str,
    profile: ShapeProfile,
    workspace_mib: int = 1024,
    timing_cache: Path | None = None,
    calibrator: Any | None = None,
    logger: logging.Logger | None = None,
) -> bytes:
    """Parse ``onnx_path`` and build a serialized TensorRT engine.

    Args:
        precision: "fp32", "fp16" or "int8" (INT8 also enables FP16 for layers that do not quantise).
        profile: input sizes; every input gets the same (min, opt, max) in NCHW with batch 1.
        workspace_mib: builder workspace memory pool limit.
        timing_cache: file read before and written after the build, so later builds of the same
            layers on the same GPU skip tactic timing (minutes on a Jetson).
        calibrator: an ``IInt8EntropyCalibrator2``; required for "int8".

    Raises:
        BackendUnavailableError: TensorRT is missing.
        ModelFormatError: the ONNX parser rejects the file (its errors are listed).
        EngineError: the builder fails.
    """
    trt = import_tensorrt()
    logger = logger or log
    if precision == "int8" and calibrator is None:
        raise EngineError("INT8 needs calibration data: pass calibration pairs (--calib-dir)")
    trt_logger = make_logger(trt, logger)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFormatError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in INPUT_CHANNELS:
            raise ModelFormatError(f"{onnx_path} has an unexpected input {name!r}")
        opt_profile.set_shape(name, *profile.nchw(INPUT_CHANNELS[name]))
    config.add_optimization_profile(opt_profile)
    if calibrator is not None:
        config.int8_calibrator = calibrator
        config.set_calibration_profile(opt_profile)
    monitor = make_progress_monitor(trt, logger)
    if monitor is not None:
        config.progress_monitor = monitor
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)  # ignore_mismatch: a foreign cache is not merged
    t0 = time.perf_counter()
    logger.info(
        "engine build: %s, %s, profile %s (timing cache %s)",
        onnx_path,
        precision,
        profile.describe(),
        "warm" if cache_bytes else "cold",
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = timing_cache.with_name(timing_cache.name + ".tmp")
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        tmp.replace(timing_cache)
    data = bytes(serialized)
    logger.info("engine build: done in %.1f s, %.1f MiB", time.perf_counter() - t0, len(data) / 2**20)
    return data


class TensorRTBackend:
    """Runs a serialized engine on one CUDA stream with pinned host buffers.

    Args:
        engine_path: plain TensorRT engine; its metadata JSON must sit beside it (engine_cache).
        device: CUDA device index.
        warmup: inferences run at construction, so the first camera frame does not pay for lazy
            initialisation (and a broken engine fails at configure time, not in a callback).
        logger: receives TensorRT's own log.
    """

    name = "tensorrt"

    def __init__(
        self,
        engine_path: Path | str,
        *,
        device: int = 0,
        warmup: int = 2,
        logger: logging.Logger | None = None,
    ) -> None:
        self._log = logger or log
        trt = import_tensorrt()
        cuda = import_pycuda()
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise EngineError(f"TensorRT engine {engine_path} does not exist")
        meta: EngineMeta = read_meta(engine_path)
        if file_sha256(engine_path) != meta.engine_sha256:
            raise EngineError(f"engine file {engine_path} is corrupt: its sha256 differs from its metadata")
        self.info: ModelInfo = meta.info
        self.meta = meta
        self.engine_path = engine_path
        self._trt, self._cuda = trt, cuda
        self._lock = threading.Lock()
        self._ctx = cuda.Device(device).retain_primary_context()
        self._ctx.push()
        ready = False
        try:
            self._trt_logger = make_logger(trt, self._log)
            self._runtime = trt.Runtime(self._trt_logger)
            self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self._engine is None:
                raise EngineError(
                    f"TensorRT could not deserialize {engine_path} (corrupt, or built by another "
                    f"TensorRT version / GPU); rebuild it with `fusion-perception build-engine`"
                )
            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            self._profile = self._read_profile()
            self._shape: tuple[int, int] | None = None
            self._host: dict[str, np.ndarray] = {}
            self._device: dict[str, Any] = {}
            # A dynamic engine's "own size" is the size it was tuned for (profile opt).
            opt_w, opt_h = self._profile.opt
            self.info = replace(self.info, input_width=opt_w, input_height=opt_h)
            self._allocate(self._profile.opt)
            for _ in range(warmup):
                self._run_locked(*self._dummy_inputs())
            ready = True
        finally:
            if not ready:
                getattr(self, "_device", {}).clear()  # free device memory while the context is current
            self._ctx.pop()
            if not ready:
                self._ctx.detach()

    def _read_profile(self) -> ShapeProfile:
        shapes = self._engine.get_tensor_profile_shape("ir", 0)  # [min, opt, max] NCHW
        return ShapeProfile(*((int(s[3]), int(s[2])) for s in shapes))

    def _dummy_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        w, h = self._shape  # type: ignore[misc]
        return np.full((1, 1, h, w), 0.5, np.float32), np.full((1, 3, h, w), 0.5, np.float32)

    def _specs(self) -> dict[str, TensorSpec]:
        trt, engine = self._trt, self._engine
        specs = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            specs[name] = TensorSpec(
                shape=tuple(self._context.get_tensor_shape(name)),
                dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
            )
        return specs

    def _allocate(self, size: tuple[int, int]) -> None:
        """Set input shapes for ``size`` (width, height) and (re)allocate every buffer."""
        if not self._profile.contains(size):
            raise ModelFormatError(
                f"input {size[0]}x{size[1]} lies outside the engine's profile {self._profile.describe()}"
            )
        w, h = size
        for name, channels in INPUT_CHANNELS.items():
            if not self._context.set_input_shape(name, (1, channels, h, w)):
                raise ModelFormatError(f"engine rejects input shape {(1, channels, h, w)} for {name!r}")
        plans = plan_io(self._specs())
        self._device.clear()  # pycuda frees DeviceAllocations when they are dropped
        self._host = {n: self._cuda.pagelocked_empty(p.shape, p.dtype) for n, p in plans.items()}
        for name, plan in plans.items():
            self._device[name] = self._cuda.mem_alloc(plan.nbytes)
            self._context.set_tensor_address(name, int(self._device[name]))
        self._plans = plans
        self._shape = size

    def _run_locked(self, ir: np.ndarray, visible: np.ndarray) -> Outputs:
        size = (ir.shape[3], ir.shape[2])
        if size != self._shape:
            self._allocate(size)
        cuda, stream = self._cuda, self._stream
        for name, array in (("ir", ir), ("visible", visible)):
            np.copyto(self._host[name], array, casting="same_kind")
            cuda.memcpy_htod_async(self._device[name], self._host[name], stream)
        if not self._context.execute_async_v3(stream.handle):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        for name in OUTPUT_NAMES:
            cuda.memcpy_dtoh_async(self._host[name], self._device[name], stream)
        stream.synchronize()
        return {name: self._host[name].copy() for name in OUTPUT_NAMES}

    def infer(self, ir: np.ndarray, visible: np.ndarray) -> Outputs:
        if ir.ndim != 4 or visible.ndim != 4 or ir.shape[0] != 1 or ir.shape[2:] != visible.shape[2:]:
            raise ModelFormatError(
                f"expected ir [1,1,H,W] and visible [1,3,H,W], got {ir.shape}, {visible.shape}"
            )
        with self._lock:
            self._ctx.push()
            try:
                outputs = self._run_locked(ir, visible)
            finally:
                self._ctx.pop()
        return check_outputs(outputs, ir, self.info)

    def close(self) -> None:
        """Free device memory and TensorRT objects with the context current, then release it."""
        with self._lock:
            if self._ctx is None:
                return
            self._ctx.push()
            try:
                self._device.clear()
                self._host.clear()
                self._context = None
                self._engine = None
                self._runtime = None
            finally:
                self._ctx.pop()
                self._ctx.detach()
                self._ctx = None
