"""Node settings -> a loaded backend, the pipeline's settings and the stamp pairer: one mapping for
every entry point.

The node and ``bag evaluate`` both build their backend and :class:`PipelineConfig` here, so a pair
evaluated offline goes through exactly what the node would run with the same parameters (a test
compares their messages). Backend selection itself belongs to
:func:`fusion_perception.backend_factory.create_backend`; this module maps settings onto it and
forwards its log lines to the caller's logger. No rclpy here: the bag layer imports it too.
"""

from __future__ import annotations

from typing import Any

from ..backend_factory import create_backend
from ..errors import ModelFormatError
from ..pairing import StampPairer
from ..preprocessing import PreprocessConfig
from ..runtime.backend import Backend
from ..runtime.pipeline import PipelineConfig
from .params import NodeSettings

__all__ = ["load_backend", "pipeline_config", "stamp_pairer"]


def load_backend(settings: NodeSettings, logger: Any | None = None) -> Backend:
    """Load ``settings.model_path`` with ``settings.backend``.

    Raises:
        ModelFormatError: the file is missing or not a fusion_perception model, or with
            ``network_size`` set, the sibling is missing or runs at another size.
        BackendUnavailableError, EngineError: the chosen backend cannot run here.
    """
    size = settings.network_size
    if size is not None and not settings.model_path.is_file():
        name = settings.model_path.stem
        raise ModelFormatError(
            f"network_size {size[0]}x{size[1]} needs {settings.model_path}; make it with "
            f"`fusion-perception export CHECKPOINT --size {size[0]}x{size[1]} --name {name}` (and "
            f"`fusion-perception quantize {settings.model_path} --calib DATASET_DIR` for int8)")
    backend = create_backend(
        settings.backend, settings.model_path, threads=settings.threads, precision=settings.precision,
        engine_path=settings.engine_path, logger=logger,
    )
    if size is not None and backend.info.input_size != size:
        backend.close()
        raise ModelFormatError(f"{settings.model_path} runs at {backend.info.input_size}, not the "
                               f"network_size {size[0]}x{size[1]} it was chosen for")
    return backend


def pipeline_config(settings: NodeSettings, single_camera: bool = False) -> PipelineConfig:
    """The pipeline's settings. ``single_camera``: both inputs are one camera's frame (the other is
    silent), so there is nothing to register and the homography is left out.

    Colour restoration runs only when a coloured output is published (``publish_fused`` or
    ``publish_overlay``): it is the most expensive post-processing step.
    """
    return PipelineConfig(
        preprocess=PreprocessConfig(network_size=None, gain=settings.gain,
                                    homography=None if single_camera else settings.homography),
        score_threshold=settings.score_threshold, iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
        restore_colour=settings.publish_fused or settings.publish_overlay,
    )


def stamp_pairer(settings: NodeSettings) -> StampPairer[Any]:
    """The stamp pairer with the node's slop, queue size and time-jump threshold."""
    return StampPairer(settings.slop_ns, settings.queue_size, jump_reset_ns=settings.jump_reset_ns)
