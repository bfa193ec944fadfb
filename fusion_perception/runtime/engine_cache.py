"""TensorRT engine cache: keys, metadata beside the engine, staleness rules, shape profiles.

Pure Python (no tensorrt, no pycuda, no torch) so every rule is tested on any machine; the
TensorRT calls live in ``tensorrt_backend``.

An engine is only valid for the TensorRT version and GPU architecture that built it, the precision
and input shapes it was built for, and the exact ONNX file it came from. Those five facts form the
:class:`EngineKey`. The engine file stays plain TensorRT bytes (``trtexec`` and Polygraphy can load
it); the key, the model's :class:`ModelInfo` and the engine's own sha256 live in a JSON file beside
it (``<engine>.json``), so a stale, foreign, replaced or truncated engine is detected before
TensorRT ever deserialises it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EngineError
from .model_info import ModelInfo

__all__ = [
    "PRECISIONS",
    "EngineDecision",
    "EngineKey",
    "EngineMeta",
    "ShapeProfile",
    "check_precision",
    "engine_path_for",
    "file_sha256",
    "meta_path",
    "parse_size",
    "read_meta",
    "resolve_engine",
    "stale_reasons",
    "timing_cache_path_for",
    "write_meta",
]

PRECISIONS = ("fp32", "fp16", "int8")
META_FORMAT = 1
#: Network H and W must be multiples of this (the coarsest feature stride of the deployed graph).
SIZE_MULTIPLE = 32


def check_precision(precision: str) -> None:
    """Raise ValueError naming the choices unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480), (width, height); both positive multiples of 32.

    >>> parse_size("640x480")
    (640, 480)
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 640x480")
    w, h = int(match[1]), int(match[2])
    if w <= 0 or h <= 0 or w % SIZE_MULTIPLE or h % SIZE_MULTIPLE:
        raise ValueError(f"size {w}x{h} must be positive multiples of {SIZE_MULTIPLE}")
    return w, h


@dataclass(frozen=True)
class ShapeProfile:
    """Smallest, typical and largest network input (width, height); batch is 1.

    A fixed-shape model has ``min == opt == max`` equal to its exported size.
    """

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def __post_init__(self) -> None:
        for label, (w, h) in (("min", self.min), ("opt", self.opt), ("max", self.max)):
            if w <= 0 or h <= 0 or w % SIZE_MULTIPLE or h % SIZE_MULTIPLE:
                raise ValueError(f"{label} shape {w}x{h} must be positive multiples of {SIZE_MULTIPLE}")
        for axis, name in ((0, "width"), (1, "height")):
            if not self.min[axis] <= self.opt[axis] <= self.max[axis]:
                raise ValueError(
                    f"profile {name}s must satisfy min <= opt <= max, got "
                    f"{self.min[axis]}, {self.opt[axis]}, {self.max[axis]}"
                )

    @classmethod
    def fixed(cls, size: tuple[int, int]) -> ShapeProfile:
        return cls(size, size, size)

    @classmethod
    def for_model(
        cls,
        info: ModelInfo,
        *,
        min_size: str | None = None,
        opt_size: str | None = None,
        max_size: str | None = None,
    ) -> ShapeProfile:
        """The profile to build ``info``'s model with, from optional ``WxH`` flags.

        A fixed-shape model accepts no flags other than its own size; a dynamic one defaults
        every missing flag to the size it was exported at.

        Raises:
            ValueError: a flag is malformed, out of order, or asks a fixed model for other shapes.
        """
        own = info.input_size
        flags = {"min": min_size, "opt": opt_size, "max": max_size}
        sizes = {k: parse_size(v) if v else own for k, v in flags.items()}
        if not info.dynamic:
            other = {k: f"{w}x{h}" for k, (w, h) in sizes.items() if (w, h) != own}
            if other:
                raise ValueError(
                    f"the ONNX model has a fixed {own[0]}x{own[1]} input; cannot build for {other}. "
                    "Export the dynamic-shape variant for other sizes"
                )
        return cls(sizes["min"], sizes["opt"], sizes["max"])

    @property
    def is_fixed(self) -> bool:
        return self.min == self.opt == self.max

    def contains(self, size: tuple[int, int]) -> bool:
        """Whether a (width, height) input lies inside the profile."""
        return all(self.min[a] <= size[a] <= self.max[a] for a in (0, 1))

    def nchw(self, channels: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) NCHW shapes for an input with ``channels`` channels (TensorRT order)."""
        return tuple((1, channels, h, w) for w, h in (self.min, self.opt, self.max))  # type: ignore[return-value]

    def describe(self) -> str:
        """Canonical text, part of the cache key: ``640x480`` or ``320x256..640x480..1280x960``."""
        if self.is_fixed:
            return f"{self.opt[0]}x{self.opt[1]}"
        return "..".join(f"{w}x{h}" for w, h in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class EngineKey:
    """The facts an engine is valid for; any difference means rebuild."""

    tensorrt_version: str
    compute_capability: str  # "8.7" (Orin), "8.9" (Ada), ...
    precision: str
    input_shape: str  # ShapeProfile.describe()
    onnx_sha256: str

    def __post_init__(self) -> None:
        check_precision(self.precision)

    def digest(self) -> str:
        """Short stable hash of all fields: names engine files so keys never collide in a cache dir."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


_FIELD_TEXT = {
    "tensorrt_version": "TensorRT version",
    "compute_capability": "GPU compute capability",
    "precision": "precision",
    "input_shape": "input shape profile",
    "onnx_sha256": "ONNX file sha256",
}


