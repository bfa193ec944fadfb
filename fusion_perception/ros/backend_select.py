"""The one place the node turns its parameters into a loaded Backend.

Selection itself belongs to :func:`fusion_perception.runtime.backends.create_backend` (``auto``
tries TensorRT, then PyTorch on CUDA, then ONNX Runtime, and says why it skipped each); this
wrapper only maps node settings onto it and forwards its log lines to the node's logger.
"""

from __future__ import annotations

from typing import Any

from ..runtime.backend import Backend
from ..runtime.backends import create_backend
from .params import NodeSettings

__all__ = ["load_backend"]


def load_backend(settings: NodeSettings, logger: Any | None = None) -> Backend:
    """Load ``settings.model_path`` with ``settings.backend``.

    Raises:
        ModelFormatError: the file is missing or not a fusion_perception model.
        BackendUnavailableError, EngineError: the chosen backend cannot run here.
    """
    return create_backend(
        settings.backend, settings.model_path, threads=settings.threads, precision=settings.precision,
        engine_path=settings.engine_path, logger=logger,
    )
