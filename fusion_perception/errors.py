"""Exceptions of fusion_perception: one place, so callers can catch by meaning."""

__all__ = [
    "BackendUnavailableError",
    "BagError",
    "CalibrationError",
    "DatasetError",
    "EncodingError",
    "EngineError",
    "FusionPerceptionError",
    "ImageShapeError",
    "ModelFormatError",
]


class FusionPerceptionError(Exception):
    """Base class of every error raised on purpose by this package."""


class EncodingError(FusionPerceptionError, ValueError):
    """An image encoding is unsupported, or its buffer does not match its declared layout."""


class ImageShapeError(FusionPerceptionError, ValueError):
    """Images of a pair, or an image and the model, disagree on their shape."""


class ModelFormatError(FusionPerceptionError, ValueError):
    """A model file is missing, corrupt, or lacks the tensors/metadata this package expects."""


class BackendUnavailableError(FusionPerceptionError, RuntimeError):
    """An inference backend cannot run here (library missing, no GPU, ...)."""


class EngineError(FusionPerceptionError, RuntimeError):
    """A TensorRT engine file is missing, stale, foreign or corrupt."""


class DatasetError(FusionPerceptionError, ValueError):
    """A dataset folder or one of its files is malformed; the message names the file."""


class BagError(FusionPerceptionError, ValueError):
    """A ROS 2 bag is missing, corrupt, or lacks the topics/encodings asked for; the message says which."""


class CalibrationError(FusionPerceptionError, ValueError):
    """The pairs cannot determine an IR -> visible homography; ``reason`` says why, as one word.

    Reasons: ``too_few_pairs``, ``no_structure``, ``inconsistent``, ``degenerate``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
