"""Running the teacher with ONNX Runtime (no torch): what the judge and the labeller use.

``Teacher`` owns one ORT session on the converted ONNX file. :func:`ensure_onnx` makes sure that file
exists and was converted from the committed sources (its metadata records their SHA-256); where it
is missing or stale it is rebuilt when torch is importable, and otherwise the error says which
command builds it, so the torch-free ``bag evaluate --judge`` never runs a stale teacher silently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError
from ..runtime.postprocess import Detections
from .assets import CONVERTER_VERSION, MODEL_JSON, ONNX_PATH, source_digest
from .nanodet import COCO_CLASSES, NUM_ANCHORS, REG_MAX, ClassMapName, Letterbox, decode, letterbox

__all__ = ["RawOutputs", "Teacher", "ensure_onnx"]

log = logging.getLogger(__name__)
METADATA_KEY = "nanodet_teacher"  # same key as export.TEACHER_METADATA_KEY (export needs torch)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types for corrupt files
        raise ModelFormatError(f"ONNX Runtime cannot load the teacher {path}: {err}") from err


def _provenance(session) -> tuple[str | None, int | None]:
    """(source SHA-256, converter version) recorded in a teacher ONNX file; None where absent."""
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        meta = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        meta = {}
    return meta.get("source_sha256"), meta.get("converter_version")


def ensure_onnx(path: Path | str = ONNX_PATH, json_path: Path | str = MODEL_JSON) -> Path:
    """Return ``path`` once it holds the teacher converted from ``json_path``'s current files.

    Raises:
        ModelFormatError: the file is missing or stale and torch is not installed to rebuild it
            (the message gives the command that does).
    """
    path, json_path = Path(path), Path(json_path)
    digest = source_digest(json_path.parent)
    why = "is missing"
    if path.is_file():
        try:
            if _provenance(_session(path, 1)) == (digest, CONVERTER_VERSION):
                return path
            why = "is stale (other sources or converter version)"
        except ModelFormatError:
            why = "is unreadable"
    try:
        from .export import convert
    except ImportError as err:
        raise ModelFormatError(
            f"teacher ONNX {path} {why}; build it with `fusion-perception teacher convert` "
            f"in an environment with torch and onnx (scripts/setup.sh teacher): {err}"
        ) from err
    log.info("teacher ONNX %s %s: converting %s", path, why, json_path)
    return convert(json_path, path)


@dataclass(frozen=True)
class RawOutputs:
    """One image's teacher outputs: ``scores`` [3549, 80], ``distance_logits`` [3549, 44], and the
    letterbox that maps network pixels back to the image."""

    scores: np.ndarray
    distance_logits: np.ndarray
    box: Letterbox

    def detections(self, class_map: ClassMapName = "mapped", **kwargs: float) -> Detections:
        """Decode to project-class detections in image pixels (see :func:`.nanodet.decode`)."""
        return decode(self.scores, self.distance_logits, self.box, class_map=class_map, **kwargs)


class Teacher:
    """NanoDet-g on ONNX Runtime.

    Args:
        onnx_path: the converted teacher (default: the cached conversion, built when missing).
        threads: ORT intra-op threads (0: every core).

    >>> teacher = Teacher()
    >>> dets = teacher.detect(np.zeros((480, 640, 3), np.uint8))
    >>> dets.boxes.shape[1]
    4
    """

    def __init__(self, onnx_path: Path | str | None = None, *, threads: int = 0) -> None:
        path = ensure_onnx() if onnx_path is None else Path(onnx_path)
        if not path.is_file():
            raise ModelFormatError(f"teacher ONNX {path} does not exist")
        self.path = path
        self._session = _session(path, threads)
        shapes = {o.name: o.shape for o in self._session.get_outputs()}
        want = {"scores": len(COCO_CLASSES), "distance_logits": 4 * (REG_MAX + 1)}
        if any(shapes.get(k, [None])[-1] != v for k, v in want.items()):
            raise ModelFormatError(f"{path} is not the converted teacher: outputs {shapes}")

    def raw(self, image: np.ndarray) -> RawOutputs:
        """Run on one uint8 BGR (or grey) image of any size; outputs before decoding."""
        tensor, box = letterbox(image)
        scores, dists = self._session.run(["scores", "distance_logits"], {"bgr": tensor})
        if scores.shape != (1, NUM_ANCHORS, len(COCO_CLASSES)):
            raise ModelFormatError(f"{self.path}: scores have shape {scores.shape}")
        return RawOutputs(scores[0], dists[0], box)

    def detect(self, image: np.ndarray, class_map: ClassMapName = "mapped", **kwargs: float) -> Detections:
        """Project-class detections (person, bicycle, car) in image pixels."""
        return self.raw(image).detections(class_map, **kwargs)
