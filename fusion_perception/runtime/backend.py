"""The ``Backend`` protocol every inference engine implements, and the ONNX Runtime backend.

A backend runs the deployed graph (see ``model_info``) on one prepared pair and returns its three
outputs by name. Backends differ in where the tensors live; callers see NumPy arrays only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import BackendUnavailableError, ModelFormatError
from .model_info import INPUT_NAMES, METADATA_KEY, OUTPUT_NAMES, ModelInfo

__all__ = ["Backend", "OnnxRuntimeBackend", "Outputs"]

Outputs = dict[str, np.ndarray]


@runtime_checkable
class Backend(Protocol):
    """One loaded model, ready to run."""

    name: str
    info: ModelInfo

    def infer(self, ir: np.ndarray, visible: np.ndarray) -> Outputs:
        """Run the graph: ``ir`` [N,1,H,W], ``visible`` [N,3,H,W] float32 -> outputs by name."""
        ...

    def close(self) -> None:
        """Free what the backend holds (sessions, device memory)."""
        ...


def check_outputs(outputs: Outputs, ir: np.ndarray, info: ModelInfo) -> Outputs:
    """Verify the three outputs exist and agree with the input size; return them unchanged."""
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if missing:
        raise ModelFormatError(f"model outputs lack {missing}; it must produce {list(OUTPUT_NAMES)}")
    fused = outputs["fused"]
    if fused.shape[-2:] != ir.shape[-2:]:
        raise ModelFormatError(f"fused output has shape {fused.shape}, input IR {ir.shape}")
    return outputs


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU (the embedded default), or any provider ORT was built with.

    Args:
        model_path: ONNX file exported by ``fusion-perception export`` (metadata included).
        threads: intra-op threads; 0 lets ORT use every core.
        providers: ORT execution providers, CPU by default.
    """

    name = "onnxruntime"

    def __init__(
        self, model_path: Path | str, *, threads: int = 0, providers: list[str] | None = None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - onnxruntime is a runtime requirement
            raise BackendUnavailableError(f"onnxruntime is not installed: {err}") from err
        path = Path(model_path)
        if not path.is_file():
            raise ModelFormatError(f"ONNX model {path} does not exist")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # ORT's pool threads spin after each op by default; in the node they would steal the two
        # cores from the executor thread receiving images and from publishing the outputs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as err:  # ORT raises its own exception types for corrupt files
            raise ModelFormatError(f"ONNX Runtime cannot load {path}: {err}") from err
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelFormatError(
                f"{path} has no '{METADATA_KEY}' metadata; export it with fusion-perception"
            )
        self.info = ModelInfo.from_json(meta[METADATA_KEY], source=str(path))
        inputs = tuple(i.name for i in self._session.get_inputs())
        outputs = {o.name for o in self._session.get_outputs()}
        if set(inputs) != set(INPUT_NAMES) or not set(OUTPUT_NAMES) <= outputs:
            raise ModelFormatError(
                f"{path} has inputs {inputs} and outputs {sorted(outputs)}; "
                f"expected inputs {INPUT_NAMES} and outputs {OUTPUT_NAMES}"
            )
        self.model_path = path

    def infer(self, ir: np.ndarray, visible: np.ndarray) -> Outputs:
        values = self._session.run(list(OUTPUT_NAMES), {"ir": ir, "visible": visible})
        return check_outputs(dict(zip(OUTPUT_NAMES, values, strict=True)), ir, self.info)

    def close(self) -> None:
        self._session = None