def stale_reasons(built: EngineKey, wanted: EngineKey) -> list[str]:
    """Why an engine built under ``built`` cannot serve ``wanted``; empty when it can."""
    reasons = []
    for name, text in _FIELD_TEXT.items():
        have, want = getattr(built, name), getattr(wanted, name)
        if have != want:
            if name == "onnx_sha256":
                have, want = have[:12], want[:12]
            reasons.append(f"{text} differs: engine has {have}, needed {want}")
    return reasons


@dataclass(frozen=True)
class EngineMeta:
    """What is written beside an engine file as JSON."""

    key: EngineKey
    info: ModelInfo
    engine_sha256: str
    engine_bytes: int
    onnx_path: str = ""
    device_name: str = ""
    build_seconds: float = 0.0
    built_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "format": META_FORMAT,
            "key": asdict(self.key),
            "key_digest": self.key.digest(),
            "model_info": json.loads(self.info.to_json()),
            "engine_sha256": self.engine_sha256,
            "engine_bytes": self.engine_bytes,
            "onnx_path": self.onnx_path,
            "device_name": self.device_name,
            "build_seconds": round(self.build_seconds, 3),
            "built_at": self.built_at,
        }
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str) -> EngineMeta:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise EngineError(f"{source}: engine metadata is not valid JSON: {err}") from err
        if not isinstance(raw, dict) or raw.get("format") != META_FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise EngineError(f"{source}: engine metadata format {got!r}, expected {META_FORMAT}")
        try:
            key = EngineKey(**raw["key"])
            info = ModelInfo.from_json(json.dumps(raw["model_info"]), source=source)
            return cls(
                key=key,
                info=info,
                engine_sha256=str(raw["engine_sha256"]),
                engine_bytes=int(raw["engine_bytes"]),
                onnx_path=str(raw.get("onnx_path", "")),
                device_name=str(raw.get("device_name", "")),
                build_seconds=float(raw.get("build_seconds", 0.0)),
                built_at=str(raw.get("built_at", "")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EngineError(f"{source}: engine metadata lacks or mistypes {err}") from err


def meta_path(engine_path: Path | str) -> Path:
    """``model.fp16.engine`` -> ``model.fp16.engine.json`` (never clashes with the ONNX's own JSON)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_meta(engine_path: Path | str, meta: EngineMeta) -> Path:
    path = meta_path(engine_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(meta.to_json() + "\n")
    tmp.replace(path)
    return path


def read_meta(engine_path: Path | str) -> EngineMeta:
    """Read the JSON beside ``engine_path``.

    Raises:
        EngineError: no metadata (a foreign engine: nothing says what it was built from), or bad JSON.
    """
    path = meta_path(engine_path)
    if not path.is_file():
        raise EngineError(
            f"engine {engine_path} has no metadata file {path.name} beside it, so its TensorRT version, "
            "GPU, precision and source ONNX are unknown"
        )
    return EngineMeta.from_json(path.read_text(), source=str(path))


def engine_path_for(onnx_path: Path | str, key: EngineKey, cache_dir: Path | str | None = None) -> Path:
    """Default engine location: ``<cache_dir or ONNX dir>/<stem>.<precision>.<key digest>.engine``.

    The digest in the name lets engines for several GPUs / TensorRT versions share one folder.
    """
    onnx_path = Path(onnx_path)
    folder = Path(cache_dir) if cache_dir is not None else onnx_path.parent
    return folder / f"{onnx_path.stem}.{key.precision}.{key.digest()}.engine"


def timing_cache_path_for(folder: Path | str, key: EngineKey) -> Path:
    """Timing caches are per TensorRT version and GPU architecture; one file per pair."""
    version = re.sub(r"[^0-9A-Za-z.]", "_", key.tensorrt_version)
    return Path(folder) / f"timing.trt{version}.sm{key.compute_capability.replace('.', '')}.cache"


@dataclass(frozen=True)
class EngineDecision:
    """``action`` is "load" (the engine is valid) or "build" (with the reasons why)."""

    action: str
    engine_path: Path
    reasons: tuple[str, ...] = ()
    meta: EngineMeta | None = None


def resolve_engine(
    engine_path: Path | str, wanted: EngineKey, *, allow_build: bool, onnx_path: Path | str | None = None
) -> EngineDecision:
    """Decide whether ``engine_path`` can be loaded for ``wanted`` or must be (re)built.

    Order of checks: file present and non-empty, metadata present and readable, engine bytes match
    the recorded sha256 (catches truncated or replaced files), then the key fields.

    Raises:
        EngineError: the engine must be rebuilt but ``allow_build`` is False; the message lists
            every reason and the command that builds it.
    """
    engine_path = Path(engine_path)
    reasons: list[str] = []
    meta: EngineMeta | None = None
    if not engine_path.is_file():
        reasons.append(f"no engine file at {engine_path}")
    elif engine_path.stat().st_size == 0:
        reasons.append(f"engine file {engine_path} is empty")
    else:
        try:
            meta = read_meta(engine_path)
        except EngineError as err:
            reasons.append(str(err))
        else:
            size = engine_path.stat().st_size
            if size != meta.engine_bytes or file_sha256(engine_path) != meta.engine_sha256:
                reasons.append(
                    f"engine file {engine_path} is corrupt or was replaced: {size} bytes, sha256 differs "
                    f"from the {meta.engine_bytes} bytes recorded at build time"
                )
            else:
                reasons.extend(stale_reasons(meta.key, wanted))
    if not reasons:
        return EngineDecision("load", engine_path, (), meta)
    if not allow_build:
        source = f" {onnx_path}" if onnx_path else " MODEL.onnx"
        raise EngineError(
            f"cannot use TensorRT engine {engine_path}: "
            + "; ".join(reasons)
            + f". Building is disabled here; build it on this machine with "
            f"`fusion-perception build-engine{source} --precision {wanted.precision}` "
            "or allow building"
        )
    return EngineDecision("build", engine_path, tuple(reasons), meta)
